"""Saving and restoring a whole engine through cattrs (JSON-ready data).

Everything that decides what the engine does next is saved: every live
interaction with its legs, lifecycles, request queue, executing request and
known requestIds; the clock; the command counter; awaited and abandoned
commands; disposed destinations and released legs; the policy. A restored
engine continues exactly as the original would have.
"""

from __future__ import annotations

import heapq
from typing import Any

import attrs

from fsm.engine import Engine, Targets
from fsm.machines import DISPOSED, S_REQUESTED
from fsm.messages import converter
from fsm.model import Interaction
from fsm.policy import Policy
from fsm.state import EngineState

FORMAT = "telephony-fsm/engine/1"


@attrs.define(kw_only=True)
class SavedEngine:
    """What a snapshot holds (JSON-ready through cattrs)."""

    format: str = FORMAT
    channel: str
    switch_acknowledges: bool
    policy: Policy
    clock: float
    commands_issued: int
    joinable_held: list[str]
    joinable_other: list[str]
    interactions: list[Interaction]
    disposed_targets: list[str]
    disposed_calls: list[str]
    released: list[str]
    awaited: dict[str, str]
    abandoned: dict[str, str]
    abandoned_until: dict[str, float] = attrs.field(factory=dict)


def snapshot(engine: Engine) -> dict[str, Any]:
    state = engine.state
    saved = SavedEngine(
        channel=state.targets.channel,
        switch_acknowledges=state.switch_acknowledges,
        policy=state.policy,
        clock=state.clock,
        commands_issued=state.commands_issued,
        joinable_held=list(state.joinable_held),
        joinable_other=list(state.joinable_other),
        interactions=list(state.interactions.values()),
        disposed_targets=list(state.disposed_targets),
        disposed_calls=list(state.disposed_calls),
        released=list(state.released),
        awaited=dict(state.awaited),
        abandoned=dict(state.abandoned),
        abandoned_until=dict(state.abandoned_until),
    )
    data: dict[str, Any] = converter.unstructure(saved)
    return data


def restore(data: dict[str, Any], targets: Targets | None = None) -> Engine:
    saved: SavedEngine = converter.structure(data, SavedEngine)
    if saved.format != FORMAT:
        raise ValueError(f"unknown snapshot format {saved.format!r}")
    state = EngineState(
        policy=saved.policy,
        targets=targets or Targets(saved.channel),
        switch_acknowledges=saved.switch_acknowledges,
        clock=saved.clock,
        commands_issued=saved.commands_issued,
        joinable_held=dict.fromkeys(saved.joinable_held),
        joinable_other=dict.fromkeys(saved.joinable_other),
        disposed_targets=dict.fromkeys(saved.disposed_targets),
        disposed_calls=dict.fromkeys(saved.disposed_calls),
        released=dict.fromkeys(saved.released),
        awaited=saved.awaited,
        abandoned=saved.abandoned,
        abandoned_until=saved.abandoned_until,
    )
    for interaction in saved.interactions:
        state.interactions[interaction.id] = interaction
        state.destinations[interaction.target] = interaction
        for leg in interaction.legs.values():
            state.calls[leg.call] = leg
            if leg.target is not None and leg.lifecycle != DISPOSED:
                state.destinations[leg.target] = leg
        pending = interaction.executing
        if pending is not None and pending.command is not None and interaction.state == S_REQUESTED:
            state.awaiting_leg[pending.command] = interaction.id
        if pending is not None and pending.deadline is not None:
            entry = (pending.deadline, interaction.id, pending.request.request_id)
            heapq.heappush(state.deadlines, entry)
    return Engine(state=state)

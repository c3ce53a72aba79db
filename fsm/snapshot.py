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

FORMAT = "telephony-fsm/engine/1"


@attrs.define(kw_only=True)
class EngineState:
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
    state = EngineState(
        channel=engine.targets.channel,
        switch_acknowledges=engine.switch_acknowledges,
        policy=engine.policy,
        clock=engine.clock,
        commands_issued=engine.commands_issued,
        joinable_held=list(engine._joinable_held),
        joinable_other=list(engine._joinable_other),
        interactions=list(engine.interactions.values()),
        disposed_targets=list(engine.disposed_targets),
        disposed_calls=list(engine.disposed_calls),
        released=list(engine.released),
        awaited=dict(engine.awaited),
        abandoned=dict(engine.abandoned),
        abandoned_until=dict(engine.abandoned_until),
    )
    data: dict[str, Any] = converter.unstructure(state)
    return data


def restore(data: dict[str, Any], targets: Targets | None = None) -> Engine:
    state: EngineState = converter.structure(data, EngineState)
    if state.format != FORMAT:
        raise ValueError(f"unknown snapshot format {state.format!r}")
    engine = Engine(
        state.policy,
        targets or Targets(state.channel),
        switch_acknowledges=state.switch_acknowledges,
    )
    engine.clock = state.clock
    engine.commands_issued = state.commands_issued
    engine._joinable_held = dict.fromkeys(state.joinable_held)
    engine._joinable_other = dict.fromkeys(state.joinable_other)
    engine.disposed_targets = dict.fromkeys(state.disposed_targets)
    engine.disposed_calls = dict.fromkeys(state.disposed_calls)
    engine.released = dict.fromkeys(state.released)
    engine.awaited = state.awaited
    engine.abandoned = state.abandoned
    engine.abandoned_until = state.abandoned_until
    for interaction in state.interactions:
        engine.interactions[interaction.id] = interaction
        engine.destinations[interaction.target] = interaction
        for leg in interaction.legs.values():
            engine.calls[leg.call] = leg
            if leg.target is not None and leg.lifecycle != DISPOSED:
                engine.destinations[leg.target] = leg
        pending = interaction.executing
        if pending is not None and pending.command is not None and interaction.state == S_REQUESTED:
            engine.awaiting_leg[pending.command] = interaction.id
        if pending is not None and pending.deadline is not None:
            entry = (pending.deadline, interaction.id, pending.request.request_id)
            heapq.heappush(engine._deadlines, entry)
    return engine

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

from fsm.directory import Agent, AgentDirectory
from fsm.engine import Engine, Targets
from fsm.machines import DISPOSED, S_REQUESTED
from fsm.messages import converter
from fsm.model import Interaction, InteractionView
from fsm.policy import Policy
from fsm.state import EngineState
from fsm.tree import Channel, ChannelGroup, Control, Device, Session

FORMAT = "telephony-fsm/engine/2"


@attrs.define(kw_only=True)
class SavedEngine:
    """What a snapshot holds (JSON-ready through cattrs)."""

    format: str = FORMAT
    processor: str
    switch_acknowledges: bool
    policy: Policy
    clock: float
    commands_issued: int
    directory: list[Agent]
    capabilities: dict[str, bool]
    control: Control
    sessions: list[Session]
    groups: list[ChannelGroup]
    channels: list[Channel]
    devices: list[Device]
    awaited_devices: dict[str, str]
    dial_claims: dict[str, tuple[float, str]]
    joinable_held: dict[str, list[str]]
    joinable_other: dict[str, list[str]]
    interactions: list[Interaction]
    #: interaction id -> its destinations in further sessions (D-SESS-1)
    views: dict[str, list[InteractionView]] = attrs.field(factory=dict)
    disposed_targets: list[str]
    disposed_calls: list[str]
    released: list[str]
    awaited: dict[str, str]
    abandoned: dict[str, str]
    abandoned_until: dict[str, float] = attrs.field(factory=dict)


def snapshot(engine: Engine) -> dict[str, Any]:
    state = engine.state
    live = state.destinations.values()
    saved = SavedEngine(
        processor=state.targets.processor,
        switch_acknowledges=state.switch_acknowledges,
        policy=state.policy,
        clock=state.clock,
        commands_issued=state.commands_issued,
        directory=list(state.directory.agents),
        capabilities=dict(state.capabilities),
        control=state.control,
        sessions=list(state.sessions.values()),
        groups=[d for d in live if type(d) is ChannelGroup],
        channels=[d for d in live if type(d) is Channel],
        devices=list(state.devices.values()),
        awaited_devices=dict(state.awaited_devices),
        dial_claims=dict(state.dial_claims),
        joinable_held={device: list(ids) for device, ids in state.joinable_held.items()},
        joinable_other={device: list(ids) for device, ids in state.joinable_other.items()},
        interactions=list(state.interactions.values()),
        views=state.views,
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
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown snapshot format {data.get('format')!r}")
    saved: SavedEngine = converter.structure(data, SavedEngine)
    state = EngineState(
        policy=saved.policy,
        targets=targets or Targets(saved.processor),
        control=saved.control,
        directory=AgentDirectory(tuple(saved.directory)),
        capabilities=saved.capabilities,
        switch_acknowledges=saved.switch_acknowledges,
        clock=saved.clock,
        commands_issued=saved.commands_issued,
        awaited_devices=saved.awaited_devices,
        dial_claims=saved.dial_claims,
        joinable_held={device: dict.fromkeys(ids) for device, ids in saved.joinable_held.items()},
        joinable_other={device: dict.fromkeys(ids) for device, ids in saved.joinable_other.items()},
        disposed_targets=dict.fromkeys(saved.disposed_targets),
        disposed_calls=dict.fromkeys(saved.disposed_calls),
        released=dict.fromkeys(saved.released),
        awaited=saved.awaited,
        abandoned=saved.abandoned,
        abandoned_until=saved.abandoned_until,
    )
    state.destinations[saved.control.target] = saved.control
    for session in saved.sessions:
        state.sessions[session.target] = session
    tree: list[Session | ChannelGroup | Channel] = [*saved.sessions, *saved.groups, *saved.channels]
    for dest in tree:
        state.destinations[dest.target] = dest
    for device in saved.devices:
        state.devices[device.end_point] = device
        pending = device.executing
        if pending is not None and pending.deadline is not None:
            heapq.heappush(
                state.device_deadlines, (pending.deadline, device.end_point, pending.request.request_id)
            )
    for interaction in saved.interactions:
        state.interactions[interaction.id] = interaction
        if interaction.target:
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
    for interaction_id, views in saved.views.items():
        state.views[interaction_id] = views
        for view in views:
            state.destinations[view.target] = view
            for seen in view.legs.values():
                if seen.target is not None and seen.lifecycle != DISPOSED:
                    state.destinations[seen.target] = seen
    return Engine(state=state)

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

from fsm.changes import Changes
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
    return _restore(converter.structure(data, SavedEngine), targets)


def _restore(saved: SavedEngine, targets: Targets | None) -> Engine:
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


# --------------------------------------------------------------------------
# Records: the same state, one record per destination (fsm.changes), so that
# a store writes what an input changed. Every record is JSON-ready data.

#: the record kinds and the key each is filed under
CONFIG, PROCESSOR, DEVICE, SESSION, INTERACTION = "config", "processor", "device", "session", "interaction"
#: the memories kept as rows, oldest first (D-LIFE-4, D-BOUND): each only
#: grows at its end and loses its oldest entries past its limit
MEMORIES = ("disposed_targets", "disposed_calls", "released")

RecordKey = tuple[str, str]


@attrs.define(kw_only=True)
class ConfigRecord:
    """What the engine is given and never changes."""

    format: str = FORMAT
    processor: str
    switch_acknowledges: bool
    policy: Policy
    directory: list[Agent]
    capabilities: dict[str, bool]


@attrs.define(kw_only=True)
class ProcessorRecord:
    """The processor's own state: the control destination, the clock and
    the commands in flight."""

    clock: float
    commands_issued: int
    control: Control
    awaited_devices: dict[str, str]
    dial_claims: dict[str, tuple[float, str]]
    awaited: dict[str, str]
    abandoned: dict[str, str]
    abandoned_until: dict[str, float]


@attrs.define(kw_only=True)
class DeviceRecord:
    device: Device
    #: the device's STARTED.none interactions a phone consult may join, oldest change first
    joinable_held: list[str] = attrs.field(factory=list)
    joinable_other: list[str] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class SessionRecord:
    session: Session
    group: ChannelGroup | None = None
    channels: list[Channel] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class InteractionRecord:
    interaction: Interaction
    views: list[InteractionView] = attrs.field(factory=list)


def config_record(engine: Engine) -> dict[str, Any]:
    state = engine.state
    record = ConfigRecord(
        processor=state.targets.processor,
        switch_acknowledges=state.switch_acknowledges,
        policy=state.policy,
        directory=list(state.directory.agents),
        capabilities=dict(state.capabilities),
    )
    data: dict[str, Any] = converter.unstructure(record)
    return data


def _processor_record(state: EngineState) -> ProcessorRecord:
    return ProcessorRecord(
        clock=state.clock,
        commands_issued=state.commands_issued,
        control=state.control,
        awaited_devices=state.awaited_devices,
        dial_claims=state.dial_claims,
        awaited=state.awaited,
        abandoned=state.abandoned,
        abandoned_until=state.abandoned_until,
    )


def _device_record(state: EngineState, end_point: str) -> DeviceRecord | None:
    device = state.devices.get(end_point)
    if device is None:
        return None
    return DeviceRecord(
        device=device,
        joinable_held=list(state.joinable_held.get(end_point, ())),
        joinable_other=list(state.joinable_other.get(end_point, ())),
    )


def _session_record(state: EngineState, target: str) -> SessionRecord | None:
    session = state.sessions.get(target)
    if session is None:
        return None
    group = state.destinations.get(session.group)
    if type(group) is not ChannelGroup:
        return SessionRecord(session=session)
    channels = [state.destinations.get(channel) for channel in group.channels]
    return SessionRecord(session=session, group=group, channels=[c for c in channels if type(c) is Channel])


def _interaction_record(state: EngineState, interaction_id: str) -> InteractionRecord | None:
    interaction = state.interactions.get(interaction_id)
    if interaction is None:
        return None
    return InteractionRecord(interaction=interaction, views=state.views.get(interaction_id, []))


_RECORD_OF: Any = {
    DEVICE: _device_record,
    SESSION: _session_record,
    INTERACTION: _interaction_record,
}


def changed_records(engine: Engine, changes: Changes) -> dict[RecordKey, dict[str, Any] | None]:
    """The records ``changes`` names, each as it is now (None: no longer
    live, to be deleted), and the processor's record. The memories are not
    records: see :func:`memory_since`."""
    state = engine.state
    out: dict[RecordKey, dict[str, Any] | None] = {
        (PROCESSOR, ""): converter.unstructure(_processor_record(state))
    }
    named = ((DEVICE, changes.devices), (SESSION, changes.sessions), (INTERACTION, changes.interactions))
    for kind, keys in named:
        make = _RECORD_OF[kind]
        for key in keys:
            record = make(state, key)
            out[(kind, key)] = None if record is None else converter.unstructure(record)
    return out


def all_records(engine: Engine) -> dict[RecordKey, dict[str, Any] | None]:
    """Every record of the engine (the first save of a store)."""
    state = engine.state
    everything = Changes(
        devices=dict.fromkeys(state.devices),
        interactions=dict.fromkeys(state.interactions),
        sessions=dict.fromkeys(state.sessions),
    )
    records = changed_records(engine, everything)
    records[(CONFIG, "")] = config_record(engine)
    return records


def memory_since(memory: dict[str, None], last: str | None) -> list[str]:
    """The entries of a memory added after ``last`` (the newest one already
    saved; None: nothing saved yet), oldest first. If ``last`` is no longer
    there, every older entry went too (the memory only drops its oldest),
    so all that remain are new."""
    added: list[str] = []
    for key in reversed(memory):
        if key == last:
            break
        added.append(key)
    added.reverse()
    return added


def from_records(
    records: dict[RecordKey, dict[str, Any]],
    memories: dict[str, list[str]],
    targets: Targets | None = None,
) -> Engine:
    """The engine that ``records`` (every live record, by key) and
    ``memories`` (each memory's entries, oldest first) describe."""
    config: ConfigRecord = converter.structure(records[(CONFIG, "")], ConfigRecord)
    if config.format != FORMAT:
        raise ValueError(f"unknown record format {config.format!r}")
    processor: ProcessorRecord = converter.structure(records[(PROCESSOR, "")], ProcessorRecord)
    devices: list[DeviceRecord] = []
    sessions: list[SessionRecord] = []
    interactions: list[InteractionRecord] = []
    for (kind, _), data in sorted(records.items()):
        if kind == DEVICE:
            devices.append(converter.structure(data, DeviceRecord))
        elif kind == SESSION:
            sessions.append(converter.structure(data, SessionRecord))
        elif kind == INTERACTION:
            interactions.append(converter.structure(data, InteractionRecord))
    saved = SavedEngine(
        processor=config.processor,
        switch_acknowledges=config.switch_acknowledges,
        policy=config.policy,
        clock=processor.clock,
        commands_issued=processor.commands_issued,
        directory=config.directory,
        capabilities=config.capabilities,
        control=processor.control,
        sessions=[record.session for record in sessions],
        groups=[record.group for record in sessions if record.group is not None],
        channels=[channel for record in sessions for channel in record.channels],
        devices=[record.device for record in devices],
        awaited_devices=processor.awaited_devices,
        dial_claims=processor.dial_claims,
        joinable_held={r.device.end_point: r.joinable_held for r in devices if r.joinable_held},
        joinable_other={r.device.end_point: r.joinable_other for r in devices if r.joinable_other},
        interactions=[record.interaction for record in interactions],
        views={r.interaction.id: r.views for r in interactions if r.views},
        disposed_targets=memories.get("disposed_targets", []),
        disposed_calls=memories.get("disposed_calls", []),
        released=memories.get("released", []),
        awaited=processor.awaited,
        abandoned=processor.abandoned,
        abandoned_until=processor.abandoned_until,
    )
    return _restore(saved, targets)


@attrs.define(kw_only=True)
class Delta:
    """What a store writes for one or more inputs: the records to write
    (None: to delete) and, per memory, the entries added (their sequence
    numbers counting from 1, and the entry) and the first sequence number
    still kept (every older entry is to be deleted)."""

    records: dict[RecordKey, dict[str, Any] | None]
    added: dict[str, list[tuple[int, str]]]
    kept_from: dict[str, int]


@attrs.define(kw_only=True)
class MemoryMark:
    """The newest entry of a memory a store holds, and its sequence number."""

    last: str | None = None
    seq: int = 0


@attrs.define(eq=False)
class Saver:
    """Turns an engine's changes into the :class:`Delta` a store writes. It
    remembers how far each memory was saved (``marks``, as a store read them
    back when it resumes)."""

    marks: dict[str, MemoryMark] = attrs.field(factory=lambda: {name: MemoryMark() for name in MEMORIES})
    #: nothing written yet: the first delta holds every record
    fresh: bool = True

    def delta(self, engine: Engine, changes: Changes) -> Delta:
        records = all_records(engine) if self.fresh else changed_records(engine, changes)
        self.fresh = False
        state = engine.state
        added: dict[str, list[tuple[int, str]]] = {}
        kept_from: dict[str, int] = {}
        for name in MEMORIES:
            memory: dict[str, None] = getattr(state, name)
            mark = self.marks[name]
            new = memory_since(memory, mark.last)
            if new:
                added[name] = [(mark.seq + i, key) for i, key in enumerate(new, start=1)]
                mark.seq += len(new)
                mark.last = new[-1]
            kept_from[name] = mark.seq - len(memory) + 1
        return Delta(records=records, added=added, kept_from=kept_from)

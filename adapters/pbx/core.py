"""The PBX process's model, without IO: one simulated PBX (H-SIM-1) shared
by every adapter connected, its events routed by device.

Each connection claims devices (its ``hello``); an event goes to the
connection holding its device: the event's own ``device``, or for a call
event the device of its call (remembered from the event that named it).
Events of a device nobody holds wait for the next claim, in order, up to
``max_held`` per device (beyond it the oldest is dropped, and logged).
Customers and far parties (the script) play events on the same model.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable
from typing import Any, Final

import attrs

from adapters.simulated import SimulatedSwitch
from adapters.switch import OPERATIONS, dispatch
from fsm.errors import RemoteProtocolError
from fsm.intake import parse_switch_event
from fsm.state import bounded_add
from fsm.switch_events import Command, SwitchEvent, event_to_wire

logger = logging.getLogger("telephony_fsm.pbx")

#: the fields of a command (harness.md "Switch commands")
COMMAND_FIELDS: Final = tuple(field.name for field in attrs.fields(Command))
#: events held per unclaimed device (D-BOUND)
DEFAULT_MAX_HELD: Final = 10_000
#: ended calls remembered, for the script's waits (D-BOUND)
MAX_ENDED: Final = 100_000


class LinkError(Exception):
    """A frame of the CTI link that cannot be used: its text says why."""


def parse_command(raw: object) -> Command:
    """A command frame's ``command``, checked field by field."""
    if not isinstance(raw, dict):
        raise LinkError(f"a command must be a JSON object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(COMMAND_FIELDS))
    if unknown:
        raise LinkError(f"unknown command field(s) {', '.join(map(repr, unknown))}")
    for name, value in raw.items():
        if not isinstance(value, str):
            raise LinkError(f"command field {name!r} must be a string, not {type(value).__name__}")
    for name in ("id", "op"):
        if not raw.get(name):
            raise LinkError(f"a command needs {name!r}")
    if raw["op"] not in OPERATIONS:
        raise LinkError(f"unknown operation {raw['op']!r}")
    return Command(**raw)


def parse_devices(raw: object) -> list[str]:
    if not isinstance(raw, dict) or set(raw) != {"devices"}:
        raise LinkError('hello takes {"devices": [END-POINT, ...]} and nothing else')
    devices = raw["devices"]
    if not isinstance(devices, list) or not all(isinstance(d, str) and d for d in devices):
        raise LinkError("hello's devices must be a list of non-empty strings")
    return list(dict.fromkeys(devices))


#: (connection, frame) pairs to send, in order
Sends = list[tuple[Hashable, dict[str, Any]]]


@attrs.define(eq=False)
class Pbx:
    max_held: int = DEFAULT_MAX_HELD
    switch: SimulatedSwitch = attrs.field(factory=SimulatedSwitch)
    #: device -> the connection holding it
    owner: dict[str, Hashable] = attrs.field(factory=dict)
    #: call -> its device, for every call named so far (ended ones too)
    call_device: dict[str, str] = attrs.field(factory=dict)
    #: events of devices nobody holds, oldest first
    held: dict[str, deque[dict[str, Any]]] = attrs.field(factory=dict)
    #: calls that existed and are over, the newest last (bounded: MAX_ENDED)
    ended: dict[str, None] = attrs.field(factory=dict)

    # -- connections

    def hello(self, conn: Hashable, raw: object) -> Sends:
        """``conn`` claims devices; raises LinkError (the connection is then closed)."""
        devices = parse_devices(raw)
        if any(owner is conn for owner in self.owner.values()):
            raise LinkError("a second hello on one connection")
        taken = [d for d in devices if self.owner.get(d) not in (None, conn)]
        if taken:
            raise LinkError(f"device(s) {', '.join(taken)} are held by another connection")
        sends: Sends = [(conn, {"hello": {"devices": devices}})]
        for device in devices:
            self.owner[device] = conn
            for wire in self.held.pop(device, ()):
                sends.append((conn, {"event": wire}))
        return sends

    def closed(self, conn: Hashable) -> None:
        """``conn`` is gone: its devices are free (their calls go on)."""
        for device in [d for d, owner in self.owner.items() if owner is conn]:
            del self.owner[device]

    def devices_of(self, conn: Hashable) -> list[str]:
        return [d for d, owner in self.owner.items() if owner is conn]

    # -- input

    def command(self, conn: Hashable, raw: object) -> Sends:
        """A command from ``conn``: run on the PBX, its events routed. A call
        the PBX does not know (ended, or never seen) is an error."""
        command = parse_command(raw)
        mine = set(self.devices_of(conn))
        if not mine:
            raise LinkError("a command before hello")
        if command.device is not None and command.device not in mine:
            raise LinkError(f"{command.op} {command.id}: device {command.device} is not this connection's")
        for call in (command.call, command.consult, command.other):
            if call is None:
                continue
            device = self.call_device.get(call)
            if device is None:
                raise LinkError(f"{command.op} {command.id}: no call {call} at this PBX")
            if device not in mine:
                raise LinkError(f"{command.op} {command.id}: call {call} is not on this connection's devices")
        return self._route(dispatch(self.switch, command))

    def play(self, raw: object) -> Sends:
        """An event of the outside world (a customer, a far party, another agent at a device)."""
        try:
            event = parse_switch_event(raw)
        except RemoteProtocolError as exc:
            raise LinkError(exc.message) from None
        if event.kind in ("link", "result"):
            raise LinkError(f"a {event.kind} event is not the PBX's to play")
        if event.call and not event.device and event.call not in self.call_device:
            raise LinkError(f"{event.kind}: no call {event.call} at this PBX, and no device named")
        self.switch.observe(event)
        return self._route([event])

    # -- routing

    def _route(self, events: list[SwitchEvent]) -> Sends:
        sends: Sends = []
        for event in events:
            if event.call and event.device:
                self.call_device[event.call] = event.device
            device = event.device or self.call_device.get(event.call, "")
            if event.kind in ("ended", "failed"):
                self.call_device.pop(event.call, None)
                bounded_add(self.ended, event.call, MAX_ENDED)
            wire = event_to_wire(event)
            owner = self.owner.get(device)
            if owner is not None:
                sends.append((owner, {"event": wire}))
                continue
            queue = self.held.setdefault(device, deque())
            queue.append(wire)
            if len(queue) > self.max_held:
                dropped = queue.popleft()
                logger.warning(
                    "device %s: more than %d events held; dropped %s", device, self.max_held, dropped
                )
        return sends

    # -- what the script waits for

    def call_state(self, call: str) -> str | None:
        """TALKING, HELD, ... for a live call; ``ended``; None if never seen."""
        if call in self.switch.calls:
            return self.switch.calls[call]
        return "ended" if call in self.ended else None

    def device_state(self, device: str) -> str:
        return self.switch.devices.get(device, "loggedout")

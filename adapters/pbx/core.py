"""The PBX process's model, without IO: one simulated PBX (H-SIM-1) shared
by every adapter connected, its events routed by device.

Each connection claims devices (its ``hello``, once); an event goes to the
connection holding its device: the event's own ``device``, or for a call
event the device of its call (remembered here from the event that named it,
before the simulated PBX sees the event: it forgets the device of a call
that ended). Events of a device nobody holds wait for the next claim of it,
in order, up to ``max_held`` in all (D-BOUND; beyond it the device's oldest
is dropped, and logged). Customers and far parties (the script) play events
on the same model.

Everything a peer sends is checked before it changes anything: a frame that
cannot be used raises :class:`LinkError`, whose text (an ``error`` frame)
names the defect, and the model is as it was.
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
from fsm.messages import clean_text, json_type, unclean
from fsm.state import bounded_add
from fsm.switch_events import Command, SwitchEvent, event_to_wire

logger = logging.getLogger("telephony_fsm.pbx")

#: the fields of a command (harness.md "Switch commands")
COMMAND_FIELDS: Final = tuple(field.name for field in attrs.fields(Command))
#: the commands on a device (harness.md); the others are on calls
DEVICE_OPERATIONS: Final = frozenset({"login", "logout", "ready", "notready", "dial"})
#: events held for devices nobody holds, in all (D-BOUND)
DEFAULT_MAX_HELD: Final = 10_000
#: ended calls remembered, for the script's waits and a late command (D-BOUND)
MAX_ENDED: Final = 100_000
#: the kinds of event that are not the PBX's to play: the link's and a command's answer
NOT_PLAYED: Final = frozenset({"link", "result"})


class LinkError(Exception):
    """A frame of the CTI link that cannot be used: its text says why (and
    can always be written as UTF-8: lone surrogates become U+FFFD)."""

    def __init__(self, text: str) -> None:
        super().__init__(clean_text(text))


class ClaimRefused(LinkError):
    """A hello claiming a device that another live connection holds: that
    connection is closed after the error (it cannot be the adapter of
    those devices)."""


def check_clean(value: object, where: str) -> None:
    """A value that cannot be echoed as UTF-8 JSON (a lone surrogate, an
    integer beyond 2^53, too deep) is refused whole (D-BAD)."""
    defect = unclean(value, where)
    if defect is not None:
        raise LinkError(defect)


def parse_command(raw: object) -> Command:
    """A command frame's ``command``, checked field by field."""
    if not isinstance(raw, dict):
        raise LinkError(f"a command must be a JSON object, not {json_type(raw)}")
    check_clean(raw, "command")
    unknown = sorted(set(raw) - set(COMMAND_FIELDS))
    if unknown:
        raise LinkError(f"unknown command field(s) {', '.join(map(repr, unknown))}")
    for name, value in raw.items():
        if not isinstance(value, str):
            raise LinkError(f"command field {name!r} must be a string, not {json_type(value)}")
    for name in ("id", "op"):
        if not raw.get(name):
            raise LinkError(f"a command needs {name!r}")
    op = raw["op"]
    if op not in OPERATIONS:
        raise LinkError(f"unknown operation {op!r}")
    needs = "device" if op in DEVICE_OPERATIONS else "call"
    if not raw.get(needs):
        raise LinkError(f"{op} {raw['id']}: a {op} command needs {needs!r}")
    return Command(**raw)


def parse_devices(raw: object) -> list[str]:
    """A hello's ``{"devices": [END-POINT, ...]}``, duplicates removed."""
    if not isinstance(raw, dict) or set(raw) != {"devices"}:
        raise LinkError('hello takes {"devices": [END-POINT, ...]} and nothing else')
    check_clean(raw, "hello")
    devices = raw["devices"]
    if not isinstance(devices, list) or not all(isinstance(d, str) and d for d in devices):
        raise LinkError("hello's devices must be a list of non-empty strings")
    return list(dict.fromkeys(devices))


#: (connection, frame) pairs to send, in order
Sends = list[tuple[Hashable, dict[str, Any]]]


@attrs.define(eq=False)
class Pbx:
    """Calls, devices and claims; every method returns the frames to send."""

    max_held: int = DEFAULT_MAX_HELD
    switch: SimulatedSwitch = attrs.field(factory=SimulatedSwitch)
    #: the connections that said hello -> the devices they claimed, in order
    claims: dict[Hashable, tuple[str, ...]] = attrs.field(factory=dict)
    #: device -> the connection holding it
    owner: dict[str, Hashable] = attrs.field(factory=dict)
    #: live call -> its device
    call_device: dict[str, str] = attrs.field(factory=dict)
    #: calls that existed and are over, the newest last (bounded: MAX_ENDED)
    ended: dict[str, None] = attrs.field(factory=dict)
    #: events of devices nobody holds, oldest first
    held: dict[str, deque[dict[str, Any]]] = attrs.field(factory=dict)
    #: how many events ``held`` holds, in all
    held_count: int = 0

    # -- connections

    def hello(self, conn: Hashable, raw: object) -> Sends:
        """``conn`` claims devices: the answer (the same hello), then what was
        held for them. Raises LinkError for a malformed or second hello (the
        first claim stands), ClaimRefused for a device held elsewhere."""
        devices = parse_devices(raw)
        if conn in self.claims:
            raise LinkError("a second hello on one connection (its first claim stands)")
        taken = [d for d in devices if d in self.owner]
        if taken:
            raise ClaimRefused(f"device(s) {', '.join(taken)} are held by another connection")
        self.claims[conn] = tuple(devices)
        sends: Sends = [(conn, {"hello": {"devices": devices}})]
        for device in devices:
            self.owner[device] = conn
            queue = self.held.pop(device, deque())
            self.held_count -= len(queue)
            sends += [(conn, {"event": wire}) for wire in queue]
        return sends

    def closed(self, conn: Hashable) -> None:
        """``conn`` is gone: its devices are free (their calls go on)."""
        for device in self.claims.pop(conn, ()):
            self.owner.pop(device, None)

    def devices_of(self, conn: Hashable) -> list[str]:
        return list(self.claims.get(conn, ()))

    # -- input

    def command(self, conn: Hashable, raw: object) -> Sends:
        """A command from ``conn``: run on the PBX (H-SIM-1), its events
        routed. It may name only this connection's devices and their calls;
        a call that has ended or that the PBX never saw is an error."""
        command = parse_command(raw)
        if conn not in self.claims:
            raise LinkError("a command before hello")
        mine = self.claims[conn]
        where = f"{command.op} {command.id}"
        if command.device is not None and command.device not in mine:
            raise LinkError(f"{where}: device {command.device} is not this connection's")
        for call in (command.call, command.consult, command.other):
            if call is None:
                continue
            device = self.call_device.get(call)
            if device is None:
                if call in self.ended:  # a command that crossed the call's end: a race, said as such
                    raise LinkError(f"{where}: call {call} has ended")
                raise LinkError(f"{where}: no call {call} at this PBX")
            if device not in mine:
                raise LinkError(f"{where}: call {call} is not on this connection's devices")
        return self._route(dispatch(self.switch, command))

    def play(self, raw: object) -> Sends:
        """An event of the outside world (a customer, a far party, another
        agent at a device): applied to the PBX, sent to its device's holder."""
        event = parse_event(raw)
        if event.call and not event.device and event.call not in self.call_device:
            raise LinkError(f"{event.kind}: no call {event.call} at this PBX, and no device named")
        sends = self._route([event])  # the call's device first: observe forgets it on ended/failed
        self.switch.observe(event)
        return sends

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
            else:
                self._hold(device, wire)
        return sends

    def _hold(self, device: str, wire: dict[str, Any]) -> None:
        queue = self.held.setdefault(device, deque())
        queue.append(wire)
        self.held_count += 1
        if self.held_count > self.max_held:
            dropped = queue.popleft()
            self.held_count -= 1
            if not queue:
                del self.held[device]
            logger.warning(
                "more than %d events held for devices nobody holds: dropped %s of device %s",
                self.max_held,
                dropped,
                device,
            )

    # -- what the script waits for

    def call_state(self, call: str) -> str | None:
        """TALKING, HELD, ... for a live call; ``ended``; None if never seen."""
        if call in self.switch.calls:
            return self.switch.calls[call]
        return "ended" if call in self.ended else None

    def device_state(self, device: str) -> str:
        return self.switch.devices.get(device, "loggedout")


def parse_event(raw: object) -> SwitchEvent:
    """A switch event the PBX may play (harness.md's shape, H-SW-1; not a
    ``link`` or ``result``), or LinkError naming the defect."""
    try:
        event = parse_switch_event(raw)
    except RemoteProtocolError as exc:
        raise LinkError(exc.message) from None
    if event.kind in NOT_PLAYED:
        raise LinkError(f"a {event.kind} event is not the PBX's to play")
    return event

"""What the switch reports (events) and what the engine asks of it (commands).

The shapes are those of spec/harness.md ("Switch events", "Switch
commands"). Each kind's required fields are in :data:`EVENT_FIELDS`
(H-SW-1: ``call`` for the call events, ``device`` too for ``offered``,
``device`` and ``state`` for ``agent``, ``up`` for ``link``, ``command`` and
``ok`` for ``result``). They are read by :func:`fsm.intake.parse_switch_event`: a
missing required field or a value of the wrong type is a D-BAD error that
names the field, and the event changes nothing (H-SW-1, D-SWITCH). Unknown
fields are ignored (H-SW-1); interaction data that breaks D-DATA is trimmed,
and the event says which keys went.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from fsm.messages import converter


@attrs.frozen(kw_only=True)
class SwitchEvent:
    """One switch event. Fields a kind does not use keep their defaults."""

    kind: str
    call: str = ""
    #: the end-point of the agent's device (``offered``, ``dialing``, ``agent``)
    device: str = ""
    #: the device's login state (``agent``): one of AGENT_STATES
    state: str = ""
    #: whether the link to the switch is up (``link``)
    up: bool = False
    ani: str = ""
    dnis: str = ""
    #: interaction data: strings or objects of the same kind (S-INIT-1),
    #: at most 8 levels (D-DATA), trimmed by :func:`fsm.intake.parse_switch_event`
    data: dict[str, Any] = attrs.field(factory=dict)
    destination: str = ""
    cause: str = ""
    reason: str = ""
    command: str = ""
    ok: bool = False
    #: D-DATA: the data keys dropped from what the switch sent
    trimmed: tuple[str, ...] = ()


#: kind -> (required fields, optional fields), harness.md "Switch events".
EVENT_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "offered": (("call", "device"), ("ani", "dnis", "data")),
    "dialing": (("call",), ("device", "destination")),
    "alerting": (("call",), ()),
    "connected": (("call",), ()),
    "held": (("call",), ()),
    "retrieved": (("call",), ()),
    "ended": (("call",), ("cause",)),
    "failed": (("call",), ("reason",)),
    "agent": (("device", "state"), ()),
    "link": (("up",), ("reason",)),
    "result": (("command", "ok"), ("call", "reason")),
}
#: The states an ``agent`` event reports (harness.md), each a trigger
#: ``agent_STATE`` of the channel machine.
AGENT_STATES: Final = ("loggedin", "loggedout", "ready", "notready", "taken", "free", "removed")


def event_to_wire(event: SwitchEvent) -> dict[str, Any]:
    """The harness.md shape of an event: its kind's fields only."""
    required, optional = EVENT_FIELDS[event.kind]
    wire: dict[str, Any] = {"kind": event.kind}
    for name in required:
        wire[name] = getattr(event, name)
    for name in optional:
        value = getattr(event, name)
        if value:
            wire[name] = converter.unstructure(value)
    return wire


@attrs.frozen(kw_only=True)
class Command:
    """A command to the switch (harness.md "Switch commands").

    ``consult`` (transfer, conference) names the consult leg and ``other``
    (alternate) the leg to retrieve, so that a switch need not remember
    which legs belong together.
    """

    id: str
    op: str
    call: str | None = None
    #: the end-point of a device command (login, logout, ready, notready, dial)
    device: str | None = None
    destination: str | None = None
    digits: str | None = None
    consult: str | None = None
    other: str | None = None
    reason: str | None = None


#: Command field names, in order: the keys of its wire shape.
_COMMAND_FIELDS: Final = tuple(field.name for field in attrs.fields(Command))


def command_to_wire(command: Command) -> dict[str, str]:
    """The harness.md shape of a command: its fields in order, unset ones left out."""
    wire: dict[str, str] = {}
    for name in _COMMAND_FIELDS:
        value = getattr(command, name)
        if value is not None:
            wire[name] = value
    return wire

"""What the switch reports (events) and what the engine asks of it (commands).

The shapes are those of spec/harness.md ("Switch events", "Switch
commands"). Only ``kind`` and ``call`` are required (``command`` and ``ok``
for ``result``); a missing required field or a value of the wrong type is a
D-BAD error that names the field, and the event changes nothing (H-SW-1,
D-SWITCH). Unknown fields are ignored (H-SW-1); interaction data that breaks
D-DATA is trimmed, and the event says which keys went.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from fsm.errors import RemoteProtocolError
from fsm.frozen import builder
from fsm.messages import converter, plain_data, structure, trim_data, unclean


@attrs.frozen(kw_only=True)
class SwitchEvent:
    """One switch event. Fields a kind does not use keep their defaults."""

    kind: str
    call: str = ""
    ani: str = ""
    dnis: str = ""
    #: interaction data: strings or objects of the same kind (S-INIT-1),
    #: at most 8 levels (D-DATA), trimmed by :func:`parse_switch_event`
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
    "offered": (("call",), ("ani", "dnis", "data")),
    "dialing": (("call",), ("destination",)),
    "alerting": (("call",), ()),
    "connected": (("call",), ()),
    "held": (("call",), ()),
    "retrieved": (("call",), ()),
    "ended": (("call",), ("cause",)),
    "failed": (("call",), ("reason",)),
    "result": (("command", "ok"), ("call", "reason")),
}


_build_event: Final = builder(SwitchEvent)
#: kind -> (required fields, every field it may carry)
_SHAPES: Final = {
    kind: (required, frozenset({"kind", *required, *optional}))
    for kind, (required, optional) in EVENT_FIELDS.items()
}


#: the kinds whose one required field is ``call``
_CALL_KINDS: Final = frozenset(kind for kind, (required, _) in EVENT_FIELDS.items() if required == ("call",))


def parse_switch_event(raw: object) -> SwitchEvent:
    """Validate a decoded switch event; raise a D-BAD error naming the defect."""
    if type(raw) is dict:
        event = _read_plain_event(raw)
        if event is not None:
            return event
    return _read_event(raw)


def _read_plain_event(raw: dict[str, Any]) -> SwitchEvent | None:
    """The common case in one pass: an event of a known kind with its
    required fields, no others, and every field of its type. Returns what
    :func:`_read_event` returns for it; None for anything else, which
    :func:`_read_event` then reports on (D-BAD)."""
    kind = raw.get("kind")
    if type(kind) is not str:
        return None
    if len(raw) == 2 and kind in _CALL_KINDS:  # most events: a kind and its call, nothing else
        call = raw.get("call")
        return _build_event(kind, call) if type(call) is str and call and call.isascii() else None
    shape = _SHAPES.get(kind)
    if shape is None:
        return None
    required, allowed = shape
    if not raw.keys() <= allowed:
        return None
    for name in required:
        if name not in raw:
            return None
    for key, value in raw.items():
        if key == "data":
            if not plain_data(value):
                return None
        elif key == "ok":
            if type(value) is not bool:
                return None
        elif type(value) is not str or not value.isascii():  # non-ASCII: the general reader looks
            return None
    if "data" in raw:  # the event gets a data dict of its own
        event = _build_event(**{**raw, "data": dict(raw["data"])})
    else:
        event = _build_event(**raw)
    if "call" in required and not event.call:
        return None
    return event


def _read_event(raw: object) -> SwitchEvent:
    if not isinstance(raw, dict):
        raise RemoteProtocolError("a switch event must be a JSON object", "D-BAD")
    kind = raw.get("kind")
    if not isinstance(kind, str):
        raise RemoteProtocolError("switch event: 'kind' is missing or not a string", "D-BAD")
    if kind not in EVENT_FIELDS:
        kinds = ", ".join(EVENT_FIELDS)
        raise RemoteProtocolError(f"switch event: unknown kind {kind!r} (known: {kinds})", "D-BAD")
    required, optional = EVENT_FIELDS[kind]
    missing = [name for name in required if name not in raw]
    if missing:
        raise RemoteProtocolError(
            f"switch event {kind}: missing required field {', '.join(missing)}", "D-BAD"
        )
    known: dict[str, Any] = {
        name: raw[name] for name in ("kind", *required, *optional) if name in raw
    }  # H-SW-1
    trimmed: list[str] = []
    if "data" in known:
        data = known["data"]
        if not isinstance(data, dict):
            raise RemoteProtocolError(f"switch event {kind}: data must be an object", "D-BAD")
        known["data"], trimmed = trim_data(data)  # D-DATA: trimmed, not refused
    defect = unclean(known, limit=64)
    if defect is not None:
        raise RemoteProtocolError(f"switch event {kind}: {defect}", "D-BAD")
    event: SwitchEvent = structure(known, SwitchEvent, "", context=f"switch event {kind}")
    if trimmed:
        event = attrs.evolve(event, trimmed=tuple(trimmed))
    if "call" in required and not event.call:
        raise RemoteProtocolError(f"switch event {kind}: 'call' is empty", "D-BAD")
    return event


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
    call: str
    destination: str | None = None
    digits: str | None = None
    consult: str | None = None
    other: str | None = None


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

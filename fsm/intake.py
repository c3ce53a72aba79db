"""Decoding and validating what the bridge sends (F-ENV, D-ENV, D-BAD) and
what the switch reports (H-SW-1, D-SWITCH, D-DATA).

:func:`read_message` turns raw input (bytes, text or an already decoded
object) into a :class:`Valid` message, or a :class:`Defect` that says what
is wrong and, when the input has a usable ``requestId``, the headers a
FAILURE response must echo (S-REQ-2). :func:`parse_switch_event` turns a
decoded switch event into a :class:`~fsm.switch_events.SwitchEvent` or
raises a D-BAD error naming the defect. Both first try the one-pass readers
of ``fsm.fastread``. Nothing here touches engine state.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from fsm.catalog import CATALOG, NO_PROPERTIES, PROPERTY_KEYS, FreeProperties, NoProperties, Valid
from fsm.codec import JSONDecodeError, loads
from fsm.errors import Refusal, Refused, RemoteProtocolError
from fsm.fastread import read_plain_event, read_quickly, read_valid
from fsm.messages import (
    MAX_REQUEST_ID,
    QUERY,
    REQUEST,
    Headers,
    clean_text,
    json_type,
    structure,
    trim_data,
    unclean,
    usable_request_id,
)
from fsm.switch_events import AGENT_STATES, EVENT_FIELDS, SwitchEvent


@attrs.frozen
class Defect(Refused):
    """Input that cannot be executed, and why. ``echo`` holds the headers
    to answer with when the input had a usable requestId, else None (then it
    is a protocol error output)."""

    refusal: Refusal
    echo: Headers | None


def _defect(rule: str, reason: str, echo: Headers | None = None) -> Defect:
    return Defect(Refusal(rule, reason), echo)


def read_message(raw: object, max_size: int) -> Valid | Defect:
    if type(raw) is bytes:  # what an adapter passes: the common case first
        if len(raw) > max_size:
            return _oversized(len(raw), max_size)
        quick = read_quickly(raw)
        if quick is not None:
            return quick
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _defect("D-BAD", f"message is not UTF-8: {exc.reason} at byte {exc.start}", None)
    elif isinstance(raw, bytes | bytearray | memoryview):
        return read_message(bytes(raw), max_size)
    elif isinstance(raw, str):
        # D-BOUND, D-WIRE: the limit counts bytes of UTF-8 (up to 4 a code point)
        if len(raw) > max_size // 4 and (size := len(raw.encode("utf-8", "surrogatepass"))) > max_size:
            return _oversized(size, max_size)
        quick = read_quickly(raw)
        if quick is not None:
            return quick
    if isinstance(raw, str):
        try:
            raw = loads(raw)
        except JSONDecodeError as exc:
            return _defect("D-BAD", f"message is not JSON: {exc.msg} at column {exc.colno}", None)
        except RecursionError:
            return _defect("D-BAD", "message is not JSON: nested too deeply", None)
    return _read_object(raw)


def _oversized(size: int, limit: int) -> Defect:
    return _defect("D-BOUND", f"message of {size} bytes exceeds the limit of {limit} (max_frame_size)", None)


#: The keys of the guessed envelope this client once read; a message that has
#: them is refused naming the real envelope (D-ENV).
_OLD_ENVELOPE_KEYS: Final = ("headers", "properties")
#: The header keys intake reads; any other header key is ignored (D-ENV).
_HEADER_KEYS: Final = ("type", "name", "target", "requestId", "result", "errorMessage")


def _read_object(raw: object) -> Valid | Defect:
    if type(raw) is dict:
        valid = read_valid(raw, False)
        if valid is not None:
            return valid
    return _read_checked(raw)


def _read_checked(raw: object) -> Valid | Defect:
    if not isinstance(raw, dict):
        return _defect("D-BAD", f"a message is a JSON object {{header, body}}, not {json_type(raw)}", None)
    header = raw.get("header")
    defect = unclean(raw)
    if defect is not None:  # D-BAD: whatever else is wrong, this is said first
        return _defect("D-BAD", f"message holds {defect}", echo_of(header))
    old = [key for key in _OLD_ENVELOPE_KEYS if key in raw]
    if old:
        keys = " and ".join(repr(k) for k in old)
        return _defect("D-BAD", f"unknown key {keys}: the envelope is {{header, body}}", echo_of(header))
    if not isinstance(header, dict):
        if header is None:
            return _defect("D-BAD", "message has no header object (the envelope is {header, body})", None)
        return _defect("D-BAD", f"header: expected an object, got {json_type(header)}", None)
    request_id = header.get("requestId")
    echo = echo_of(header)
    try:
        known = {key: header[key] for key in _HEADER_KEYS if key in header}
        parsed: Headers = structure(known, Headers, "header")
        return _read_body(parsed, raw)
    except RemoteProtocolError as exc:
        message = exc.message
        if echo is None:
            message = f"{message} ({_why_unanswerable(request_id)})"
        return _defect(exc.rule, message, echo)


def echo_of(header: object) -> Headers | None:
    """The header a FAILURE response echoes, when the message has a usable
    requestId (D-BAD); None when it cannot be answered."""
    if not isinstance(header, dict):
        return None
    request_id = header.get("requestId")
    if not usable_request_id(request_id):
        return None
    name, target, kind = header.get("name"), header.get("target"), header.get("type")
    return Headers(  # what can be written as UTF-8 of it (D-BAD)
        type=clean_text(kind) if isinstance(kind, str) else "",
        name=clean_text(name) if isinstance(name, str) else "",
        target=clean_text(target) if isinstance(target, str) else "",
        request_id=request_id,
    )


def _why_unanswerable(request_id: object) -> str:
    if request_id is None:
        return "no requestId: cannot be answered"
    if isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID:
        return f"requestId longer than {MAX_REQUEST_ID} characters: cannot be answered"
    if isinstance(request_id, str) and request_id:
        return "requestId holds a lone surrogate: cannot be answered"
    return "requestId is not a non-empty string: cannot be answered"


def _read_body(headers: Headers, raw: dict[str, Any]) -> Valid:
    if headers.type not in (QUERY, REQUEST):
        raise RemoteProtocolError(
            f"header.type {headers.type!r}: the bridge sends only {QUERY} and {REQUEST}", "D-BAD"
        )
    if not usable_request_id(headers.request_id):
        raise RemoteProtocolError(f"header.requestId: {_why_unanswerable(headers.request_id)}", "D-BAD")
    for field, value in (("result", headers.result), ("errorMessage", headers.error_message)):
        if value is not None:
            raise RemoteProtocolError(f"a {headers.type} carries no header.{field}", "D-BAD")
    spec = CATALOG.get(headers.name)
    if spec is None:
        raise RemoteProtocolError(f"unknown message name {headers.name!r}", "D-BAD")
    if spec.kind != headers.type:
        raise RemoteProtocolError(
            f"{headers.name} is a {spec.kind}, but its header.type says {headers.type}", "D-BAD"
        )
    body = raw.get("body")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise RemoteProtocolError(
            f"body of {headers.name}: expected an object, got {json_type(body)}", "D-BAD"
        )
    props: Any
    if spec.properties is FreeProperties:  # every key is data (D-ENV)
        props = structure(body, FreeProperties, "body")
        properties = dict(body)
    elif spec.properties is NoProperties:  # whatever keys it has are ignored (D-ENV)
        props, properties = NO_PROPERTIES, {}
    else:
        properties = {key: body[key] for key in PROPERTY_KEYS[spec.name] if key in body}
        props = structure(properties, spec.properties, "body")
    return Valid(headers, spec, properties, props)


# --------------------------------------------------------------------------
# Switch events (H-SW-1, D-SWITCH, D-DATA).


def parse_switch_event(raw: object) -> SwitchEvent:
    """Validate a decoded switch event; raise a D-BAD error naming the defect."""
    event = read_plain_event(raw) if type(raw) is dict else None
    if event is None:
        event = _read_event(raw)
    if event.kind in _CHECKED_KINDS:
        if not event.device:
            raise RemoteProtocolError(f"switch event {event.kind}: 'device' is empty", "D-BAD")
        if event.kind == "agent" and event.state not in AGENT_STATES:
            raise RemoteProtocolError(
                f"switch event agent: unknown state {event.state!r} (known: {', '.join(AGENT_STATES)})",
                "D-BAD",
            )
    return event


#: the kinds whose required ``device`` (and ``state``) the reader checks (H-SW-1)
_CHECKED_KINDS: Final = frozenset({"offered", "agent"})


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

"""Decoding and validating what the bridge sends (F-ENV, D-ENV, D-BAD).

:func:`read_message` turns raw input (bytes, text or an already decoded
object) into a :class:`Valid` message, or a :class:`Defect` that says what
is wrong and, when the input has a usable ``requestId``, the headers a
FAILURE response must echo (S-REQ-2). Nothing here touches engine state.
"""

from __future__ import annotations

import json
from typing import Any, Final, NamedTuple

import attrs
from orjson import JSONDecodeError as OrjsonDecodeError
from orjson import loads as orjson_loads

from fsm.catalog import CATALOG, FreeProperties, NoProperties, RequestSpec
from fsm.errors import RemoteProtocolError
from fsm.frozen import builder
from fsm.messages import (
    QUERY,
    REQUEST,
    SURROGATE,
    Headers,
    build_headers,
    clean_text,
    json_type,
    structure,
    unclean,
)

#: Longest requestId that can be answered, in code points (D-BAD).
MAX_REQUEST_ID = 256


def usable_request_id(value: object) -> bool:
    """D-BAD: a requestId a FAILURE can echo: a non-empty string of at most
    256 code points without a lone surrogate."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_REQUEST_ID
        and (value.isascii() or SURROGATE.search(value) is None)
    )


class Valid(NamedTuple):
    """A well-formed query or request of the catalog. ``properties`` are the
    body keys its spec reads (D-ENV: others are ignored), ``props`` the same
    structured as the spec says (see :func:`fsm.catalog.read_properties`).
    A named tuple, not an attrs class: it lives from intake to execution
    only, and one is made per request."""

    headers: Headers
    spec: RequestSpec
    properties: dict[str, str]
    props: Any


@attrs.frozen
class Defect:
    """Input that cannot be executed. ``echo`` holds the headers to answer
    with when the input had a usable requestId, else None (then it is a
    protocol error output)."""

    rule: str
    message: str
    echo: Headers | None


def read_message(raw: object, max_size: int) -> Valid | Defect:
    if type(raw) is bytes:  # what an adapter passes: the common case first
        if len(raw) > max_size:
            return _oversized(len(raw), max_size)
        quick = _read_quickly(raw)
        if quick is not None:
            return quick
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Defect("D-BAD", f"message is not UTF-8: {exc.reason} at byte {exc.start}", None)
    elif isinstance(raw, bytes | bytearray | memoryview):
        return read_message(bytes(raw), max_size)
    elif isinstance(raw, str):
        # D-BOUND, D-WIRE: the limit counts bytes of UTF-8 (up to 4 a code point)
        if len(raw) > max_size // 4 and (size := len(raw.encode("utf-8", "surrogatepass"))) > max_size:
            return _oversized(size, max_size)
        quick = _read_quickly(raw)
        if quick is not None:
            return quick
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            return Defect("D-BAD", f"message is not JSON: {exc.msg} at column {exc.colno}", None)
        except RecursionError:
            return Defect("D-BAD", "message is not JSON: nested too deeply", None)
    return _read_object(raw)


def _read_quickly(text: bytes | str) -> Valid | None:
    """The message as orjson reads it, when that is a valid message; None
    for anything else, which is then read again with json so that every
    defect is reported as json sees it. A valid message holds only strings,
    objects and null, where orjson and json read the same text alike (see
    ``fsm.codec``)."""
    try:
        value = orjson_loads(text)
    except OrjsonDecodeError:
        return None
    return _read_valid(value, True) if type(value) is dict else None


def _oversized(size: int, limit: int) -> Defect:
    return Defect("D-BOUND", f"message of {size} bytes exceeds the limit of {limit} (max_frame_size)", None)


_new_tuple: Final = tuple.__new__
#: The keys of the envelope (F-ENV).
_ENVELOPE_KEYS: Final = frozenset({"header", "body"})
#: The keys of the guessed envelope this client once read; a message that has
#: them is refused naming the real envelope (D-ENV).
_OLD_ENVELOPE_KEYS: Final = ("headers", "properties")
#: The header keys intake reads; any other header key is ignored (D-ENV).
_HEADER_KEYS: Final = ("type", "name", "target", "requestId", "result", "errorMessage")
#: What every message without properties structures to.
_NO_PROPERTIES: Final = NoProperties()
#: message name -> the body keys its attrs properties class takes
_PROPERTY_KEYS: Final = {
    spec.name: frozenset(field.name for field in attrs.fields(spec.properties))
    for spec in CATALOG.values()
    if attrs.has(spec.properties)
}
#: message name -> a quick constructor of its attrs properties class
_PROPERTY_BUILDERS: Final = {
    spec.name: builder(spec.properties)
    for spec in CATALOG.values()
    if attrs.has(spec.properties) and spec.properties is not NoProperties
}


def _read_object(raw: object) -> Valid | Defect:
    if type(raw) is dict:
        valid = _read_valid(raw, False)
        if valid is not None:
            return valid
    return _read_checked(raw)


def _read_valid(raw: dict[str, Any], owned: bool) -> Valid | None:
    """The common case in one pass: a query or request whose header is
    exactly type, name, target and requestId, every one a string, and whose
    body holds exactly the keys its spec takes, as strings. Returns what
    :func:`_read_checked` returns for such a message, or None for anything
    else, which :func:`_read_checked` then reads and reports on (D-BAD).
    ``owned``: ``raw`` was decoded here, so its body dict need not be
    copied (a caller's is)."""
    header = raw.get("header")
    if type(header) is not dict or len(header) != 4:
        return None
    try:  # four keys, each of them one of the four: exactly the four
        kind, name, target, request_id = (
            header["type"],
            header["name"],
            header["target"],
            header["requestId"],
        )
    except KeyError:
        return None
    if not (type(kind) is str and type(name) is str and type(target) is str and type(request_id) is str):
        return None
    if not owned and not (name.isascii() and target.isascii()):
        return None  # a caller's dict may hold lone surrogates: the general reader looks (D-BAD)
    spec = CATALOG.get(name)
    if spec is None or spec.kind != kind or not request_id or len(request_id) > MAX_REQUEST_ID:
        return None
    if not owned and not request_id.isascii() and SURROGATE.search(request_id):
        return None  # D-BAD: not usable (what orjson decoded holds no lone surrogate)
    body: Any = None
    if len(raw) > 1:
        if not raw.keys() <= _ENVELOPE_KEYS:
            return None
        body = raw["body"]
    props: Any
    if body is None or not body:
        if type(body) not in (dict, type(None)):
            return None
        body = {}
        if spec.properties is NoProperties:
            props = _NO_PROPERTIES
        elif spec.properties is FreeProperties:
            props = {}
        else:
            return None
    elif type(body) is not dict:
        return None
    else:
        if not owned:
            body = dict(body)
            for key, value in body.items():
                if not (type(value) is str and value.isascii() and type(key) is str and key.isascii()):
                    return None  # it may hold a lone surrogate: the general reader looks (D-BAD)
        if spec.properties is FreeProperties:
            for key, value in body.items():
                if type(key) is not str or type(value) is not str:
                    return None
            props = dict(body)
        elif spec.properties is NoProperties:
            return None  # keys it does not take: ignored, by the general reader (D-ENV)
        else:
            if body.keys() != _PROPERTY_KEYS[name]:
                return None
            for value in body.values():
                if type(value) is not str:
                    return None
            props = _PROPERTY_BUILDERS[name](**body)
    valid: Valid = _new_tuple(Valid, (build_headers(kind, name, target, request_id), spec, body, props))
    return valid


def _read_checked(raw: object) -> Valid | Defect:
    if not isinstance(raw, dict):
        return Defect("D-BAD", f"a message is a JSON object {{header, body}}, not {json_type(raw)}", None)
    header = raw.get("header")
    defect = unclean(raw)
    if defect is not None:  # D-BAD: whatever else is wrong, this is said first
        return Defect("D-BAD", f"message holds {defect}", echo_of(header))
    old = [key for key in _OLD_ENVELOPE_KEYS if key in raw]
    if old:
        keys = " and ".join(repr(k) for k in old)
        return Defect("D-BAD", f"unknown key {keys}: the envelope is {{header, body}}", echo_of(header))
    if not isinstance(header, dict):
        if header is None:
            return Defect("D-BAD", "message has no header object (the envelope is {header, body})", None)
        return Defect("D-BAD", f"header: expected an object, got {json_type(header)}", None)
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
        return Defect(exc.rule, message, echo)


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
        props, properties = _NO_PROPERTIES, {}
    else:
        properties = {key: body[key] for key in _PROPERTY_KEYS[spec.name] if key in body}
        props = structure(properties, spec.properties, "body")
    return Valid(headers, spec, properties, props)

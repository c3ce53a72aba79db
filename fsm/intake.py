"""Decoding and validating what the bridge sends (D-BAD).

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
from fsm.messages import QUERY, REQUEST, Headers, build_headers, json_type, structure

#: Longest requestId accepted; a longer one is a defect (D-BOUND).
MAX_REQUEST_ID = 256


class Valid(NamedTuple):
    """A well-formed query or request of the catalog. ``props`` is
    ``properties`` structured as the spec says (see
    :func:`fsm.catalog.read_properties`). A named tuple, not an attrs class:
    it lives from intake to execution only, and one is made per request."""

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
        if len(raw) > max_size:
            return _oversized(len(raw), max_size)
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
#: The top-level keys of a message.
_MESSAGE_KEYS: Final = frozenset({"headers", "properties", "body"})
#: The header keys of a valid query or request, in the order the bridge writes them.
_REQUEST_HEADERS: Final = frozenset({"type", "name", "target", "requestId"})
#: What every message without properties structures to.
_NO_PROPERTIES: Final = NoProperties()
#: message name -> the property keys its attrs properties class takes
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
    """The common case in one pass: a query or request whose headers are
    exactly type, name, target and requestId, every one a string, and whose
    properties are strings as its spec asks. Returns what
    :func:`_read_checked` returns for such a message, or None for anything
    else, which :func:`_read_checked` then reads and reports on (D-BAD).
    ``owned``: ``raw`` was decoded here, so its properties dict need not be
    copied (a caller's dict is)."""
    headers = raw.get("headers")
    if type(headers) is not dict or len(headers) != 4:
        return None
    try:  # four keys, each of them one of the four: exactly the four
        kind, name, target, request_id = (
            headers["type"],
            headers["name"],
            headers["target"],
            headers["requestId"],
        )
    except KeyError:
        return None
    if not (type(kind) is str and type(name) is str and type(target) is str and type(request_id) is str):
        return None
    spec = CATALOG.get(name)
    if spec is None or spec.kind != kind or not request_id:
        return None
    properties: Any = None
    if len(raw) > 1:
        if not raw.keys() <= _MESSAGE_KEYS:
            return None
        body = raw.get("body")
        if body is not None and body != "" and body != {}:
            return None
        properties = raw.get("properties")
    props: Any
    if properties is None:
        properties = {}
        if spec.properties is NoProperties:
            props = _NO_PROPERTIES
        elif spec.properties is FreeProperties:
            props = {}
        else:
            return None
    elif type(properties) is not dict:
        return None
    else:
        if not owned:
            properties = dict(properties)
        if spec.properties is FreeProperties:
            for key, value in properties.items():
                if type(key) is not str or type(value) is not str:
                    return None
            props = dict(properties)
        elif spec.properties is NoProperties:
            if properties:
                return None
            props = _NO_PROPERTIES
        else:
            if properties.keys() != _PROPERTY_KEYS[name]:
                return None
            for value in properties.values():
                if type(value) is not str:
                    return None
            props = _PROPERTY_BUILDERS[name](**properties)
    valid: Valid = _new_tuple(Valid, (build_headers(kind, name, target, request_id), spec, properties, props))
    return valid


def _read_checked(raw: object) -> Valid | Defect:
    if not isinstance(raw, dict):
        return Defect("D-BAD", "message must be a JSON object with headers", None)
    unknown = sorted(set(raw) - {"headers", "properties", "body"})
    headers = raw.get("headers")
    if not isinstance(headers, dict):
        return Defect("D-BAD", "message has no headers object", None)
    request_id = headers.get("requestId")
    echo: Headers | None = None
    if isinstance(request_id, str) and request_id and len(request_id) <= MAX_REQUEST_ID:
        name, target = headers.get("name"), headers.get("target")
        echo = Headers(
            type=str(headers.get("type", "")),
            name=name if isinstance(name, str) else "",
            target=target if isinstance(target, str) else "",
            request_id=request_id,
        )
    try:
        if unknown:
            raise RemoteProtocolError(f"unknown top-level key {', '.join(unknown)}", "D-BAD")
        parsed: Headers = structure(headers, Headers, "headers")
        return _read_headers(parsed, raw)
    except RemoteProtocolError as exc:
        message = exc.message
        if echo is None:
            message = f"{message} ({_why_unanswerable(request_id)})"
        return Defect(exc.rule, message, echo)


def _why_unanswerable(request_id: object) -> str:
    if request_id is None:
        return "no requestId: cannot be answered"
    if isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID:
        return f"requestId longer than {MAX_REQUEST_ID} characters: cannot be answered"
    return "requestId is not a non-empty string: cannot be answered"


def _read_headers(headers: Headers, raw: dict[str, Any]) -> Valid:
    if headers.type not in (QUERY, REQUEST):
        raise RemoteProtocolError(
            f"header type {headers.type!r}: the bridge sends only {QUERY} and {REQUEST}", "D-BAD"
        )
    if not headers.request_id:
        raise RemoteProtocolError(f"a {headers.type} needs a non-empty requestId header", "D-BAD")
    for field, value in (("result", headers.result), ("errorMessage", headers.error_message)):
        if value is not None:
            raise RemoteProtocolError(f"a {headers.type} carries no {field} header", "D-BAD")
    spec = CATALOG.get(headers.name)
    if spec is None:
        raise RemoteProtocolError(f"unknown message name {headers.name!r}", "D-BAD")
    if spec.kind != headers.type:
        raise RemoteProtocolError(
            f"{headers.name} is a {spec.kind}, but its type header says {headers.type}", "D-BAD"
        )
    body = raw.get("body")
    if body not in (None, "", {}):
        raise RemoteProtocolError(f"{headers.name} takes no body", "D-BAD")
    properties = raw.get("properties", {})
    if properties is None:
        properties = {}
    where = f"properties of {headers.name}"
    if not isinstance(properties, dict):
        raise RemoteProtocolError(
            f"malformed {where}: expected an object, got {json_type(properties)}", "D-BAD"
        )
    props: Any
    if spec.properties is FreeProperties:
        props = structure(properties, FreeProperties, where)
    elif spec.properties is NoProperties:
        if properties:
            extra = ", ".join(sorted(properties))
            raise RemoteProtocolError(f"{headers.name} takes no properties (got {extra})", "D-BAD")
        props = _NO_PROPERTIES
    else:
        props = structure(properties, spec.properties, where)
    return Valid(headers, spec, dict(properties), props)

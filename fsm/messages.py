"""Messages between the bridge and the client, and the one strict cattrs converter.

Every message is ``{"header": {...}, "body": {...}}`` (F-ENV): the header
holds type, name, target and, for queries, requests and responses, the
requestId (responses add result and, on FAILURE, errorMessage); the body
holds the message's properties, or a response's JSON (D-BODY). Messages are
frozen, slotted, keyword-only attrs classes; :data:`converter` structures
and unstructures them. The converter is strict (D-BAD): a string field
refuses an integer, and each defect is reported with the wire name of the
field (``body.destination: is missing``). Which keys are read at all is
intake's business (D-ENV: unknown keys are ignored).
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, TypeAlias

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from fsm.codec import dumpb
from fsm.errors import RemoteProtocolError
from fsm.frozen import builder

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
#: interaction-data values: strings, or objects of the same kind (S-INIT-1)
DataValue: TypeAlias = "str | dict[str, DataValue]"

QUERY: Final = "cti.query"
REQUEST: Final = "cti.request"
RESPONSE: Final = "cti.response"
EVENT: Final = "cti.event"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"

#: Python attribute name -> wire header key, where they differ.
_WIRE_NAMES: Final = {"request_id": "requestId", "error_message": "errorMessage", "end_point": "end-point"}
#: The metadata key of an attrs field whose wire name is not its Python name.
WIRE: Final = "wire"


@attrs.frozen(kw_only=True)
class Headers:
    """The header of a message (spec table "Messages", F-ENV)."""

    type: str
    name: str
    target: str
    request_id: str | None = None
    result: str | None = None
    error_message: str | None = None


@attrs.frozen(kw_only=True)
class Message:
    """One message: its header and its body (F-ENV). The body is a JSON
    object: a request's properties, an event's properties or a response's
    JSON; ``{}`` when there is none (D-ENV, D-BODY)."""

    header: Headers
    body: dict[str, Any] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        return self.header.name

    @property
    def target(self) -> str:
        return self.header.target


#: ``Headers(...)`` and ``Message(...)``, quicker (see ``fsm.frozen``).
build_headers: Final = builder(Headers)
build_message: Final = builder(Message)


def response(
    original: Headers,
    *,
    error: str | None = None,
    body: dict[str, Any] | None = None,
) -> Message:
    """The one response to ``original`` (S-REQ-1, S-REQ-2): same name, target
    and requestId; FAILURE with a person-readable ``errorMessage`` and an
    empty body when ``error`` is given (D-BODY)."""
    return build_message(
        build_headers(
            RESPONSE,
            original.name,
            original.target,
            original.request_id,
            SUCCESS if error is None else FAILURE,
            error,
        ),
        {} if error is not None or body is None else body,
    )


def event(name: str, target: str, body: dict[str, Any] | None = None) -> Message:
    """An event: type, name and target, never a requestId (S-EVT-0); its
    body ``{}`` unless the event defines one (D-BODY)."""
    return build_message(build_headers(EVENT, name, target), body if body is not None else {})


# --------------------------------------------------------------------------
# The converter.


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {json_type(value)}")
    return value


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {json_type(value)}")
    return value


def json_type(value: object) -> str:
    """How a JSON value is named in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


#: A lone surrogate: a code point no UTF-8 text can hold (D-BAD).
SURROGATE: Final = re.compile("[\ud800-\udfff]")

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


#: The largest integer magnitude that is not "too large" (D-BAD: 2^53).
MAX_INTEGER: Final = 1 << 53
#: How deep a message may nest; the message object is level 1 (D-BAD).
MAX_DEPTH: Final = 32


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so that it can
    be written as UTF-8 (what the client echoes of a malformed message)."""
    return text if text.isascii() else SURROGATE.sub("\ufffd", text)


def unclean(value: object, where: str = "", depth: int = 1, limit: int = MAX_DEPTH) -> str | None:
    """D-BAD: why a decoded JSON value cannot be taken as it is, or None: a
    lone surrogate in a string or a key, an integer beyond 2^53 in
    magnitude, a float that is not finite, nesting deeper than ``limit``
    levels (``value`` itself at level ``depth``). Names the first place."""
    if isinstance(value, str):
        if not value.isascii() and SURROGATE.search(value):
            return f"a lone surrogate in {where or 'a string'}"
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return (
            f"the number at {where or 'top level'} is too large (beyond 2^53)"
            if abs(value) > MAX_INTEGER
            else None
        )
    if isinstance(value, float):
        return None if math.isfinite(value) else f"the number at {where or 'top level'} is not finite"
    if isinstance(value, dict | list):
        if depth > limit:
            return f"{where or 'the value'} nests deeper than {limit} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and not key.isascii() and SURROGATE.search(key):
                return f"a lone surrogate in a key of {where or 'the message'}"
            found = unclean(item, f"{where}.{key}" if where else str(key), depth + 1, limit)
            if found is not None:
                return found
    return None


def writable(value: Any) -> Any:
    """A copy of a decoded JSON value that can be written as UTF-8 JSON: lone
    surrogates become U+FFFD, numbers too large or not finite become null
    (what a trace records of input that :func:`unclean` names)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_INTEGER else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(str(k)): writable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [writable(v) for v in value]
    return None


def copy_data(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of interaction data (strings and nested objects, S-INIT-1), so
    that no output shares a dict with the live model."""
    return {k: copy_data(v) if isinstance(v, dict) else v for k, v in data.items()}


#: How deep interaction data nests; the data object is level 1 (D-DATA).
MAX_DATA_DEPTH: Final = 8


def plain_data(value: object, depth: int = 1) -> bool:
    """Interaction data as D-DATA wants it, in ASCII: an object of strings
    and objects of the same kind, at most :data:`MAX_DATA_DEPTH` deep."""
    if type(value) is not dict or depth > MAX_DATA_DEPTH:
        return False
    for key, item in value.items():
        if type(item) is str:
            if not (item.isascii() and key.isascii()):
                return False
        elif not plain_data(item, depth + 1) or not key.isascii():
            return False
    return True


def trim_data(value: dict[str, Any], where: str = "data", depth: int = 1) -> tuple[dict[str, Any], list[str]]:
    """D-DATA: a copy of interaction data without what breaks it (a value
    that is neither a string nor an object, an object nested deeper than
    :data:`MAX_DATA_DEPTH` levels, a lone surrogate), and the keys dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, item in value.items():
        path = f"{where}.{key}"
        if unclean(key) is not None or (isinstance(item, str) and unclean(item) is not None):
            dropped.append(clean_text(path))
        elif isinstance(item, str):
            kept[key] = item
        elif isinstance(item, dict) and depth < MAX_DATA_DEPTH:
            kept[key], deeper = trim_data(item, path, depth + 1)
            dropped += deeper
        else:
            dropped.append(clean_text(path))
    return kept, dropped


def count_keys(data: dict[str, Any]) -> int:
    """The keys of interaction data at every level (D-DATA, D-BOUND)."""
    count = len(data)
    for item in data.values():
        if isinstance(item, dict):
            count += count_keys(item)
    return count


def bound_data(data: dict[str, Any], budget: int, where: str = "data") -> tuple[dict[str, Any], list[str]]:
    """D-DATA: a copy of interaction data holding at most ``budget`` keys at
    every level, kept in their order (a nested object counts its own key
    first), and the paths of the keys dropped."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    left = budget

    def walk(source: dict[str, Any], into: dict[str, Any], path: str) -> None:
        nonlocal left
        for key, item in source.items():
            here = f"{path}.{key}"
            if left <= 0:
                dropped.append(here)
                continue
            left -= 1
            if isinstance(item, dict):
                into[key] = {}
                walk(item, into[key], here)
            else:
                into[key] = item

    walk(data, kept, where)
    return kept, dropped


def check_data(value: object, where: str) -> None:
    """Raise TypeError naming the first value that is not a string or an
    object of strings (S-INIT-1)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {json_type(value)} @ {where}")
    for key, item in value.items():
        if not isinstance(key, str):  # pragma: no cover - JSON keys are strings
            raise TypeError(f"keys must be strings @ {where}")
        if isinstance(item, dict):
            check_data(item, f"{where}.{key}")
        elif not isinstance(item, str):
            raise TypeError(f"data values must be strings or objects, got {json_type(item)} @ {where}.{key}")


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(
        Headers,
        make_dict_structure_fn(
            Headers,
            conv,
            _cattrs_forbid_extra_keys=True,
            request_id=override(rename="requestId"),
            error_message=override(rename="errorMessage"),
        ),
    )
    conv.register_unstructure_hook(Headers, unstructure_headers)
    return conv


def unstructure_headers(headers: Headers) -> dict[str, str]:
    """The converter's unstructure hook for headers: wire names, and the
    optional headers only when set. Written out rather than generated
    (cattrs' ``make_dict_unstructure_fn`` with ``omit_if_default`` makes the
    same dict, field for field, at about twice the cost; every output is
    unstructured through it)."""
    out = {"type": headers.type, "name": headers.name, "target": headers.target}
    if headers.request_id is not None:
        out["requestId"] = headers.request_id
    if headers.result is not None:
        out["result"] = headers.result
    if headers.error_message is not None:
        out["errorMessage"] = headers.error_message
    return out


#: The project's one converter (design.md: "structured and unstructured by one
#: cattrs converter").
converter: Final = _build_converter()


def wire_name(field: attrs.Attribute[Any]) -> str:
    """The body key of a properties field: its ``wire`` metadata, else its name."""
    name: str = field.metadata.get(WIRE, field.name)
    return name


def register_wire_names(cls: type[Any]) -> None:
    """Structure ``cls`` from its wire names (fields with ``wire`` metadata,
    ``end-point``), strictly, as the converter does every class (D-BAD)."""
    renames: dict[str, Any] = {
        f.name: override(rename=wire_name(f)) for f in attrs.fields(cls) if WIRE in f.metadata
    }
    converter.register_structure_hook(
        cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True, **renames)
    )


def _format(exc: BaseException, _: object) -> str:
    if isinstance(exc, KeyError):
        return "is missing"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key {', '.join(sorted(exc.extra_fields))}"
    return str(exc) or type(exc).__name__


def describe_error(exc: BaseException, where: str = "") -> str:
    """Turn a cattrs structuring error into one precise sentence with the
    wire names of the fields, e.g. ``body.destination: expected a string,
    got the number 5`` (D-BAD); ``where`` is the path of the value that was
    structured."""
    if not isinstance(exc, cattrs.BaseValidationError):
        return f"{where}: {exc}" if where else str(exc)
    parts = []
    for line in cattrs.transform_error(exc, format_exception=_format):
        text, _, path = line.rpartition(" @ ")
        path = path.removeprefix("$").removeprefix(".")
        for py_name, wire in _WIRE_NAMES.items():
            path = path.replace(py_name, wire)
        path = ".".join(p for p in (where, path) if p)
        parts.append(f"{path}: {text}" if path else text)
    return "; ".join(parts)


def structure(value: object, cls: type[Any], where: str, *, context: str = "") -> Any:
    """Structure ``value`` into ``cls`` or raise a D-BAD error that names
    each defect with its path from ``where`` ("header", "body", ...), e.g.
    ``body.destination: is missing`` or ``header.requestId: expected a
    string, got the number 5``; ``context`` introduces them (``malformed
    switch event held: call: ...``)."""
    try:
        return converter.structure(value, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, AttributeError, KeyError) as exc:
        text = describe_error(exc, where)
        raise RemoteProtocolError(f"malformed {context}: {text}" if context else text, "D-BAD") from exc


#: The converter's hook for headers, looked up once.
_unstructure_headers: Final = converter.get_unstructure_hook(Headers)


def to_wire(message: Message) -> dict[str, Any]:
    """The JSON-ready dict of a message, ``{"header": ..., "body": ...}``
    (F-ENV); the body is always written, ``{}`` when empty (D-ENV)."""
    return {"header": _unstructure_headers(message.header), "body": message.body}


def wire_bytes(message: Message) -> bytes:
    """``dumps(to_wire(message))`` as UTF-8 bytes: what an adapter sends.
    What the client writes holds no float (strings, objects, arrays,
    booleans and null), so the float checks of the codec are skipped."""
    return dumpb({"header": _unstructure_headers(message.header), "body": message.body}, floats=False)

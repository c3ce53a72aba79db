"""The one-pass reader of well-formed messages: speed work, fenced.

Nearly every message the bridge sends is a well-formed query or request:
a header of exactly ``type``, ``name``, ``target`` and ``requestId``, all
strings, and a body of exactly the keys its catalog entry takes, as
strings. :func:`read_quickly` and :func:`read_valid` read such a message in
one pass and return what the general reader (``fsm.intake``) returns for
it; for anything else they return None and the general reader reads it and
reports every defect (D-BAD, D-ENV). What they leave out: every message
with another shape, every check that names a defect, and any text that
orjson and json might read differently (``fsm.codec.loads_plain``).
tests/test_envelope.py checks, on generated messages, that they give the
general reader's answer or decline.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from fsm.catalog import CATALOG, NO_PROPERTIES, PROPERTY_KEYS, FreeProperties, NoProperties, Valid
from fsm.codec import loads_plain
from fsm.frozen import builder
from fsm.messages import MAX_REQUEST_ID, SURROGATE, build_headers, plain_data
from fsm.switch_events import EVENT_FIELDS, SwitchEvent

#: ``Valid(...)`` without the named tuple's own ``__new__`` (a Python function)
_new_tuple: Final = tuple.__new__
#: The keys of the envelope (F-ENV).
_ENVELOPE_KEYS: Final = frozenset({"header", "body"})
#: message name -> a quick constructor of its attrs properties class
_PROPERTY_BUILDERS: Final = {
    spec.name: builder(spec.properties)
    for spec in CATALOG.values()
    if attrs.has(spec.properties)
    and spec.properties is not NoProperties
    and all(  # required strings under their own names; others go to the general reader
        f.type in (str, "str") and f.default is attrs.NOTHING and not f.metadata
        for f in attrs.fields(spec.properties)
    )
}


def read_quickly(text: bytes | str) -> Valid | None:
    """The message as orjson reads it, when that is a valid message; None
    for anything else, which is then read again with json so that every
    defect is reported as json sees it. A valid message holds only strings,
    objects and null, where orjson and json read the same text alike (see
    ``fsm.codec``)."""
    value = loads_plain(text)
    return read_valid(value, True) if type(value) is dict else None


def read_valid(raw: dict[str, Any], owned: bool) -> Valid | None:
    """The common case in one pass: a query or request whose header is
    exactly type, name, target and requestId, every one a string, and whose
    body holds exactly the keys its spec takes, as strings. Returns what
    the general reader (``fsm.intake``) returns for such a message, or None
    for anything else, which the general reader then reads and reports on
    (D-BAD).
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
            props = NO_PROPERTIES
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
            if body.keys() != PROPERTY_KEYS[name] or name not in _PROPERTY_BUILDERS:
                return None
            for value in body.values():
                if type(value) is not str:
                    return None
            props = _PROPERTY_BUILDERS[name](**body)
    valid: Valid = _new_tuple(Valid, (build_headers(kind, name, target, request_id), spec, body, props))
    return valid


# --------------------------------------------------------------------------
# Switch events.

_build_event: Final = builder(SwitchEvent)
#: kind -> (required fields, every field it may carry)
_SHAPES: Final = {
    kind: (required, frozenset({"kind", *required, *optional}))
    for kind, (required, optional) in EVENT_FIELDS.items()
}
#: the kinds whose one required field is ``call``
_CALL_KINDS: Final = frozenset(kind for kind, (required, _) in EVENT_FIELDS.items() if required == ("call",))


def read_plain_event(raw: dict[str, Any]) -> SwitchEvent | None:
    """The common case in one pass: an event of a known kind with its
    required fields, no others, and every field of its type. Returns what
    the general reader (``fsm.intake``) returns for it; None for anything
    else, which the general reader then reports on (D-BAD)."""
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
        elif key == "ok" or key == "up":
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

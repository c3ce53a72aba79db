"""JSON in and out: orjson where it gives the standard json module's answer, json where not.

orjson decodes and encodes several times faster than the standard library,
but does not answer the same in a few places; there the standard module is
used, so that every message, error and trace line is what ``json`` makes:

- decoding: orjson refuses ``NaN``, ``Infinity`` and lone surrogates (json
  accepts them), its error messages differ (D-BAD quotes json's), it reads
  an integer beyond 64 bits as a float, and it nests deeper than json.
  :func:`loads` hands anything orjson refuses to json, and so does any text
  with a run of 19 digits or enough brackets to nest deeply.
- encoding: orjson writes NaN and the infinities as ``null`` and floats
  below 1e-4 without an exponent (``0.00001`` for json's ``1e-05``), and it
  refuses integers beyond 64 bits, keys that are not strings, lone
  surrogates and deep nesting. :func:`dumps` re-encodes with json whenever
  orjson refuses or its output holds ``e-``, ``.0000`` or ``null``, the only
  places where a float can differ.

:func:`dumps_floatless` and :func:`dumpb_floatless` skip the float test, for values that hold no
float by construction (the engine's messages and commands).
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

#: The decoder and encoder this module uses first, for reports.
LIBRARY: Final = f"orjson {orjson.__version__}"

_encoder: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_json_dumps: Final = _encoder.encode
_orjson_dumps: Final = orjson.dumps
_orjson_loads: Final = orjson.loads
_OrjsonDecodeError: Final = orjson.JSONDecodeError

#: bytes -> b"0" for a digit, b" " for anything else: a run of 19 digits
#: (an integer orjson may read as a float) is then one substring search.
_DIGITS: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_NUMBER: Final = b"0" * 19
#: Texts longer than this are searched for nesting brackets.
_SHORT: Final = 256
#: Texts with more opening brackets than this are decoded by json, whose
#: recursion limit decides how deep is too deep.
_BRACKETS: Final = 96


def loads(text: str | bytes) -> Any:
    """What ``json.loads(text)`` returns or raises (JSONDecodeError,
    RecursionError; for bytes, UnicodeDecodeError as json raises it)."""
    if len(text) > _SHORT and _brackets(text) > _BRACKETS:
        return json.loads(text)
    try:
        value = _orjson_loads(text)
    except _OrjsonDecodeError:
        return json.loads(text)
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if _LONG_NUMBER in raw.translate(_DIGITS):
        return json.loads(text)
    return value


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def dumps(value: object) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``:
    compact, one line, keys in insertion order."""
    try:
        out = _orjson_dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _json_dumps(value)
    if b"e-" in out or b".0000" in out or b"null" in out:
        return _json_dumps(value)
    return out.decode("utf-8")


def dumpb(value: object) -> bytes:
    """``dumps(value)`` encoded as UTF-8."""
    try:
        out = _orjson_dumps(value)
    except TypeError:
        return _json_dumps(value).encode("utf-8")
    if b"e-" in out or b".0000" in out or b"null" in out:
        return _json_dumps(value).encode("utf-8")
    return out


def dumps_floatless(value: object) -> str:
    """``dumps(value)`` for a value that holds no float (see :func:`dumpb_floatless`)."""
    try:
        return _orjson_dumps(value).decode("utf-8")
    except TypeError:
        return _json_dumps(value)


def dumpb_floatless(value: object) -> bytes:
    """``dumpb(value)`` for a value that holds no float: strings, integers,
    booleans, None, lists and dicts of them. For those orjson writes what
    json writes, or refuses and json writes it."""
    try:
        return _orjson_dumps(value)
    except TypeError:
        return _json_dumps(value).encode("utf-8")

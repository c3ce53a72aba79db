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

No other module imports a JSON library: every caller reads with
:func:`loads` and writes with :func:`dumps` (text) or :func:`dumpb` (UTF-8
bytes), the same encoder.
"""

from __future__ import annotations

import json
from typing import Any, Final, NoReturn

import orjson

#: The decoder and encoder this module uses first, for reports.
LIBRARY: Final = f"orjson {orjson.__version__}"

_json_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_strict_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ascii_dumps: Final = json.JSONEncoder(separators=(",", ":")).encode
_display_dumps: Final = json.JSONEncoder().encode
#: What :func:`loads` raises for text that is not JSON (json's own class).
JSONDecodeError: Final = json.JSONDecodeError
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


def loads(text: str | bytes, *, strict: bool = False) -> Any:
    """What ``json.loads(text)`` returns or raises (JSONDecodeError,
    RecursionError; for bytes, UnicodeDecodeError as json raises it).
    ``strict``: ``NaN`` and the infinities are refused too (a ValueError
    saying so), for what must be standard JSON (D-WIRE)."""
    if len(text) > _SHORT and _brackets(text) > _BRACKETS:
        return _json_loads(text, strict)
    try:
        value = _orjson_loads(text)
    except _OrjsonDecodeError:
        return _json_loads(text, strict)
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if _LONG_NUMBER in raw.translate(_DIGITS):
        return _json_loads(text, strict)
    return value  # orjson refuses NaN and the infinities: none is here


def loads_plain(text: str | bytes) -> Any:
    """What orjson reads of ``text``, or None where it refuses. Only for a
    reader that accepts nothing but objects, strings and null of a few
    levels (the one-pass reader of well-formed messages, ``fsm.fastread``),
    where orjson and json read the same text alike; anything it declines
    goes to :func:`loads`."""
    try:
        return _orjson_loads(text)
    except _OrjsonDecodeError:
        return None


def _json_loads(text: str | bytes, strict: bool) -> Any:
    return json.loads(text, parse_constant=_refuse_constant) if strict else json.loads(text)


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _brackets(text: str | bytes) -> int:
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def dumps(
    value: object, *, strict: bool = False, ascii: bool = False, display: bool = False, floats: bool = True
) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``:
    compact, one line, keys in insertion order. ``strict``: NaN and the
    infinities are refused (ValueError, as json's ``allow_nan=False``), for
    what must be standard JSON (a frame's contents, D-WIRE). ``ascii``:
    every non-ASCII character escaped (json's default), for a carrier that
    takes ASCII only (a SIP header). ``display``: what ``json.dumps(value)``
    writes by default (ASCII, a space after each separator), for a person to
    read (``telephony-fsm show``, the demo's screen). ``floats=False``: the
    caller's promise that ``value`` holds no float (the engine's messages
    and commands hold strings only), which spares the search of orjson's
    output for the places where a float may differ (about a microsecond for
    a message of 200 bytes)."""
    if display:
        return _display_dumps(value)
    if ascii:
        return _ascii_dumps(value)
    try:
        out = _orjson_dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _strict_dumps(value) if strict else _json_dumps(value)
    if floats and (b"e-" in out or b".0000" in out or b"null" in out):
        return _strict_dumps(value) if strict else _json_dumps(value)
    return out.decode("utf-8")


def dumpb(value: object, *, strict: bool = False, floats: bool = True) -> bytes:
    """``dumps(value, strict=strict, floats=floats)`` encoded as UTF-8 (a
    lone surrogate raises UnicodeEncodeError)."""
    try:
        out = _orjson_dumps(value)
    except TypeError:
        return (_strict_dumps(value) if strict else _json_dumps(value)).encode("utf-8")
    if floats and (b"e-" in out or b".0000" in out or b"null" in out):
        return (_strict_dumps(value) if strict else _json_dumps(value)).encode("utf-8")
    return out

"""``fsm.codec``: orjson where it answers as the standard json module, json where not.

Every trace line, response and D-BAD text the project writes is defined as
what ``json`` makes (compact separators, ``ensure_ascii=False``); the codec
must give exactly that, byte for byte, and decode exactly as ``json.loads``
does, raising what it raises. Hypothesis generates the values and texts,
with the places where orjson differs weighted in: floats of every
magnitude, NaN and the infinities, integers beyond 64 bits, lone
surrogates, keys that are not strings, deep nesting.

Assertions are written ``expected == actual``.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm import codec


def _json_dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types throughout (1 is not 1.0; NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b  # type: ignore[arg-type]
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# Values where orjson and json could disagree, beside ordinary ones.
_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.sampled_from([1e-05, 0.0001, 1e16, 1e17, 123456789012345678.0, -0.0, 5e-324, 1.7976931348623157e308]),
)
_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 4, max_value=2**64 + 4),
    st.integers(min_value=-(2**64) - 4, max_value=-(2**63) + 4),
    st.integers(min_value=10**18, max_value=10**40),
)
_text = st.one_of(st.text(), st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)))
_scalars = st.one_of(st.none(), st.booleans(), _ints, _floats, _text)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=400)
@given(_values)
def test_dumps_writes_what_json_writes(value: Any) -> None:
    assert _json_dumps(value) == codec.dumps(value)


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@given(_values)
def test_dumpb_of_a_surrogate_free_value_is_utf8_of_dumps(value: Any) -> None:
    text = _json_dumps(value)
    if _has_surrogate(text):
        with pytest.raises(UnicodeEncodeError):
            codec.dumpb(value)
    else:
        assert text.encode("utf-8") == codec.dumpb(value)


@given(_values)
def test_strict_dumps_writes_what_json_writes_without_nan(value: Any) -> None:
    """D-WIRE: strict refuses NaN and the infinities as json's allow_nan=False does."""
    strict = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    expected, actual = _outcome(strict, value), _outcome(lambda v: codec.dumps(v, strict=True), value)
    assert expected == actual
    if expected[0] == "value" and not _has_surrogate(expected[1]):
        assert expected[1].encode("utf-8") == codec.dumpb(value, strict=True)


@given(_values)
def test_ascii_and_display_dumps_write_what_json_writes(value: Any) -> None:
    assert json.dumps(value, separators=(",", ":")) == codec.dumps(value, ascii=True)
    assert json.dumps(value) == codec.dumps(value, display=True)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_strict_loads_refuses_nan_and_the_infinities(text: str) -> None:
    assert isinstance(codec.loads(text), (float, list, dict))
    with pytest.raises(ValueError, match="is not a JSON value"):
        codec.loads(text, strict=True)


_floatless = st.recursive(
    st.one_of(st.none(), st.booleans(), _ints, st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)),
    max_leaves=12,
)


@given(_floatless)
def test_the_float_free_promise_writes_what_json_writes(value: Any) -> None:
    """dumps(floats=False): for a value without a float, what json writes."""
    expected = _json_dumps(value)
    assert expected == codec.dumps(value, floats=False)
    if not _has_surrogate(expected):
        assert expected.encode("utf-8") == codec.dumpb(value, floats=False)


_plain = st.recursive(
    st.one_of(st.none(), st.text()),
    lambda inner: st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_plain)
def test_loads_plain_reads_what_loads_reads_or_declines(value: Any) -> None:
    """The one-pass reader's decoder, on what that reader accepts (objects,
    strings, null): the value loads reads, or None."""
    text = _json_dumps(value)
    plain = codec.loads_plain(text)
    if plain is not None:
        assert _same(codec.loads(text), plain)


@pytest.mark.parametrize(
    "value",
    [
        {1: "a"},  # a key that is not a string: json writes "1", orjson refuses
        {"n": 2**70},
        [float("nan"), float("inf"), -float("inf")],
        {"x": 1e-05, "y": 0.00001234, "z": 1.0},
        "\ud800",
        [[[[[[[[]]]]]]]],
    ],
)
def test_the_known_differences_are_written_as_json_writes_them(value: object) -> None:
    assert _json_dumps(value) == codec.dumps(value)


def test_deep_nesting_is_written_as_json_writes_it() -> None:
    value: Any = "x"
    for _ in range(300):  # deeper than orjson's limit (254), within json's recursion limit
        value = [value]
    assert _json_dumps(value) == codec.dumps(value)


def _outcome(load: Any, text: str | bytes) -> tuple[str, Any]:
    try:
        return "value", load(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return type(exc).__name__, str(exc)


def _check_loads(text: str | bytes) -> None:
    expected, actual = _outcome(json.loads, text), _outcome(codec.loads, text)
    assert expected[0] == actual[0]
    if expected[0] == "value":
        assert _same(expected[1], actual[1]), (expected[1], actual[1])
    else:
        assert expected == actual


@settings(max_examples=400)
@given(_values)
def test_loads_reads_what_json_reads(value: Any) -> None:
    text = _json_dumps(value)
    _check_loads(text)
    _check_loads(json.dumps(value))  # ascii escapes, spaces after separators
    if not _has_surrogate(text):
        _check_loads(text.encode("utf-8"))


@settings(max_examples=400)
@given(st.one_of(st.text(), st.binary(), st.text(alphabet='[]{}",:0123456789.eE+-tnrufalsNIiy \\')))
def test_loads_fails_as_json_fails(text: str | bytes) -> None:
    _check_loads(text)


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[Infinity, -Infinity]",
        '"\\ud800"',
        "12345678901234567890",  # beyond 64 bits: orjson reads a float
        "-9223372036854775809",
        "1234567890123456789",  # 19 digits, within 64 bits
        "1e400",
        "[" * 100000 + "]" * 100000,  # json: RecursionError
        b"\xff",  # not UTF-8
        '{"a": 1, "a": 2}',  # the last duplicate key wins, in both
        "",
        " ",
        "[1,]",
    ],
)
def test_loads_at_the_known_differences(text: str | bytes) -> None:
    _check_loads(text)


def test_the_library_used_first_is_named() -> None:
    assert codec.LIBRARY.startswith("orjson ")


def test_no_other_module_picks_a_json_library() -> None:
    """All JSON in and out goes through fsm.codec (design.md)."""
    root = Path(__file__).resolve().parent.parent
    importers = []
    for path in sorted([*root.glob("fsm/**/*.py"), *root.glob("adapters/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.partition(".")[0] in ("json", "orjson") for n in names):
                importers.append(str(path.relative_to(root)))
    assert ["fsm/codec.py"] == sorted(set(importers))

"""Tests of the frame codec of the TCP transport (rules F-WIRE and D-WIRE).

F-WIRE: a frame is a 4-byte unsigned length, then that many bytes of UTF-8
JSON; nothing else. D-WIRE: big-endian by default, little-endian by option;
the length counts the contents only; a maximum enforced from the length
alone; contents that are not UTF-8, not JSON or not a JSON object are a broken
stream; a stream ending inside a frame is truncated. Every error names the
frame's offset in the stream and the defect.

Assertions are written ``expected == actual``; expected values that are
literals are bound to a name first.
"""

from __future__ import annotations

import doctest
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adapters.framing
from adapters.framing import (
    BYTE_ORDERS,
    DEFAULT_MAX_FRAME_SIZE,
    LENGTH_SIZE,
    BadContents,
    ByteOrder,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    FramingError,
    TruncatedFrame,
    decode_json,
    encode_frame,
    encode_json,
)
from fsm.errors import LocalProtocolError, RemoteProtocolError

deterministic = settings(derandomize=True, database=None, deadline=None, max_examples=100)
byte_orders = pytest.mark.parametrize("byte_order", BYTE_ORDERS)

# Messages in the envelope of F-ENV; the codec itself takes any JSON object.
EVENT: dict[str, Any] = {
    "header": {"type": "cti.event", "name": "channel.ready", "target": "s1.g1.c1"},
    "body": {},
}
RESPONSE: dict[str, Any] = {
    "header": {
        "type": "cti.response",
        "name": "interaction.query.init",
        "target": "s1.g1.c1.i1",
        "requestId": "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
        "result": "SUCCESS",
    },
    "body": {"interaction-state": "ALERTING", "interaction-data": {"ani": "caf\u00e9 \u260e"}},
}

# A stream covering the awkward cases: empty contents, contents that look like
# a length field, non-ASCII text, a frame of 256 bytes (a length byte of 1 in
# the middle).
sample_contents = [
    json.dumps(RESPONSE, separators=(",", ":"), ensure_ascii=False).encode(),
    b"",
    b"\x00\x00\x00\x05hello",
    "caf\u00e9 \u260e".encode(),
    b"x" * 256,
    b"{}",
]


def frame_of(contents: bytes, byte_order: ByteOrder = "big") -> bytes:
    """The frame, written out by hand (not by the code under test)."""
    return len(contents).to_bytes(4, byte_order) + contents


def stream_of(contents: list[bytes], byte_order: ByteOrder = "big") -> bytes:
    return b"".join(frame_of(c, byte_order) for c in contents)


def framed(contents: list[bytes]) -> list[Frame]:
    """The frames a decoder returns for ``stream_of(contents)``, offsets included."""
    offsets = itertools.accumulate((LENGTH_SIZE + len(c) for c in contents), initial=0)
    return [Frame(offset, c) for offset, c in zip(offsets, contents, strict=False)]


def assert_d_wire_error(expected_message: str, error: ProtocolErrorLike) -> None:
    expected = (expected_message, "D-WIRE")
    assert expected == (error.message, error.rule)


ProtocolErrorLike = LocalProtocolError | RemoteProtocolError


# --- the frame (F-WIRE) -------------------------------------------------------


def test_constants_match_d_wire() -> None:
    expected = (4, 1048576, ("big", "little"), "D-WIRE")
    assert expected == (LENGTH_SIZE, DEFAULT_MAX_FRAME_SIZE, BYTE_ORDERS, adapters.framing.RULE)


@pytest.mark.parametrize(
    ("byte_order", "expected", "contents"),
    [
        # F-WIRE: a 4-byte unsigned length of the contents only, then the contents; nothing else.
        ("big", b"\x00\x00\x01\x02" + b"a" * 258, b"a" * 258),
        ("little", b"\x02\x01\x00\x00" + b"a" * 258, b"a" * 258),
        ("big", b"\x00\x00\x00\x00", b""),
        ("little", b"\x00\x00\x00\x00", b""),
        ("big", b"\x00\x00\x00\x02{}", b"{}"),
    ],
)
def test_f_wire_frame_layout(byte_order: ByteOrder, expected: bytes, contents: bytes) -> None:
    assert expected == encode_frame(contents, byte_order=byte_order)


def test_d_wire_big_endian_is_the_default() -> None:
    expected = b"\x00\x01\x00\x00" + b"z" * 65536
    assert expected == encode_frame(b"z" * 65536)
    assert [Frame(0, b"z" * 65536)] == FrameDecoder().feed(expected)


def test_the_module_docstring_example_is_true() -> None:
    """D-WIRE: the byte-level example in adapters/framing.py's docstring runs."""
    results = doctest.testmod(adapters.framing)
    expected_failures = 0
    assert (expected_failures, True) == (results.failed, results.attempted >= 3)
    example = json.dumps(EVENT, separators=(",", ":")).encode()
    expected = b"\x00\x00\x00\x54" + example
    assert expected == encode_json(EVENT)
    assert f"(84 bytes of contents) is the 4 bytes ``00 00 00 {len(example):02x}``" in str(
        adapters.framing.__doc__
    )


@pytest.mark.parametrize("byte_order", ["network", "BIG", "", None, 0])
def test_d_wire_byte_order_other_than_big_or_little_is_refused(byte_order: Any) -> None:
    for make in (
        lambda: encode_frame(b"x", byte_order=byte_order),
        lambda: encode_json({}, byte_order=byte_order),
        lambda: FrameDecoder(byte_order=byte_order),
    ):
        with pytest.raises(LocalProtocolError) as excinfo:
            make()
        assert_d_wire_error(f"the byte order must be 'big' or 'little', not {byte_order!r}", excinfo.value)


def test_encode_frame_too_large_is_a_local_error() -> None:
    """D-WIRE: we never write a frame the peer would refuse."""
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_frame(b"x" * (DEFAULT_MAX_FRAME_SIZE + 1))
    assert_d_wire_error(
        "a frame of 1048577 bytes exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )
    assert not isinstance(excinfo.value, RemoteProtocolError)
    expected = frame_of(b"x" * DEFAULT_MAX_FRAME_SIZE)
    assert expected == encode_frame(b"x" * DEFAULT_MAX_FRAME_SIZE)


def test_encode_frame_respects_a_custom_maximum() -> None:
    expected = b"\x00\x00\x00\x0a0123456789"
    assert expected == encode_frame(b"0123456789", max_frame_size=10)
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_frame(b"0123456789a", max_frame_size=10)
    assert_d_wire_error("a frame of 11 bytes exceeds the maximum frame size of 10 bytes", excinfo.value)


@pytest.mark.parametrize(
    ("maximum", "defect"),
    [(-1, "must not be negative (got -1)"), (1.5, "must be an int, not float"), (True, "must be an int")],
)
def test_bad_maximum_is_refused(maximum: Any, defect: str) -> None:
    for make in (lambda: encode_frame(b"x", max_frame_size=maximum), lambda: FrameDecoder(maximum)):
        with pytest.raises(LocalProtocolError) as excinfo:
            make()
        assert defect in excinfo.value.message


def test_encode_json_is_compact_utf8() -> None:
    expected = frame_of('{"header":{"a":"caf\u00e9"},"body":{"n":[1,2]}}'.encode())
    assert expected == encode_json({"header": {"a": "caf\u00e9"}, "body": {"n": [1, 2]}})
    expected_little = frame_of(b'{"header":{},"body":{}}', "little")
    assert expected_little == encode_json({"header": {}, "body": {}}, byte_order="little")


def test_encode_json_respects_the_maximum() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_json({"k": "v"}, max_frame_size=8)  # '{"k":"v"}' is 9 bytes
    assert_d_wire_error("a frame of 9 bytes exceeds the maximum frame size of 8 bytes", excinfo.value)


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("message", "defect"),
    [
        ({"body": {"x": {1, 2}}}, "not JSON serializable"),
        ({"body": {"x": float("nan")}}, "Out of range float values are not JSON compliant"),
        ({"body": {"x": float("inf")}}, "Out of range float values are not JSON compliant"),
        ({"body": {"x": "\ud800"}}, "surrogates not allowed"),
        ({"\udfff": 1}, "surrogates not allowed"),
        (_deep(100_000), "nested too deeply"),
    ],
)
def test_encode_json_writes_valid_utf8_json_only(message: Any, defect: str) -> None:
    """D-WIRE: the contents are UTF-8 JSON: NaN, infinities and lone surrogates are refused."""
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_json(message)
    text = excinfo.value.message
    assert text.startswith("cannot encode the message as UTF-8 JSON: "), text
    assert defect in text, text


@pytest.mark.parametrize("message", [[1, 2], "text", 3, None])
def test_encode_json_refuses_what_is_not_an_object(message: Any) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_json(message)
    assert_d_wire_error(f"a message must be a JSON object, not {type(message).__name__}", excinfo.value)


# --- error classes ------------------------------------------------------------


@pytest.mark.parametrize("cls", [FrameTooLarge, TruncatedFrame, BadContents])
def test_error_tree(cls: type[FramingError]) -> None:
    error = cls(123, "something broke")
    assert isinstance(error, FramingError)
    assert isinstance(error, RemoteProtocolError)
    assert_d_wire_error("frame at offset 123: something broke", error)
    expected = (123, "something broke", "frame at offset 123: something broke (D-WIRE)")
    assert expected == (error.offset, error.defect, str(error))


# --- decoding -----------------------------------------------------------------


@deterministic
@given(contents=st.binary(max_size=2000), byte_order=st.sampled_from(BYTE_ORDERS))
def test_round_trip_of_arbitrary_contents(contents: bytes, byte_order: ByteOrder) -> None:
    """F-WIRE: any contents (the length, not a marker, delimits them) come back as they went."""
    decoder = FrameDecoder(byte_order=byte_order)
    expected = ([Frame(0, contents)], 0, LENGTH_SIZE + len(contents))
    actual = decoder.feed(encode_frame(contents, byte_order=byte_order))
    assert expected == (actual, decoder.buffered, decoder.offset)
    decoder.end_of_stream()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@deterministic
@given(message=st.dictionaries(st.text(), json_values, max_size=5), byte_order=st.sampled_from(BYTE_ORDERS))
def test_round_trip_of_arbitrary_json_objects(message: dict[str, Any], byte_order: ByteOrder) -> None:
    frames = FrameDecoder(byte_order=byte_order).feed(encode_json(message, byte_order=byte_order))
    assert [message] == [decode_json(frame) for frame in frames]


@deterministic
@given(
    contents=st.lists(st.binary(max_size=40), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    byte_order=st.sampled_from(BYTE_ORDERS),
)
def test_round_trip_in_arbitrary_chunks(
    contents: list[bytes], cuts: list[int], byte_order: ByteOrder
) -> None:
    stream = stream_of(contents, byte_order)
    points = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    decoder = FrameDecoder(byte_order=byte_order)
    decoded: list[Frame] = []
    for start, stop in itertools.pairwise(points):
        decoded += decoder.feed(stream[start:stop])
    assert (framed(contents), 0) == (decoded, decoder.buffered)
    decoder.end_of_stream()


@byte_orders
def test_stream_split_in_two_at_every_point(byte_order: ByteOrder) -> None:
    """F-WIRE/D-WIRE: a stream of several frames cut anywhere decodes the same."""
    stream = stream_of(sample_contents, byte_order)
    expected = framed(sample_contents)
    for split in range(len(stream) + 1):
        decoder = FrameDecoder(byte_order=byte_order)
        decoded = decoder.feed(stream[:split])
        # The bytes of the incomplete frame, and only those, are held.
        assert split == decoder.offset + decoder.buffered, split
        decoded += decoder.feed(stream[split:])
        assert (expected, 0) == (decoded, decoder.buffered), split
        decoder.end_of_stream()


@byte_orders
def test_stream_fed_byte_by_byte(byte_order: ByteOrder) -> None:
    stream = stream_of(sample_contents, byte_order)
    decoder = FrameDecoder(byte_order=byte_order)
    decoded: list[Frame] = []
    completed_at: list[int] = []
    for position in range(len(stream)):
        new = decoder.feed(stream[position : position + 1])
        decoded += new
        completed_at += [position + 1] * len(new)
    assert framed(sample_contents) == decoded
    # Each frame is returned by the feed that delivers its last byte, not later.
    expected_ends = list(itertools.accumulate(LENGTH_SIZE + len(c) for c in sample_contents))
    assert expected_ends == completed_at
    decoder.end_of_stream()


def test_d_wire_the_byte_order_is_not_guessed() -> None:
    """D-WIRE: a little-endian length read as big-endian is another length."""
    little = frame_of(b"abc", "little")  # 03 00 00 00 "abc"
    with pytest.raises(FrameTooLarge) as excinfo:
        FrameDecoder(byte_order="big").feed(little)
    assert_d_wire_error(
        "frame at offset 0: length 50331648 exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )
    expected = [Frame(0, b"abc")]
    assert expected == FrameDecoder(byte_order="little").feed(little)


def test_many_frames_in_one_feed() -> None:
    contents = [str(i).encode() for i in range(20000)]
    decoder = FrameDecoder()
    assert (framed(contents), 0) == (decoder.feed(stream_of(contents)), decoder.buffered)


def test_complete_frames_and_a_partial_one_in_one_feed() -> None:
    stream = stream_of(sample_contents)
    last = frame_of(b"tail")
    decoder = FrameDecoder()
    assert (framed(sample_contents), 6) == (decoder.feed(stream + last[:6]), decoder.buffered)
    expected = ([Frame(len(stream), b"tail")], 0)
    assert expected == (decoder.feed(last[6:]), decoder.buffered)


def test_empty_feed() -> None:
    decoder = FrameDecoder()
    expected: tuple[list[Frame], list[Frame], list[Frame], int] = ([], [], [], 3)
    actual = (decoder.feed(b""), decoder.feed(b"\x00\x00\x00"), decoder.feed(b""), decoder.buffered)
    assert expected == actual


def test_frame_of_exactly_the_maximum_size() -> None:
    decoder = FrameDecoder(max_frame_size=4)
    expected = [Frame(0, b"abcd")]
    assert expected == decoder.feed(frame_of(b"abcd"))


# --- the maximum, from the length alone (D-WIRE) ------------------------------


@byte_orders
def test_d_wire_length_one_over_the_maximum_refused_from_its_4_bytes_alone(byte_order: ByteOrder) -> None:
    decoder = FrameDecoder(byte_order=byte_order)
    with pytest.raises(FrameTooLarge) as excinfo:
        decoder.feed((DEFAULT_MAX_FRAME_SIZE + 1).to_bytes(4, byte_order))  # no contents ever
    assert_d_wire_error(
        "frame at offset 0: length 1048577 exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )
    expected_buffered = 0
    assert expected_buffered == decoder.buffered


def test_d_wire_length_at_the_maximum_waits_for_its_contents() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    expected: tuple[list[Frame], int] = ([], 4)
    assert expected == (decoder.feed(b"\x00\x00\x00\x0a"), decoder.buffered)


def test_d_wire_oversized_length_after_frames_names_its_offset() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    expected = [Frame(0, b"ok"), Frame(6, b"")]
    assert expected == decoder.feed(frame_of(b"ok") + frame_of(b""))
    with pytest.raises(FrameTooLarge) as excinfo:
        decoder.feed(b"\x00\x00\x00\x0b" + b"x" * 11)
    assert_d_wire_error(
        "frame at offset 10: length 11 exceeds the maximum frame size of 10 bytes", excinfo.value
    )
    assert (10, "length 11 exceeds the maximum frame size of 10 bytes") == (
        excinfo.value.offset,
        excinfo.value.defect,
    )


def test_d_wire_frames_before_an_oversized_length_in_the_same_feed_are_kept() -> None:
    """D-WIRE: the sound frames before the defect are the error's ``frames``; nothing is lost."""
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(FrameTooLarge) as excinfo:
        decoder.feed(frame_of(b"one") + frame_of(b"two") + b"\x00\x00\x01\x00")
    expected = ((Frame(0, b"one"), Frame(7, b"two")), 14)
    assert expected == (excinfo.value.frames, excinfo.value.offset)


def test_d_wire_oversized_length_refused_when_its_bytes_arrive_in_pieces() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    oversized = (11).to_bytes(4, "big")
    expected: list[Frame] = []
    assert expected == decoder.feed(oversized[:1])
    assert expected == decoder.feed(oversized[1:3])
    with pytest.raises(FrameTooLarge):
        decoder.feed(oversized[3:])


def test_d_wire_largest_length_field_refused() -> None:
    with pytest.raises(FrameTooLarge) as excinfo:
        FrameDecoder().feed(b"\xff\xff\xff\xff")
    assert_d_wire_error(
        "frame at offset 0: length 4294967295 exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )


def test_partial_frame_is_bounded() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    wire = frame_of(b"y" * 100)
    no_frames: list[Frame] = []
    for position in range(len(wire) - 1):
        assert (no_frames, position + 1) == (decoder.feed(wire[position : position + 1]), decoder.buffered)
        assert decoder.buffered < LENGTH_SIZE + decoder.max_frame_size
    expected = ([Frame(0, b"y" * 100)], 0)
    assert expected == (decoder.feed(wire[-1:]), decoder.buffered)


# --- the end of the stream ----------------------------------------------------


def test_clean_end_of_stream() -> None:
    FrameDecoder().end_of_stream()
    decoder = FrameDecoder()
    assert framed(sample_contents) == decoder.feed(stream_of(sample_contents))
    decoder.end_of_stream()
    assert decoder.error is None


def test_feed_after_end_of_stream_is_a_local_error() -> None:
    decoder = FrameDecoder()
    decoder.end_of_stream()
    with pytest.raises(LocalProtocolError) as excinfo:
        decoder.feed(frame_of(b"late"))
    expected = "feed() called after end_of_stream()"
    assert expected == excinfo.value.message


@byte_orders
def test_d_wire_truncation_at_every_offset_of_a_frame(byte_order: ByteOrder) -> None:
    """D-WIRE: a stream that ends anywhere inside a frame is truncated, naming
    the frame's offset and how many of its bytes came; at a boundary it is clean."""
    first = frame_of(b"ok", byte_order)  # offset 0
    frame = frame_of(b"abcdef", byte_order)  # offset 6
    for cut in range(len(frame) + 1):
        decoder = FrameDecoder(byte_order=byte_order)
        expected_first = [Frame(0, b"ok")]
        assert expected_first == decoder.feed(first + frame[:cut])[:1]
        if cut in (0, len(frame)):
            decoder.end_of_stream()  # at a frame boundary: a clean end
            continue
        with pytest.raises(TruncatedFrame) as excinfo:
            decoder.end_of_stream()
        if cut < LENGTH_SIZE:
            defect = f"truncated: the stream ended after {cut} of its 4 length bytes"
        else:
            defect = f"truncated: the stream ended after {cut - LENGTH_SIZE} of its 6 bytes of contents"
        assert_d_wire_error(f"frame at offset 6: {defect}", excinfo.value)


def test_decoder_stays_broken_after_frame_too_large() -> None:
    decoder = FrameDecoder(max_frame_size=1)
    with pytest.raises(FrameTooLarge) as first:
        decoder.feed(b"\x00\x00\x00\x02")
    assert first.value is decoder.error
    for _ in range(2):
        with pytest.raises(FrameTooLarge) as again:
            decoder.feed(frame_of(b"k"))
        assert first.value is again.value
    with pytest.raises(FrameTooLarge) as at_end:
        decoder.end_of_stream()
    assert first.value is at_end.value
    expected_buffered = 0
    assert expected_buffered == decoder.buffered


def test_decoder_stays_broken_after_truncated_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00")
    with pytest.raises(TruncatedFrame) as first:
        decoder.end_of_stream()
    with pytest.raises(TruncatedFrame) as again:
        decoder.feed(b"\x00\x00")
    assert first.value is again.value


# --- the contents: a JSON object (D-WIRE) ---------------------------------------


def test_decode_json_of_a_message() -> None:
    [frame] = FrameDecoder().feed(encode_json(RESPONSE))
    assert RESPONSE == decode_json(frame)


@pytest.mark.parametrize(
    ("contents", "defect"),
    [
        (b'{"a":"\xff"}', "contents are not UTF-8: invalid start byte b'\\xff' at byte 6"),
        (b'{"a":"\xc3"}', "contents are not UTF-8: invalid continuation byte b'\\xc3' at byte 6"),
        (b"\xed\xa0\x80", "contents are not UTF-8: invalid continuation byte b'\\xed' at byte 0"),
        (
            b'{"a":1,}',
            "contents are not JSON: Expecting property name enclosed in double quotes"
            " at line 1 column 8 (char 7)",
        ),
        (b"", "contents are not JSON: Expecting value at line 1 column 1 (char 0)"),
        (b'{"a":1} {}', "contents are not JSON: Extra data at line 1 column 9 (char 8)"),
        (b'{"a":NaN}', "contents are not JSON: NaN is not a JSON value"),
        (b'{"a":Infinity}', "contents are not JSON: Infinity is not a JSON value"),
        (b'{"a":-Infinity}', "contents are not JSON: -Infinity is not a JSON value"),
        (b"[" * 100_000 + b"]" * 100_000, "contents are not JSON: nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "contents are not JSON: nested too deeply"),
        (b'[{"header":{},"body":{}}]', "contents are not a JSON object but an array"),
        (b'"header"', "contents are not a JSON object but a string"),
        (b"12", "contents are not a JSON object but the number 12"),
        (b"true", "contents are not a JSON object but a boolean"),
        (b"null", "contents are not a JSON object but null"),
    ],
)
def test_d_wire_contents_not_a_json_object_are_a_broken_stream(contents: bytes, defect: str) -> None:
    """D-WIRE: contents that are not UTF-8, not JSON or not a JSON object are
    refused, naming the frame's offset in the stream and the defect."""
    decoder = FrameDecoder()
    good, bad = decoder.feed(frame_of(b'{"header":{},"body":{}}') + frame_of(contents))
    expected_good: dict[str, Any] = {"header": {}, "body": {}}
    assert expected_good == decode_json(good)
    with pytest.raises(BadContents) as excinfo:
        decode_json(bad)
    assert_d_wire_error(f"frame at offset 27: {defect}", excinfo.value)
    assert (27, defect) == (excinfo.value.offset, excinfo.value.defect)


def test_any_json_object_is_contents_whatever_its_keys() -> None:
    """D-WIRE: the frame layer asks for a JSON object, nothing more (D-ENV and D-BAD judge the rest)."""
    messages: list[dict[str, Any]] = [{}, {"headers": {}, "properties": {}}, {"x": [1, 2.5, None, True]}]
    for message in messages:
        [frame] = FrameDecoder().feed(frame_of(json.dumps(message).encode()))
        assert message == decode_json(frame)

"""Tests of the frame codec of the TCP transport (rule D-WIRE).

Assertions are written ``expected == actual``; expected values that are
literals are bound to a name first (the repo's ruff settings refuse a literal
on the left of ``==``).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.framing import (
    BOUNDARY,
    CTI_INDEX,
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    TRANSPORT_INDEX,
    BadBoundary,
    BadContents,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    FramingError,
    TruncatedFrame,
    decode_json,
    encode_frame,
    encode_json,
    error_frame,
)
from fsm.errors import LocalProtocolError, RemoteProtocolError

deterministic = settings(derandomize=True, database=None, deadline=None, max_examples=100)

# Contents built from random binary chunks interleaved with boundaries, so that
# contents containing ~!OM (even at their start or end) are frequent.
contents_strategy = st.lists(st.one_of(st.binary(max_size=40), st.just(BOUNDARY)), max_size=6).map(b"".join)
index_strategy = st.integers(min_value=0, max_value=255)
frame_strategy = st.builds(Frame, index=index_strategy, contents=contents_strategy)

# A stream covering the awkward cases: empty contents, contents that are or
# contain the boundary, a header-like byte run inside contents, index 0 and 255.
sample_frames = [
    Frame(CTI_INDEX, b'{"headers":{},"properties":{},"body":null}'),
    Frame(TRANSPORT_INDEX, b""),
    Frame(255, BOUNDARY),
    Frame(7, b"x" + BOUNDARY + b"\x01\x00\x00\xff\xff" + BOUNDARY),
    Frame(CTI_INDEX, "caf\u00e9 \u260e".encode()),
]


def encode_all(frames: list[Frame]) -> bytes:
    return b"".join(encode_frame(frame.contents, frame.index) for frame in frames)


def header(index: int, length: int) -> bytes:
    return BOUNDARY + bytes((index,)) + length.to_bytes(4, "big")


def assert_d_wire_error(expected_message: str, error: FramingError) -> None:
    expected = (expected_message, "D-WIRE")
    assert expected == (error.message, error.rule)


# --- encoding ---------------------------------------------------------------


def test_constants_match_d_wire() -> None:
    expected = (b"~!OM", 9, 1, 0, 1048576)
    assert expected == (
        BOUNDARY,
        HEADER_SIZE,
        CTI_INDEX,
        TRANSPORT_INDEX,
        DEFAULT_MAX_FRAME_SIZE,
    )


@pytest.mark.parametrize(
    ("expected", "contents", "index"),
    [
        # D-WIRE: boundary, 1-byte index, 4-byte big-endian length of the contents only.
        (b"~!OM\x01\x00\x00\x01\x02" + b"a" * 258, b"a" * 258, CTI_INDEX),
        (b"~!OM\x00\x00\x00\x00\x00", b"", TRANSPORT_INDEX),
        (b"~!OM\xff\x00\x00\x00\x04~!OM", BOUNDARY, 255),
    ],
)
def test_encode_frame_layout(expected: bytes, contents: bytes, index: int) -> None:
    assert expected == encode_frame(contents, index)


def test_encode_frame_too_large() -> None:
    with pytest.raises(FrameTooLarge) as excinfo:
        encode_frame(b"x" * (DEFAULT_MAX_FRAME_SIZE + 1))
    assert_d_wire_error(
        "frame of 1048577 bytes exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )


def test_encode_frame_respects_custom_maximum() -> None:
    expected = header(CTI_INDEX, 10) + b"0123456789"
    assert expected == encode_frame(b"0123456789", max_frame_size=10)
    with pytest.raises(FrameTooLarge) as excinfo:
        encode_frame(b"0123456789a", max_frame_size=10)
    assert_d_wire_error("frame of 11 bytes exceeds the maximum frame size of 10 bytes", excinfo.value)


@pytest.mark.parametrize("index", [-1, 256, 1000])
def test_encode_frame_bad_index(index: int) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_frame(b"x", index)
    expected = (f"the protocol index must be in 0..255 (got {index})", "D-WIRE")
    assert expected == (excinfo.value.message, excinfo.value.rule)
    assert not isinstance(excinfo.value, RemoteProtocolError)


def test_encode_frame_bad_maximum() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_frame(b"x", max_frame_size=-1)
    expected = "the maximum frame size must not be negative (got -1)"
    assert expected == excinfo.value.message


def test_encode_json_is_compact_utf8() -> None:
    expected = encode_frame('{"headers":{"a":"caf\u00e9"},"properties":{},"body":[1,2]}'.encode())
    actual = encode_json({"headers": {"a": "caf\u00e9"}, "properties": {}, "body": [1, 2]})
    assert expected == actual


def test_encode_json_on_other_index_and_maximum() -> None:
    assert encode_frame(b"{}", TRANSPORT_INDEX) == encode_json({}, TRANSPORT_INDEX)
    with pytest.raises(FrameTooLarge) as excinfo:
        encode_json({"k": "v"}, max_frame_size=8)  # '{"k":"v"}' is 9 bytes
    assert_d_wire_error("frame of 9 bytes exceeds the maximum frame size of 8 bytes", excinfo.value)


@pytest.mark.parametrize(
    ("obj", "defect"),
    [
        ({"x": {1, 2}}, "not JSON serializable"),
        ({"x": float("nan")}, "Out of range float values are not JSON compliant"),
        ({"x": "\ud800"}, "surrogates not allowed"),
    ],
)
def test_encode_json_refuses_what_is_not_json(obj: object, defect: str) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        encode_json(obj)
    message = excinfo.value.message
    assert message.startswith("cannot encode the message as UTF-8 JSON: "), message
    assert defect in message, message


def test_error_frame() -> None:
    [frame] = FrameDecoder().feed(error_frame("bad boundary \u260e"))
    expected = (
        TRANSPORT_INDEX,
        {"headers": {"type": "transport.error"}, "properties": {"message": "bad boundary \u260e"}},
    )
    assert expected == (frame.index, decode_json(frame))


# --- error classes ------------------------------------------------------------


@pytest.mark.parametrize("cls", [BadBoundary, FrameTooLarge, TruncatedFrame, BadContents])
def test_error_tree(cls: type[FramingError]) -> None:
    error = cls("something broke")
    assert isinstance(error, FramingError)
    assert isinstance(error, RemoteProtocolError)
    assert_d_wire_error("something broke", error)
    expected = "something broke (D-WIRE)"
    assert expected == str(error)


# --- decoding -----------------------------------------------------------------


@deterministic
@given(contents=contents_strategy, index=index_strategy)
def test_round_trip(contents: bytes, index: int) -> None:
    decoder = FrameDecoder()
    expected = ([Frame(index, contents)], 0)
    assert expected == (decoder.feed(encode_frame(contents, index)), decoder.buffered)
    decoder.end_of_stream()


@deterministic
@given(
    frames=st.lists(frame_strategy, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_round_trip_in_arbitrary_chunks(frames: list[Frame], cuts: list[int]) -> None:
    stream = encode_all(frames)
    points = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    decoder = FrameDecoder()
    decoded: list[Frame] = []
    for start, stop in itertools.pairwise(points):
        decoded += decoder.feed(stream[start:stop])
    assert (frames, 0) == (decoded, decoder.buffered)
    decoder.end_of_stream()


def test_stream_split_at_every_single_point() -> None:
    stream = encode_all(sample_frames)
    for split in range(len(stream) + 1):
        decoder = FrameDecoder()
        decoded = decoder.feed(stream[:split])
        # The bytes of the incomplete frame, and only those, are held.
        consumed = sum(HEADER_SIZE + len(frame.contents) for frame in decoded)
        assert split == consumed + decoder.buffered, split
        decoded += decoder.feed(stream[split:])
        assert (sample_frames, 0) == (decoded, decoder.buffered), split
        decoder.end_of_stream()


def test_stream_fed_byte_by_byte() -> None:
    stream = encode_all(sample_frames)
    decoder = FrameDecoder()
    decoded: list[Frame] = []
    completed_at: list[int] = []
    for position in range(len(stream)):
        new = decoder.feed(stream[position : position + 1])
        decoded += new
        completed_at += [position + 1] * len(new)
    assert sample_frames == decoded
    # Each frame is returned by the feed that delivers its last byte, not later.
    expected_ends = list(itertools.accumulate(HEADER_SIZE + len(frame.contents) for frame in sample_frames))
    assert expected_ends == completed_at
    decoder.end_of_stream()


def test_many_frames_in_one_feed() -> None:
    frames = [Frame(i % 256, str(i).encode() + BOUNDARY) for i in range(20000)]
    decoder = FrameDecoder()
    assert (frames, 0) == (decoder.feed(encode_all(frames)), decoder.buffered)


def test_complete_frames_and_a_partial_one_in_one_feed() -> None:
    stream = encode_all(sample_frames)
    last = encode_frame(b"tail", 3)
    decoder = FrameDecoder()
    assert (sample_frames, 6) == (decoder.feed(stream + last[:6]), decoder.buffered)
    expected = ([Frame(3, b"tail")], 0)
    assert expected == (decoder.feed(last[6:]), decoder.buffered)


def test_empty_feed() -> None:
    decoder = FrameDecoder()
    expected: tuple[list[Frame], list[Frame], list[Frame], int] = ([], [], [], 3)
    actual = (decoder.feed(b""), decoder.feed(b"~!O"), decoder.feed(b""), decoder.buffered)
    assert expected == actual


def test_frame_of_exactly_the_maximum_size() -> None:
    decoder = FrameDecoder(max_frame_size=4)
    expected = [Frame(1, b"abcd")]
    assert expected == decoder.feed(encode_frame(b"abcd"))


def test_decoder_refuses_bad_maximum() -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        FrameDecoder(max_frame_size=-5)
    expected = "the maximum frame size must not be negative (got -5)"
    assert expected == excinfo.value.message


# --- decoding errors ----------------------------------------------------------


def test_bad_boundary_at_first_frame() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadBoundary) as excinfo:
        decoder.feed(b"HTTP/1.1 200 OK\r\n\r\n")
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'HTTP')", excinfo.value)


def test_bad_boundary_after_a_valid_frame() -> None:
    decoder = FrameDecoder()
    expected = [Frame(1, b"ok")]
    assert expected == decoder.feed(encode_frame(b"ok"))
    with pytest.raises(BadBoundary) as excinfo:
        decoder.feed(b"~!OX" + b"\x01\x00\x00\x00\x00")
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'~!OX')", excinfo.value)


def test_bad_boundary_after_a_valid_frame_in_the_same_feed() -> None:
    with pytest.raises(BadBoundary) as excinfo:
        FrameDecoder().feed(encode_frame(b"ok") + b"garbage")
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'garb')", excinfo.value)


def test_length_not_boundary_delimits_contents() -> None:
    # The contents hold "~!OM" but the length, not the boundary, delimits them:
    # a length one byte short leaves "x" where the next boundary must be.
    stream = header(1, 5) + b"~!OMx" + encode_frame(b"next")
    expected = [Frame(1, b"~!OMx"), Frame(1, b"next")]
    assert expected == FrameDecoder().feed(stream)
    broken = header(1, 4) + b"~!OMx" + encode_frame(b"next")
    with pytest.raises(BadBoundary) as excinfo:
        FrameDecoder().feed(broken)
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'x~!O')", excinfo.value)


def test_bad_boundary_detected_on_the_first_byte() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadBoundary) as excinfo:
        decoder.feed(b"G")
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'G')", excinfo.value)


def test_bad_boundary_detected_on_a_partial_boundary() -> None:
    decoder = FrameDecoder()
    expected: tuple[list[Frame], list[Frame]] = ([], [])
    assert expected == (decoder.feed(b"~"), decoder.feed(b"!"))
    with pytest.raises(BadBoundary) as excinfo:
        decoder.feed(b"X")
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'~!X')", excinfo.value)


def test_bad_boundary_detected_on_a_partial_boundary_after_a_frame() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadBoundary) as excinfo:
        decoder.feed(encode_frame(b"ok") + b"~?")
    assert_d_wire_error("frame does not start with the boundary b'~!OM' (got b'~?')", excinfo.value)


def test_oversized_length_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge) as excinfo:
        decoder.feed(header(CTI_INDEX, 2_000_000))  # the 9 header bytes, no contents
    assert_d_wire_error(
        "frame of 2000000 bytes exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )
    expected_buffered = 0
    assert expected_buffered == decoder.buffered


def test_oversized_length_refused_when_the_header_arrives_in_pieces() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    oversized = header(0, 11)
    expected: list[Frame] = []
    assert expected == decoder.feed(oversized[:8])
    with pytest.raises(FrameTooLarge) as excinfo:
        decoder.feed(oversized[8:])
    assert_d_wire_error("frame of 11 bytes exceeds the maximum frame size of 10 bytes", excinfo.value)


def test_largest_length_field_refused() -> None:
    with pytest.raises(FrameTooLarge) as excinfo:
        FrameDecoder().feed(b"~!OM\x01\xff\xff\xff\xff")
    assert_d_wire_error(
        "frame of 4294967295 bytes exceeds the maximum frame size of 1048576 bytes", excinfo.value
    )


def test_partial_frame_is_bounded() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    wire = encode_frame(b"y" * 100)
    no_frames: list[Frame] = []
    for position in range(len(wire) - 1):
        assert (no_frames, position + 1) == (
            decoder.feed(wire[position : position + 1]),
            decoder.buffered,
        )
        assert decoder.buffered < HEADER_SIZE + decoder.max_frame_size
    expected = ([Frame(1, b"y" * 100)], 0)
    assert expected == (decoder.feed(wire[-1:]), decoder.buffered)


def test_clean_end_of_stream() -> None:
    FrameDecoder().end_of_stream()
    decoder = FrameDecoder()
    assert sample_frames == decoder.feed(encode_all(sample_frames))
    decoder.end_of_stream()
    assert decoder.error is None


def test_feed_after_end_of_stream_is_a_local_error() -> None:
    decoder = FrameDecoder()
    decoder.end_of_stream()
    with pytest.raises(LocalProtocolError) as excinfo:
        decoder.feed(encode_frame(b"late"))
    expected = "feed() called after end_of_stream()"
    assert expected == excinfo.value.message


def test_truncated_header_at_end_of_stream() -> None:
    decoder = FrameDecoder()
    expected: list[Frame] = []
    assert expected == decoder.feed(header(1, 3)[:5])
    with pytest.raises(TruncatedFrame) as excinfo:
        decoder.end_of_stream()
    assert_d_wire_error("stream ended inside a frame header: got 5 of 9 bytes", excinfo.value)


def test_truncated_contents_at_end_of_stream() -> None:
    decoder = FrameDecoder()
    expected = [Frame(1, b"ok")]
    assert expected == decoder.feed(encode_frame(b"ok") + encode_frame(b"abcdef", 4)[:12])
    with pytest.raises(TruncatedFrame) as excinfo:
        decoder.end_of_stream()
    assert_d_wire_error(
        "stream ended inside the contents of a frame on protocol index 4: got 3 of 6 bytes",
        excinfo.value,
    )


def test_truncated_right_after_a_header() -> None:
    decoder = FrameDecoder()
    expected: list[Frame] = []
    assert expected == decoder.feed(header(0, 6))
    with pytest.raises(TruncatedFrame) as excinfo:
        decoder.end_of_stream()
    assert_d_wire_error(
        "stream ended inside the contents of a frame on protocol index 0: got 0 of 6 bytes",
        excinfo.value,
    )


def test_decoder_stays_broken_after_bad_boundary() -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadBoundary) as first:
        decoder.feed(b"HTTP")
    assert first.value is decoder.error
    for _ in range(3):
        with pytest.raises(BadBoundary) as again:
            decoder.feed(encode_frame(b"valid"))
        assert first.value is again.value
    with pytest.raises(BadBoundary) as at_end:
        decoder.end_of_stream()
    assert first.value is at_end.value
    expected_buffered = 0
    assert expected_buffered == decoder.buffered


def test_decoder_stays_broken_after_frame_too_large() -> None:
    decoder = FrameDecoder(max_frame_size=1)
    with pytest.raises(FrameTooLarge) as first:
        decoder.feed(header(1, 2))
    with pytest.raises(FrameTooLarge) as again:
        decoder.feed(encode_frame(b"k"))
    assert first.value is again.value


def test_decoder_stays_broken_after_truncated_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"~!O")
    with pytest.raises(TruncatedFrame) as first:
        decoder.end_of_stream()
    with pytest.raises(TruncatedFrame) as again:
        decoder.feed(b"M\x01\x00\x00\x00\x00")
    assert first.value is again.value


# --- JSON contents ------------------------------------------------------------


def test_decode_json() -> None:
    message = {"headers": {"type": "cti.dial"}, "properties": {"to": "1001"}, "body": None}
    [frame] = FrameDecoder().feed(encode_json(message))
    assert message == decode_json(frame)


def test_decode_json_invalid_utf8() -> None:
    with pytest.raises(BadContents) as excinfo:
        decode_json(Frame(1, b'{"a":"\xff"}'))
    assert_d_wire_error(
        "frame contents are not valid UTF-8: invalid start byte b'\\xff' at byte 6", excinfo.value
    )


def test_decode_json_invalid_json() -> None:
    with pytest.raises(BadContents) as excinfo:
        decode_json(Frame(1, b'{"a":1,}'))
    assert_d_wire_error(
        "frame contents are not valid JSON: Expecting property name enclosed in double quotes"
        " at line 1 column 8 (char 7)",
        excinfo.value,
    )


def test_decode_json_empty_contents() -> None:
    with pytest.raises(BadContents) as excinfo:
        decode_json(Frame(0, b""))
    assert_d_wire_error(
        "frame contents are not valid JSON: Expecting value at line 1 column 1 (char 0)",
        excinfo.value,
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_decode_json_refuses_non_standard_constants(constant: str) -> None:
    with pytest.raises(BadContents) as excinfo:
        decode_json(Frame(1, f'{{"a":{constant}}}'.encode()))
    assert_d_wire_error(f"frame contents are not valid JSON: {constant} is not a JSON value", excinfo.value)

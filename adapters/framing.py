"""The sans-IO frame codec of the TCP transport (rule D-WIRE of the spec).

Every frame on the wire is::

    +------+-------+----------------+-----------------+
    | ~!OM | index | length         | contents        |
    | 4 B  | 1 B   | 4 B, unsigned, | ``length`` B    |
    |      |       | big-endian     |                 |
    +------+-------+----------------+-----------------+

- ``~!OM`` is the boundary. It is never escaped: the contents may contain
  ``~!OM`` themselves, because the length field (which counts the contents
  only, not the 9 header bytes) delimits them.
- ``index`` is the protocol index: :data:`TRANSPORT_INDEX` (0) for the
  transport's own messages (hello, negotiation, error, teardown),
  :data:`CTI_INDEX` (1) by default for CTI messages.
- The contents of a CTI message are a UTF-8 JSON object
  ``{"headers": {...}, "properties": {...}, "body": ...}``.

A frame that does not start with the boundary is an error: the receiver
sends an ERROR message (see :func:`error_frame`) and closes. A maximum frame
size (default 1 MiB of contents) is enforced from the header, before any of
the contents are buffered.

Nothing here does I/O: :func:`encode_frame` turns contents into bytes to
write, and :class:`FrameDecoder` turns whatever bytes were read, in whatever
chunks they arrived, into :class:`Frame` objects.
"""

from __future__ import annotations

import json
import struct
from typing import Final, NoReturn

import attrs

from fsm.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BOUNDARY",
    "CTI_INDEX",
    "DEFAULT_MAX_FRAME_SIZE",
    "HEADER_SIZE",
    "RULE",
    "TRANSPORT_INDEX",
    "BadBoundary",
    "BadContents",
    "Frame",
    "FrameDecoder",
    "FrameTooLarge",
    "FramingError",
    "TruncatedFrame",
    "decode_json",
    "encode_frame",
    "encode_json",
    "error_frame",
]

RULE: Final = "D-WIRE"
"""The spec rule every error of this module cites."""

BOUNDARY: Final = b"~!OM"
"""The 4 bytes every frame starts with; never escaped inside contents."""

HEADER_SIZE: Final = 9
"""Boundary (4 bytes) + protocol index (1 byte) + contents length (4 bytes)."""

TRANSPORT_INDEX: Final = 0
"""Protocol index of the transport's own messages (hello, negotiation, error, teardown)."""

CTI_INDEX: Final = 1
"""Default protocol index of CTI messages."""

DEFAULT_MAX_FRAME_SIZE: Final = 1 << 20
"""Default maximum size of a frame's contents, in bytes (1 MiB; the header is not counted)."""

_LENGTH: Final = struct.Struct(">I")
_MAX_LENGTH: Final = (1 << 32) - 1  # the largest value the 4-byte length field can hold
_MAX_INDEX: Final = 255
_BOUNDARY_SIZE: Final = len(BOUNDARY)
_LENGTH_OFFSET: Final = _BOUNDARY_SIZE + 1  # boundary, then the index byte, then the length

assert _BOUNDARY_SIZE + 1 + _LENGTH.size == HEADER_SIZE


class FramingError(RemoteProtocolError):
    """The peer's byte stream breaks the frame format (always rule D-WIRE)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, RULE)


class BadBoundary(FramingError):
    """A frame does not start with the boundary ``~!OM`` (D-WIRE)."""


class FrameTooLarge(FramingError):
    """A frame's length exceeds the maximum frame size (D-WIRE)."""


class TruncatedFrame(FramingError):
    """The stream ended in the middle of a frame (D-WIRE)."""


class BadContents(FramingError):
    """A frame's contents are not UTF-8 JSON (D-WIRE)."""


@attrs.frozen
class Frame:
    """One decoded frame: its protocol index and its contents."""

    index: int
    contents: bytes


def _check_max_frame_size(max_frame_size: int) -> int:
    """Validate a caller-supplied maximum and return the effective one."""
    if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
        raise LocalProtocolError(
            f"the maximum frame size must be an int, not {type(max_frame_size).__name__}", RULE
        )
    if max_frame_size < 0:
        raise LocalProtocolError(f"the maximum frame size must not be negative (got {max_frame_size})", RULE)
    return min(max_frame_size, _MAX_LENGTH)


def _too_large(length: int, max_frame_size: int) -> FrameTooLarge:
    return FrameTooLarge(f"frame of {length} bytes exceeds the maximum frame size of {max_frame_size} bytes")


def encode_frame(
    contents: bytes,
    index: int = CTI_INDEX,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """Return the wire bytes of one frame carrying ``contents`` on protocol ``index``.

    Raises :class:`FrameTooLarge` if ``contents`` is longer than ``max_frame_size``
    (or than the 4-byte length field can express), and :class:`LocalProtocolError`
    if ``index`` is not in 0..255 or ``max_frame_size`` is not a non-negative int.
    """
    limit = _check_max_frame_size(max_frame_size)
    if isinstance(index, bool) or not isinstance(index, int):
        raise LocalProtocolError(f"the protocol index must be an int, not {type(index).__name__}", RULE)
    if not 0 <= index <= _MAX_INDEX:
        raise LocalProtocolError(f"the protocol index must be in 0..255 (got {index})", RULE)
    length = len(contents)
    if length > limit:
        raise _too_large(length, limit)
    return b"".join((BOUNDARY, bytes((index,)), _LENGTH.pack(length), contents))


def encode_json(
    obj: object,
    index: int = CTI_INDEX,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """Return the wire bytes of one frame whose contents are ``obj`` as compact UTF-8 JSON.

    Raises :class:`LocalProtocolError` if ``obj`` cannot be written as standard
    JSON (an unserialisable value, NaN or an infinity, a lone surrogate), plus
    whatever :func:`encode_frame` raises.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        contents = text.encode("utf-8")
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        raise LocalProtocolError(f"cannot encode the message as UTF-8 JSON: {error}", RULE) from error
    return encode_frame(contents, index, max_frame_size)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def decode_json(frame: Frame) -> object:
    """Return the JSON value carried by ``frame``.

    Raises :class:`BadContents` naming the defect if the contents are not
    UTF-8, or not standard JSON (``NaN``, ``Infinity`` and ``-Infinity`` are
    refused).
    """
    contents = frame.contents
    try:
        text = contents.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = contents[error.start : error.end]
        raise BadContents(
            f"frame contents are not valid UTF-8: {error.reason} {bad!r} at byte {error.start}"
        ) from error
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise BadContents(
            f"frame contents are not valid JSON: {error.msg}"
            f" at line {error.lineno} column {error.colno} (char {error.pos})"
        ) from error
    except ValueError as error:  # raised by _reject_constant
        raise BadContents(f"frame contents are not valid JSON: {error}") from error
    except RecursionError:
        raise BadContents("frame contents are not valid JSON: nested too deeply") from None


def error_frame(message: str) -> bytes:
    """Return the wire bytes of the transport's ERROR message (protocol index 0)."""
    return encode_json(
        {"headers": {"type": "transport.error"}, "properties": {"message": message}},
        index=TRANSPORT_INDEX,
    )


class FrameDecoder:
    """Incremental decoder: feed it the bytes read, in any chunks, and get frames back.

    Errors are raised as early as the bytes allow: :class:`BadBoundary` as
    soon as the bytes seen cannot be the start of a boundary (the first byte
    of a frame that is not ``~`` is enough), :class:`FrameTooLarge` as soon as
    the length field is read, before any contents are buffered. After an
    error the decoder is broken: every further :meth:`feed` or
    :meth:`end_of_stream` raises the same error again. Frames completed
    earlier in the very :meth:`feed` that raised are not returned; the
    connection is to be closed anyway.

    Between calls the decoder holds at most one partial frame, that is fewer
    than ``HEADER_SIZE + max_frame_size`` bytes.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._max_frame_size = _check_max_frame_size(max_frame_size)
        self._buffer = bytearray()
        self._error: FramingError | None = None
        self._ended = False

    @property
    def max_frame_size(self) -> int:
        """The largest contents length accepted, in bytes."""
        return self._max_frame_size

    @property
    def buffered(self) -> int:
        """How many bytes of a partial frame the decoder holds."""
        return len(self._buffer)

    @property
    def error(self) -> FramingError | None:
        """The error that broke the decoder, or ``None`` while it is healthy."""
        return self._error

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the frames it completes, in stream order."""
        self._raise_if_unusable()
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        end = len(buffer)
        try:
            with memoryview(buffer) as view:
                while True:
                    available = end - offset
                    self._check_boundary(view[offset : offset + min(available, _BOUNDARY_SIZE)])
                    if available < HEADER_SIZE:
                        break
                    (length,) = _LENGTH.unpack_from(view, offset + _LENGTH_OFFSET)
                    if length > self._max_frame_size:
                        raise _too_large(length, self._max_frame_size)
                    start = offset + HEADER_SIZE
                    stop = start + length
                    if stop > end:
                        break
                    frames.append(Frame(view[offset + _BOUNDARY_SIZE], bytes(view[start:stop])))
                    offset = stop
        except FramingError as error:
            self._break(error)
            raise
        # One slice per feed, whatever the number of frames: no quadratic copying.
        del buffer[:offset]
        return frames

    def end_of_stream(self) -> None:
        """Declare that the peer closed the stream.

        Raises :class:`TruncatedFrame` if a partial frame is buffered.
        """
        self._raise_if_broken()
        self._ended = True
        buffer = self._buffer
        got = len(buffer)
        if got == 0:
            return
        if got < HEADER_SIZE:
            error = TruncatedFrame(f"stream ended inside a frame header: got {got} of {HEADER_SIZE} bytes")
        else:
            (length,) = _LENGTH.unpack_from(buffer, _LENGTH_OFFSET)
            error = TruncatedFrame(
                f"stream ended inside the contents of a frame on protocol index"
                f" {buffer[_BOUNDARY_SIZE]}: got {got - HEADER_SIZE} of {length} bytes"
            )
        self._break(error)
        raise error

    @staticmethod
    def _check_boundary(seen: memoryview) -> None:
        if seen != BOUNDARY[: len(seen)]:
            raise BadBoundary(f"frame does not start with the boundary {BOUNDARY!r} (got {bytes(seen)!r})")

    def _break(self, error: FramingError) -> None:
        self._error = error
        self._buffer = bytearray()  # release the memory; nothing more will be decoded

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)

    def _raise_if_unusable(self) -> None:
        self._raise_if_broken()
        if self._ended:
            raise LocalProtocolError("feed() called after end_of_stream()", RULE)

"""The sans-IO frame codec of the TCP transport (rules F-WIRE and D-WIRE of the spec).

Every message on the wire is one frame (F-WIRE)::

    +-------------------------+-----------------------+
    | length                  | contents              |
    | 4 bytes, unsigned,      | ``length`` bytes of   |
    | big-endian by default   | UTF-8 JSON (an object)|
    +-------------------------+-----------------------+

Nothing else is on the wire: no boundary marker, no negotiation, no
keepalive or error message. The length counts the contents only. It is
big-endian (network byte order) unless the byte order is set to ``"little"``
for a bridge that differs (D-WIRE). For example, the event
``{"header":{"type":"cti.event","name":"channel.ready","target":"s1.g1.c1"},"body":{}}``
(84 bytes of contents) is the 4 bytes ``00 00 00 54`` followed by those
84 bytes, 88 bytes in all::

    >>> message = {"header": {"type": "cti.event", "name": "channel.ready", "target": "s1.g1.c1"}, "body": {}}
    >>> frame = encode_json(message)
    >>> frame[:4].hex(" "), len(frame[4:]), frame[4:16]
    ('00 00 00 54', 84, b'{"header":{"')
    >>> encode_json(message, byte_order="little")[:4].hex(" ")
    '54 00 00 00'

A broken stream (D-WIRE) is a :class:`FramingError`, whose message names the
offset of the frame in the stream and the defect:

- a length above the maximum frame size (default 1 MiB), refused from the 4
  length bytes alone, before any byte of the contents is buffered
  (:class:`FrameTooLarge`);
- contents that are not UTF-8, not JSON, or not a JSON object
  (:class:`BadContents`, raised by :func:`decode_json`);
- a stream that ends inside a frame (:class:`TruncatedFrame`).

Nothing here does I/O: :func:`encode_frame` and :func:`encode_json` turn
contents or a message into the bytes to write; :class:`FrameDecoder` turns
the bytes read, in whatever chunks they arrived, into :class:`Frame` objects;
:func:`decode_json` reads a frame's contents as a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, NoReturn, TypeAlias

import attrs

from fsm.codec import JSONDecodeError, dumpb, loads
from fsm.errors import LocalProtocolError, RemoteProtocolError
from fsm.messages import json_type

__all__ = [
    "BYTE_ORDERS",
    "DEFAULT_MAX_FRAME_SIZE",
    "LENGTH_SIZE",
    "RULE",
    "BadContents",
    "ByteOrder",
    "Frame",
    "FrameDecoder",
    "FrameTooLarge",
    "FramingError",
    "TruncatedFrame",
    "check_byte_order",
    "decode_json",
    "encode_frame",
    "encode_json",
]

RULE: Final = "D-WIRE"
"""The spec rule every error of this module cites."""

ByteOrder: TypeAlias = Literal["big", "little"]
BYTE_ORDERS: Final[tuple[ByteOrder, ...]] = ("big", "little")
"""The byte orders of the length field; ``"big"`` is the default (D-WIRE)."""

LENGTH_SIZE: Final = 4
"""The length field: 4 bytes, unsigned; all there is before the contents."""

DEFAULT_MAX_FRAME_SIZE: Final = 1 << 20
"""Default maximum length of a frame's contents, in bytes (1 MiB; the length field is not counted)."""

_MAX_LENGTH: Final = (1 << (8 * LENGTH_SIZE)) - 1  # the largest value the length field can hold


class FramingError(RemoteProtocolError):
    """The peer's byte stream is broken (always rule D-WIRE): ``offset`` is
    where the frame starts in the stream, ``defect`` what is wrong with it.
    ``frames``: the frames that the :meth:`FrameDecoder.feed` which found the
    defect completed before it (they are sound; nothing is lost)."""

    def __init__(self, offset: int, defect: str, frames: tuple[Frame, ...] = ()) -> None:
        super().__init__(f"frame at offset {offset}: {defect}", RULE)
        self.offset = offset
        self.defect = defect
        self.frames = frames


class FrameTooLarge(FramingError):
    """A frame's length exceeds the maximum frame size (D-WIRE)."""


class TruncatedFrame(FramingError):
    """The stream ended inside a frame (D-WIRE)."""


class BadContents(FramingError):
    """A frame's contents are not UTF-8, not JSON or not a JSON object (D-WIRE)."""


@attrs.frozen
class Frame:
    """One frame: where it starts in the stream (its length field), and its contents."""

    offset: int
    contents: bytes


def check_byte_order(byte_order: object) -> ByteOrder:
    """Return ``byte_order`` if it is ``"big"`` or ``"little"``; else raise LocalProtocolError."""
    if byte_order == "big":
        return "big"
    if byte_order == "little":
        return "little"
    raise LocalProtocolError(f"the byte order must be 'big' or 'little', not {byte_order!r}", RULE)


def _check_max_frame_size(max_frame_size: object) -> int:
    """Validate a caller-supplied maximum and return the effective one."""
    if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
        raise LocalProtocolError(
            f"the maximum frame size must be an int, not {type(max_frame_size).__name__}", RULE
        )
    if max_frame_size < 0:
        raise LocalProtocolError(f"the maximum frame size must not be negative (got {max_frame_size})", RULE)
    return min(max_frame_size, _MAX_LENGTH)


def encode_frame(
    contents: bytes, *, byte_order: ByteOrder = "big", max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """Return the wire bytes of one frame carrying ``contents`` (F-WIRE).

    Raises :class:`LocalProtocolError` if ``contents`` is longer than
    ``max_frame_size`` (the peer would refuse it), or if an option is invalid.
    The contents are not checked: :func:`encode_json` writes only valid ones.
    """
    order = check_byte_order(byte_order)
    limit = _check_max_frame_size(max_frame_size)
    length = len(contents)
    if length > limit:
        raise LocalProtocolError(
            f"a frame of {length} bytes exceeds the maximum frame size of {limit} bytes", RULE
        )
    return length.to_bytes(LENGTH_SIZE, order) + contents


def encode_json(
    message: Mapping[str, Any],
    *,
    byte_order: ByteOrder = "big",
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """Return the wire bytes of one frame whose contents are ``message`` as compact UTF-8 JSON.

    Raises :class:`LocalProtocolError` if ``message`` is not a JSON object
    (a mapping) or cannot be written as valid UTF-8 JSON (an unserialisable
    value, NaN or an infinity, a lone surrogate), plus whatever
    :func:`encode_frame` raises.
    """
    if not isinstance(message, Mapping):
        raise LocalProtocolError(f"a message must be a JSON object, not {type(message).__name__}", RULE)
    try:
        contents = dumpb(message, strict=True)
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        raise LocalProtocolError(f"cannot encode the message as UTF-8 JSON: {error}", RULE) from error
    except RecursionError:
        raise LocalProtocolError("cannot encode the message as UTF-8 JSON: nested too deeply", RULE) from None
    return encode_frame(contents, byte_order=byte_order, max_frame_size=max_frame_size)


def decode_json(frame: Frame) -> dict[str, Any]:
    """Return the JSON object carried by ``frame``.

    Raises :class:`BadContents`, naming the frame's offset and the defect, if
    the contents are not UTF-8, not standard JSON (``NaN`` and the infinities
    are refused; so is nesting too deep to decode) or not a JSON object.
    """
    contents = frame.contents
    try:
        text = contents.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = contents[error.start : error.end]
        raise BadContents(
            frame.offset, f"contents are not UTF-8: {error.reason} {bad!r} at byte {error.start}"
        ) from None
    try:
        value = loads(text, strict=True)
    except JSONDecodeError as error:
        raise BadContents(
            frame.offset,
            f"contents are not JSON: {error.msg}"
            f" at line {error.lineno} column {error.colno} (char {error.pos})",
        ) from None
    except ValueError as error:  # NaN or an infinity (strict)
        raise BadContents(frame.offset, f"contents are not JSON: {error}") from None
    except RecursionError:
        raise BadContents(frame.offset, "contents are not JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise BadContents(frame.offset, f"contents are not a JSON object but {json_type(value)}")
    return value


class FrameDecoder:
    """Incremental decoder: feed it the bytes read, in any chunks, and get frames back.

    Each :class:`Frame` carries its offset in the stream. A length above
    ``max_frame_size`` raises :class:`FrameTooLarge` as soon as its 4 bytes
    are fed, before any byte of those contents is buffered; the frames that
    the same :meth:`feed` completed before it are the error's ``frames``.
    After an error the decoder is broken: every further :meth:`feed` or
    :meth:`end_of_stream` raises the same error again.

    Between calls the decoder holds at most one partial frame: fewer than
    ``LENGTH_SIZE + max_frame_size`` bytes.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, byte_order: ByteOrder = "big") -> None:
        self._max_frame_size = _check_max_frame_size(max_frame_size)
        self._byte_order = check_byte_order(byte_order)
        self._offset = 0  # where the frame being read starts in the stream
        self._length: int | None = None  # its contents' length, once its length field is read
        self._buffer = bytearray()  # what was read of it: the length field, then the contents
        self._error: FramingError | None = None
        self._ended = False

    @property
    def max_frame_size(self) -> int:
        """The largest contents length accepted, in bytes."""
        return self._max_frame_size

    @property
    def byte_order(self) -> ByteOrder:
        """The byte order of the length field."""
        return self._byte_order

    @property
    def offset(self) -> int:
        """The stream offset of the next frame to complete (the bytes of every frame returned so far)."""
        return self._offset

    @property
    def buffered(self) -> int:
        """How many bytes of a partial frame the decoder holds (its length field included)."""
        return len(self._buffer) + (LENGTH_SIZE if self._length is not None else 0)

    @property
    def error(self) -> FramingError | None:
        """The error that broke the decoder, or ``None`` while it is healthy."""
        return self._error

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data`` and return the frames it completes, in stream order."""
        self._raise_if_unusable()
        frames: list[Frame] = []
        buffer = self._buffer
        position, end = 0, len(data)
        with memoryview(data) as view:
            while position < end:
                if self._length is None:
                    take = min(LENGTH_SIZE - len(buffer), end - position)
                    buffer += view[position : position + take]
                    position += take
                    if len(buffer) < LENGTH_SIZE:
                        break
                    length = int.from_bytes(buffer, self._byte_order)
                    if length > self._max_frame_size:
                        self._break(
                            FrameTooLarge(
                                self._offset,
                                f"length {length} exceeds the maximum frame size of"
                                f" {self._max_frame_size} bytes",
                                tuple(frames),
                            )
                        )
                    self._length = length
                    buffer.clear()
                need = self._length - len(buffer)
                if not buffer and end - position >= need:  # the whole contents in this chunk: one copy
                    contents = bytes(view[position : position + need])
                    position += need
                else:
                    take = min(need, end - position)
                    buffer += view[position : position + take]
                    position += take
                    if len(buffer) < self._length:
                        break
                    contents = bytes(buffer)
                    buffer.clear()
                frames.append(Frame(self._offset, contents))
                self._offset += LENGTH_SIZE + self._length
                self._length = None
        return frames

    def end_of_stream(self) -> None:
        """Declare that the peer closed the stream.

        Raises :class:`TruncatedFrame` if the stream ended inside a frame.
        """
        self._raise_if_broken()
        self._ended = True
        got = len(self._buffer)
        if self._length is None and got == 0:
            return
        if self._length is None:
            defect = f"truncated: the stream ended after {got} of its {LENGTH_SIZE} length bytes"
        else:
            defect = f"truncated: the stream ended after {got} of its {self._length} bytes of contents"
        self._break(TruncatedFrame(self._offset, defect))

    def _break(self, error: FramingError) -> NoReturn:
        self._error = error
        self._buffer = bytearray()  # release the memory; nothing more will be decoded
        self._length = None
        raise error

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)

    def _raise_if_unusable(self) -> None:
        self._raise_if_broken()
        if self._ended:
            raise LocalProtocolError("feed() called after end_of_stream()", RULE)

"""The framed TCP transport: thin asyncio around the sans-IO codec of :mod:`adapters.framing`.

F-WIRE: TCP, TLS optional; the client connects to the bridge; every message
is one frame, a 4-byte length then UTF-8 JSON. There is nothing else: no
handshake, no transport message of any kind. A connection carries messages
from its first byte (after the TLS handshake, if any).

D-WIRE, as this module applies it:

- the byte order of the length field is an option (``byte_order``, big by
  default) of :func:`connect`, :func:`serve` and :class:`FramedConnection`;
- a broken stream (a length above ``max_frame_size``, contents that are not
  UTF-8, not JSON or not a JSON object) is logged (a warning naming the
  frame's offset and the defect) and the connection is closed, with a reset
  so that the peer sees a loss, not a clean end: the protocol has no error
  message to send back. A connection that ends inside a frame is logged as
  truncated;
- idle connections are detected by TCP keepalive (``tcp_keepalive``
  seconds, off by default): the kernel probes a silent peer, and a dead one
  makes the next read fail, which ends the connection as lost.

How a connection ended is :attr:`FramedConnection.end`: :attr:`End.CLEAN`
when the peer closed it at a frame boundary (:meth:`FramedConnection.recv`
returns None), :attr:`End.LOST` when it was reset, ended inside a frame,
broke the stream or stopped reading (``recv`` raises
:class:`ConnectionLost`), :attr:`End.LOCAL` when this side closed it
(:meth:`FramedConnection.close`: cleanly, at a frame boundary, or
:meth:`FramedConnection.abort`: with a reset, which the peer sees as a loss).

Bounds (D-BOUND): a frame's contents are refused above ``max_frame_size``
from the length alone; the bytes queued for a peer that does not read are
bounded by ``max_send_buffer`` (beyond it a send waits at most
``send_timeout`` seconds, then the connection is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import socket
import ssl as _ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

from adapters.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    ByteOrder,
    FrameDecoder,
    FramingError,
    TruncatedFrame,
    check_byte_order,
    decode_json,
    encode_json,
)
from fsm.errors import LocalProtocolError, ProtocolError

logger = logging.getLogger("telephony_fsm.transport")

DEFAULT_MAX_SEND_BUFFER: Final = 4 * DEFAULT_MAX_FRAME_SIZE
DEFAULT_SEND_TIMEOUT: Final = 10.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
#: TCP keepalive: unanswered probes before the kernel declares the peer dead
KEEPALIVE_PROBES: Final = 3
_CHUNK: Final = 1 << 16
_CLOSE_WAIT: Final = 1.0  # seconds a close may take before the socket is aborted
_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class TransportError(ProtocolError):
    """The connection cannot carry a message (rule D-WIRE unless said otherwise)."""

    def __init__(self, message: str, rule: str | None = "D-WIRE") -> None:
        super().__init__(message, rule)


class ConnectionLost(TransportError):
    """The connection ended other than by a clean close at a frame boundary:
    reset, truncated frame, broken stream (``cause`` is the
    :class:`~adapters.framing.FramingError` then), or a peer that stopped
    reading. The connection is closed."""

    def __init__(self, message: str, rule: str = "D-WIRE", cause: BaseException | None = None) -> None:
        super().__init__(message, rule)
        self.cause = cause


class SendBufferFull(ConnectionLost):
    """The peer stopped reading and the send buffer bound was reached (D-BOUND)."""


class ConnectionClosed(TransportError):
    """A send on a connection that has already ended."""


class Unsendable(TransportError):
    """A message that cannot be framed (not a JSON object, not valid UTF-8
    JSON, or larger than ``max_frame_size``); nothing was written and the
    connection goes on."""


class End(enum.Enum):
    """How a connection ended."""

    CLEAN = "clean"
    """The peer closed it at a frame boundary."""
    LOST = "lost"
    """Reset, truncated frame, broken stream, or a peer that stopped reading."""
    LOCAL = "local"
    """This side closed it."""


def check_tcp_keepalive(seconds: object) -> float | None:
    """Return ``seconds`` (None: off) if it is a usable keepalive time, else raise LocalProtocolError."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise LocalProtocolError(f"the TCP keepalive must be seconds, not {type(seconds).__name__}", "D-WIRE")
    if not (math.isfinite(seconds) and seconds >= 1):
        raise LocalProtocolError(f"the TCP keepalive must be at least 1 second (got {seconds!r})", "D-WIRE")
    return float(seconds)


def set_tcp_keepalive(sock: Any, seconds: float) -> None:
    """D-WIRE: turn on TCP keepalive on ``sock``: probe a connection silent for
    ``seconds``, then every ``seconds / KEEPALIVE_PROBES`` (at least 1 s); after
    ``KEEPALIVE_PROBES`` unanswered probes the kernel resets it. The timings are
    set where the platform has the options (TCP_KEEPIDLE or macOS's
    TCP_KEEPALIVE, TCP_KEEPINTVL, TCP_KEEPCNT); elsewhere its defaults apply."""
    idle = max(1, round(seconds))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_option = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
    timings = (
        (idle_option, idle),
        (getattr(socket, "TCP_KEEPINTVL", None), max(1, round(seconds / KEEPALIVE_PROBES))),
        (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
    )
    for option, value in timings:
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class FramedConnection:
    """One connection over an asyncio stream pair: whole messages in and out.

    One task receives at a time; any task may send.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        byte_order: ByteOrder = "big",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        tcp_keepalive: float | None = None,
    ) -> None:
        self.byte_order = check_byte_order(byte_order)
        self.max_frame_size = max_frame_size
        #: how the connection ended; None while it is open
        self.end: End | None = None
        self.peer = _address(writer.get_extra_info("peername"))
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder(max_frame_size, self.byte_order)
        self._frames: deque[dict[str, Any]] = deque()
        self._lost: ConnectionLost | None = None
        self._max_send_buffer, self._send_timeout = max_send_buffer, send_timeout
        keepalive = check_tcp_keepalive(tcp_keepalive)
        if keepalive is not None:
            set_tcp_keepalive(writer.get_extra_info("socket"), keepalive)
        writer.transport.set_write_buffer_limits(high=max_send_buffer)

    @property
    def closed(self) -> bool:
        """True once the connection has ended, whichever way (:attr:`end`)."""
        return self.end is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The stream's transport information (``"socket"``, ``"peercert"``, ...)."""
        return self._writer.get_extra_info(name, default)

    # -- receiving
    async def recv(self) -> dict[str, Any] | None:
        """The next message, a JSON object; None once the peer closed the
        connection at a frame boundary (:attr:`end` is CLEAN) or this side
        closed it (LOCAL). Raises :class:`ConnectionLost` when the connection
        was reset, ended inside a frame or broke the stream (logged, closed;
        :attr:`end` is LOST)."""
        while not self._frames:
            if self._lost is not None:
                raise self._lost.with_traceback(None)
            if self.end is not None:
                return None
            try:
                data = await self._reader.read(_CHUNK)
            except OSError as error:  # reset by the peer, keepalive timeout, TLS failure
                if self.end is None:
                    self._lose(ConnectionLost(f"connection to {self.peer} lost: {error}", cause=error))
                continue
            if self.end is not None:  # closed (or lost) while the read waited
                continue
            try:
                if not data:
                    self._decoder.end_of_stream()
                    logger.info("%s closed the connection", self.peer)
                    await self._close(End.CLEAN)
                    continue
                try:
                    frames = self._decoder.feed(data)
                except FramingError as error:  # what came before the defect is delivered first
                    self._frames.extend(decode_json(frame) for frame in error.frames)
                    raise
                self._frames.extend(decode_json(frame) for frame in frames)
            except TruncatedFrame as error:
                self._lose(
                    ConnectionLost(f"{self.peer} ended the connection inside a {error.message}", cause=error)
                )
            except FramingError as error:
                self._lose(ConnectionLost(f"broken stream from {self.peer}: {error.message}", cause=error))
        return self._frames.popleft()

    # -- sending
    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one message (a JSON object). Raises :class:`Unsendable` for
        one that cannot be framed (nothing is written), :class:`ConnectionClosed`
        once the connection has ended, :class:`ConnectionLost` when it is lost
        while sending (:class:`SendBufferFull`: the peer does not read)."""
        if self._lost is not None:
            raise ConnectionClosed(f"the connection to {self.peer} was lost: {self._lost.message}")
        if self.end is not None or self._writer.is_closing():
            raise ConnectionClosed(f"the connection to {self.peer} is closed")
        try:
            frame = encode_json(message, byte_order=self.byte_order, max_frame_size=self.max_frame_size)
        except LocalProtocolError as error:
            raise Unsendable(error.message, error.rule) from error
        self._writer.write(frame)
        try:  # drain() waits only while the buffer holds more than max_send_buffer
            async with asyncio.timeout(self._send_timeout):
                await self._writer.drain()
        except TimeoutError:
            pending = self._writer.transport.get_write_buffer_size()
            self._lose(
                SendBufferFull(
                    f"{self.peer} is not reading: {pending} bytes unsent exceed the send buffer bound of"
                    f" {self._max_send_buffer} bytes for {self._send_timeout:g} s",
                    "D-BOUND",
                )
            )
            raise self._ended() from None
        except OSError as error:
            if self.end is None:
                self._lose(ConnectionLost(f"connection to {self.peer} lost: {error}", cause=error))
            raise self._ended() from error

    # -- ending
    async def close(self) -> None:
        """Close the connection cleanly (idempotent): what was sent is flushed,
        then the peer sees the end of the stream at a frame boundary."""
        await self._close(End.LOCAL)

    def abort(self) -> None:
        """Drop the connection at once with a reset (idempotent): the peer sees
        a loss, not a clean close; anything unsent is discarded."""
        if self.end is None:
            self.end = End.LOCAL
            self._reset()

    async def _close(self, end: End) -> None:
        if self.end is not None:
            return
        self.end = end
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_WAIT)
        except (TimeoutError, OSError):
            self._writer.transport.abort()

    def _lose(self, error: ConnectionLost) -> None:
        """Log why, drop the connection at once (a reset: the peer must not take
        it for a clean end), and keep ``error`` for :meth:`recv`."""
        logger.warning("%s; connection closed", error.message)
        self._lost = error
        self.end = End.LOST
        self._reset()

    def _reset(self) -> None:
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self._writer.transport.abort()

    def _ended(self) -> TransportError:
        """The error for a send on a connection that has just ended."""
        return self._lost or ConnectionClosed(f"the connection to {self.peer} is closed")


def _address(peername: object) -> str:
    """``host:port`` of a socket address (IPv6 in brackets); anything else as it is."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername)


Handler = Callable[[FramedConnection], Awaitable[None]]


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    ssl: _ssl.SSLContext | None = None,
    ssl_handshake_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    byte_order: ByteOrder = "big",
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    tcp_keepalive: float | None = None,
) -> asyncio.Server:
    """Listen (the bridge side). Each connection (after its TLS handshake, with
    ``ssl``) is given to ``handler`` as a :class:`FramedConnection`, and closed
    when the handler returns. Returns the listening server."""
    check_byte_order(byte_order)
    check_tcp_keepalive(tcp_keepalive)

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FramedConnection(
            reader,
            writer,
            byte_order=byte_order,
            max_frame_size=max_frame_size,
            max_send_buffer=max_send_buffer,
            send_timeout=send_timeout,
            tcp_keepalive=tcp_keepalive,
        )
        try:
            await handler(conn)
        except TransportError as error:
            logger.debug("connection from %s ended: %s", conn.peer, error)
        except asyncio.CancelledError:  # shutting down; asyncio 3.11 would log a cancelled callback
            logger.debug("connection from %s cancelled", conn.peer)
        except Exception:
            logger.exception("handler failed on the connection from %s", conn.peer)
        finally:
            await conn.close()

    return await asyncio.start_server(
        accepted, host, port, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout if ssl else None
    )


async def connect(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    byte_order: ByteOrder = "big",
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    tcp_keepalive: float | None = None,
) -> FramedConnection:
    """Connect (the client side), TLS included; ``timeout`` bounds the TCP and
    TLS handshakes. Raises OSError (ssl.SSLError for a refused certificate) or
    TimeoutError."""
    check_byte_order(byte_order)
    check_tcp_keepalive(tcp_keepalive)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname=(server_hostname or host) if ssl else None
        )
    return FramedConnection(
        reader,
        writer,
        byte_order=byte_order,
        max_frame_size=max_frame_size,
        max_send_buffer=max_send_buffer,
        send_timeout=send_timeout,
        tcp_keepalive=tcp_keepalive,
    )


def backoff_delays(base: float = 0.5, factor: float = 2.0, cap: float = 30.0) -> Iterator[float]:
    """The delays between connection attempts: base, base*factor, ... capped."""
    delay = base
    while True:
        yield min(delay, cap)
        delay = min(delay * factor, cap)


async def connect_with_backoff(
    host: str,
    port: int,
    *,
    base: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    max_attempts: int | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_retry: Callable[[int, float, BaseException], object] | None = None,
    **options: Any,
) -> FramedConnection:
    """:func:`connect` until it succeeds, sleeping per :func:`backoff_delays`
    between attempts; ``max_attempts`` None retries forever. ``on_retry(attempt,
    delay, error)`` is called before each sleep. The last error is raised.
    ``options`` go to :func:`connect`."""
    delays = backoff_delays(base, factor, cap)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect(host, port, **options)
        except (OSError, TimeoutError) as error:
            if max_attempts is not None and attempt >= max_attempts:
                logger.warning("giving up on %s:%s after %d attempts: %s", host, port, attempt, error)
                raise
            delay: float = next(delays)
            logger.info("connect to %s:%s failed (%s); retry in %g s", host, port, error, delay)
            if on_retry is not None:
                on_retry(attempt, delay, error)
            await sleep(delay)


def client_ssl_context(
    cafile: str | None = None, *, certfile: str | None = None, keyfile: str | None = None
) -> _ssl.SSLContext:
    """A client context: verify the server against ``cafile`` (system CAs when
    None), present ``certfile``/``keyfile`` when the bridge asks for one."""
    context = _ssl.create_default_context(_ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def server_ssl_context(
    certfile: str, keyfile: str | None = None, *, cafile: str | None = None
) -> _ssl.SSLContext:
    """A server context with its certificate; with ``cafile``, clients must
    present a certificate signed by it."""
    context = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        context.load_verify_locations(cafile)
        context.verify_mode = _ssl.CERT_REQUIRED
    return context

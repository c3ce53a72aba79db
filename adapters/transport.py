"""The framed TCP transport: thin asyncio around the sans-IO codec of :mod:`adapters.framing`.

Our D-WIRE decisions for protocol index 0 (the transport's own messages; each
is a JSON object ``{"headers": {"type": T}, "properties": {...}}``):

- ``transport.hello`` (properties ``role`` = ``client``): the client's first
  frame after connecting (and after the TLS handshake, if any).
- ``transport.welcome`` (properties ``index`` = decimal string, 1..255): the
  server's answer; CTI messages then travel on that protocol index (default
  1). Anything else as first frame is refused: ERROR, then close.
- ``transport.error`` (properties ``message``): the sender found the peer's
  stream unusable (no boundary, frame too large, bad handshake, idle too
  long) and closes the socket after it.
- ``transport.bye``: the sender is going away on purpose; the peer must not
  treat the close as a failure (an adapter does not reconnect after it).
- ``transport.ping`` / ``transport.pong``: keepalive. A side with a keepalive
  interval sends a ping when it has received nothing for that long; the other
  side answers with a pong. A side with an idle timeout closes the connection
  (ERROR first) when nothing at all arrived for that long: a half-open
  connection does not live forever. Unknown index-0 types are logged and
  ignored; a frame on an index that was not negotiated is refused.

Bounds (D-BOUND): a frame's contents are refused above ``max_frame_size``
before they are read; the bytes queued for a peer that does not read are
bounded by ``max_send_buffer`` (beyond it a send waits at most
``send_timeout`` seconds, then the connection is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, NoReturn

from adapters.framing import (
    CTI_INDEX,
    DEFAULT_MAX_FRAME_SIZE,
    TRANSPORT_INDEX,
    BadContents,
    Frame,
    FrameDecoder,
    FramingError,
    decode_json,
    encode_json,
    error_frame,
)
from fsm.errors import RemoteProtocolError

logger = logging.getLogger("telephony_fsm.transport")

HELLO: Final = {"headers": {"type": "transport.hello"}, "properties": {"role": "client"}}
BYE: Final = {"headers": {"type": "transport.bye"}}
PING: Final = {"headers": {"type": "transport.ping"}}
PONG: Final = {"headers": {"type": "transport.pong"}}
DEFAULT_MAX_SEND_BUFFER: Final = 4 * DEFAULT_MAX_FRAME_SIZE
DEFAULT_SEND_TIMEOUT: Final = 10.0
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
_CHUNK: Final = 1 << 16
_INDEXES: Final = frozenset(str(i) for i in range(1, 256))  # a CTI index assigned by the welcome
_LINGER: Final = 1.0  # seconds spent draining the peer's bytes after an ERROR frame


class TransportError(RemoteProtocolError):
    """The connection cannot go on (rule D-WIRE unless said otherwise)."""

    def __init__(self, message: str, rule: str = "D-WIRE") -> None:
        super().__init__(message, rule)


class HandshakeError(TransportError):
    """The negotiation on protocol index 0 failed."""


class PeerError(TransportError):
    """The peer sent ``transport.error`` and closed."""


class IdleTimeout(TransportError):
    """Nothing arrived within the idle timeout (a half-open connection)."""


class SendBufferFull(TransportError):
    """The peer stopped reading and the send buffer bound was reached (D-BOUND)."""


class ConnectionClosed(TransportError):
    """The connection is closed or was lost."""


def _message_type(obj: object) -> str:
    headers = obj.get("headers") if isinstance(obj, dict) else None
    kind = headers.get("type") if isinstance(headers, dict) else None
    return kind if isinstance(kind, str) else ""


def _property(obj: object, name: str) -> object:
    properties = obj.get("properties") if isinstance(obj, dict) else None
    return properties.get(name) if isinstance(properties, dict) else None


class FramedConnection:
    """One transport connection over an asyncio stream pair.

    :meth:`recv` returns CTI messages and handles index-0 frames itself;
    keepalive pings and the idle timeout run while a :meth:`recv` is waiting.
    One task receives at a time; any task may send.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        index: int = CTI_INDEX,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        idle_timeout: float | None = None,
        keepalive: float | None = None,
    ) -> None:
        self.index = index
        self.max_frame_size = max_frame_size
        self.bye_received = False
        self.closed = False
        self._negotiated = False
        self.peer = str(writer.get_extra_info("peername"))
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder(max_frame_size)
        self._frames: deque[Frame] = deque()
        self._max_send_buffer, self._send_timeout = max_send_buffer, send_timeout
        self._idle_timeout, self._keepalive = idle_timeout, keepalive
        self._last_received = self._last_ping = asyncio.get_running_loop().time()
        writer.transport.set_write_buffer_limits(high=max_send_buffer)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The stream's transport information (``"socket"``, ``"peercert"``, ...)."""
        return self._writer.get_extra_info(name, default)

    # -- receiving
    async def recv(self) -> object | None:
        """The next CTI message as decoded JSON; None once the peer closed cleanly
        (:attr:`bye_received` tells whether it said bye). Raises FramingError
        (ERROR sent, connection closed) when the peer breaks the framing,
        BadContents for one frame that is not JSON (the connection stays
        usable), TransportError when the connection fails."""
        frame = await self.recv_frame()
        if frame is None:
            return None
        try:
            return decode_json(frame)
        except RecursionError:
            raise BadContents("frame contents are not valid JSON: nested too deeply") from None

    async def recv_frame(self) -> Frame | None:
        """Like :meth:`recv`, but the undecoded frame on the CTI index."""
        while not self.closed:
            frame = await self._next_frame()
            if frame is None:
                return None
            if frame.index == self.index:
                return frame
            if frame.index != TRANSPORT_INDEX:
                await self._fail(FramingError(f"frame on protocol index {frame.index}, not negotiated"))
            await self._transport_message(frame)
        return None

    async def _transport_message(self, frame: Frame) -> None:
        try:
            obj = decode_json(frame)
        except (BadContents, RecursionError):
            await self._fail(FramingError("a transport frame (index 0) is not JSON"))
        kind = _message_type(obj)
        if kind == "transport.bye":
            self.bye_received = True
            logger.info("%s said bye; closing", self.peer)
            await self.close()
        elif kind == "transport.error":
            text = f"{self.peer} reported an error: {_property(obj, 'message')}"
            logger.warning("%s; closing", text)
            await self.close()
            raise PeerError(text)
        elif kind == "transport.ping":
            await self._send(PONG, TRANSPORT_INDEX)
        elif kind != "transport.pong":
            logger.info("%s: ignored transport message %r", self.peer, kind)

    async def _next_frame(self) -> Frame | None:
        while not self._frames:
            if self.closed:
                return None
            data = await self._read_chunk()
            try:
                if not data:
                    self._decoder.end_of_stream()
                    await self.close()
                    return None
                self._frames.extend(self._decoder.feed(data))
            except FramingError as error:
                await self._fail(error)
        return self._frames.popleft()

    async def _read_chunk(self) -> bytes:
        """Read what arrives; meanwhile ping a silent peer and enforce the idle timeout."""
        loop = asyncio.get_running_loop()
        while True:
            idle_at = ping_at = None
            if self._negotiated and self._idle_timeout is not None:
                idle_at = self._last_received + self._idle_timeout
            if self._negotiated and self._keepalive is not None:
                ping_at = max(self._last_received, self._last_ping) + self._keepalive
            deadline = min((t for t in (idle_at, ping_at) if t is not None), default=None)
            try:
                async with asyncio.timeout_at(deadline):
                    data = await self._reader.read(_CHUNK)
            except TimeoutError:
                if deadline == idle_at:
                    await self._fail(IdleTimeout(f"nothing received for {self._idle_timeout:g} s"))
                self._last_ping = loop.time()
                await self._send(PING, TRANSPORT_INDEX)
                continue
            except OSError as error:  # reset by the peer, TLS failure
                await self._lost(error)
            self._last_received = loop.time()
            return data

    # -- sending
    async def send(self, obj: object) -> None:
        """Send one CTI message (a JSON-ready object) on the negotiated index."""
        await self._send(obj, self.index)

    async def bye(self) -> None:
        """Say ``transport.bye`` and close: a deliberate end, not a failure."""
        if not self.closed:
            with contextlib.suppress(TransportError):
                await self._send(BYE, TRANSPORT_INDEX)
        await self.close()

    async def _send(self, obj: object, index: int) -> None:
        if self.closed or self._writer.is_closing():
            raise ConnectionClosed(f"the connection to {self.peer} is closed")
        self._writer.write(encode_json(obj, index, self.max_frame_size))
        try:  # drain() waits only while the buffer holds more than max_send_buffer
            async with asyncio.timeout(self._send_timeout):
                await self._writer.drain()
        except TimeoutError:
            pending = self._writer.transport.get_write_buffer_size()
            error = SendBufferFull(
                f"{self.peer} is not reading: {pending} bytes unsent exceed the send buffer bound of"
                f" {self._max_send_buffer} bytes for {self._send_timeout:g} s",
                "D-BOUND",
            )
            logger.warning("%s; disconnecting", error.message)
            self._abort()
            raise error from None
        except OSError as error:
            await self._lost(error)

    # -- closing
    async def close(self) -> None:
        """Close the connection (idempotent); the peer sees end of stream."""
        if self.closed:
            return
        self.closed = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), _LINGER)
        except (TimeoutError, OSError):
            self._abort()

    def _abort(self) -> None:
        self.closed = True
        self._writer.transport.abort()

    async def _lost(self, error: OSError) -> NoReturn:
        self._abort()
        logger.warning("connection to %s lost: %s", self.peer, error)
        raise ConnectionClosed(f"connection to {self.peer} lost: {error}") from error

    async def _fail(self, error: RemoteProtocolError) -> NoReturn:
        """Send ERROR, close (reading what the peer still sends for a moment, so
        that the close does not reset the connection and lose the ERROR), raise."""
        logger.warning("%s: %s; sent an error frame and closed the connection", self.peer, error)
        if not self.closed and not self._writer.is_closing():
            # the peer may already be gone (it closed mid-frame): then there
            # is nobody to tell, and the close below is all that is left
            with contextlib.suppress(OSError):
                self._writer.write(error_frame(error.message))
                if self._writer.can_write_eof():
                    self._writer.write_eof()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_LINGER):
                            while await self._reader.read(_CHUNK):
                                pass
        await self.close()
        raise error

    # -- negotiation on index 0
    async def handshake_client(self, timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        """Send the hello, wait for the welcome, adopt the index it assigns."""
        await self._send(HELLO, TRANSPORT_INDEX)
        welcome = await self._first_message(timeout, "transport.welcome")
        if _message_type(welcome) == "transport.error":
            await self.close()
            raise HandshakeError(f"{self.peer} refused the hello: {_property(welcome, 'message')}")
        index = _property(welcome, "index")
        if _message_type(welcome) != "transport.welcome" or index not in _INDEXES:
            await self._fail(
                HandshakeError(f"expected transport.welcome with an index in 1..255, got {index!r}")
            )
        self.index = int(str(index))
        self._negotiated = True

    async def handshake_server(self, timeout: float = DEFAULT_HANDSHAKE_TIMEOUT) -> None:
        """Wait for the hello, answer with the welcome naming :attr:`index`."""
        hello = await self._first_message(timeout, "transport.hello")
        if _message_type(hello) != "transport.hello" or _property(hello, "role") != "client":
            await self._fail(HandshakeError("expected transport.hello with role client"))
        welcome = {"headers": {"type": "transport.welcome"}, "properties": {"index": str(self.index)}}
        await self._send(welcome, TRANSPORT_INDEX)
        self._negotiated = True

    async def _first_message(self, timeout: float, expected: str) -> object:
        try:
            async with asyncio.timeout(timeout):
                frame = await self._next_frame()
        except TimeoutError:
            await self._fail(HandshakeError(f"no {expected} within {timeout:g} s"))
        if frame is None:
            raise HandshakeError(f"{self.peer} closed the connection before {expected}")
        if frame.index != TRANSPORT_INDEX:
            await self._fail(HandshakeError(f"expected {expected} on index 0, got index {frame.index}"))
        try:
            return decode_json(frame)
        except (BadContents, RecursionError):
            await self._fail(HandshakeError(f"expected {expected}, got a frame that is not JSON"))


Handler = Callable[[FramedConnection], Awaitable[None]]


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    ssl: _ssl.SSLContext | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    index: int = CTI_INDEX,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    **options: Any,
) -> asyncio.Server:
    """Listen (the bridge side). Each connection is negotiated (welcome names
    ``index``), then given to ``handler``, and closed when it returns.
    ``options`` go to :class:`FramedConnection`. Returns the listening server."""

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FramedConnection(reader, writer, index=index, max_frame_size=max_frame_size, **options)
        try:
            await conn.handshake_server(handshake_timeout)
            await handler(conn)
        except (TransportError, FramingError) as error:
            logger.debug("connection from %s ended: %s", conn.peer, error)
        except asyncio.CancelledError:  # shutting down; asyncio 3.11 would log a cancelled callback
            logger.debug("connection from %s cancelled", conn.peer)
        except Exception:
            logger.exception("handler failed on the connection from %s", conn.peer)
        finally:
            await conn.close()

    return await asyncio.start_server(
        accepted, host, port, ssl=ssl, ssl_handshake_timeout=handshake_timeout if ssl else None
    )


async def connect(
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    **options: Any,
) -> FramedConnection:
    """Connect (the client side), TLS included, and negotiate; ``timeout``
    bounds each step. Raises OSError (ssl.SSLError for a refused certificate),
    TimeoutError or :class:`TransportError`."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname=(server_hostname or host) if ssl else None
        )
    conn = FramedConnection(reader, writer, max_frame_size=max_frame_size, **options)
    try:
        await conn.handshake_client(timeout)
    except BaseException:
        await conn.close()
        raise
    return conn


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
    delay, error)`` is called before each sleep. The last error is raised."""
    delays = backoff_delays(base, factor, cap)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await connect(host, port, **options)
        except (OSError, TimeoutError, TransportError, FramingError) as error:
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

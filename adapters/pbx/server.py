"""The PBX process (``telephony-fsm pbx``): the model of :mod:`adapters.pbx.core`
served over the CTI link to every adapter that connects, its script
(:mod:`adapters.pbx.script`) played beside.

A connection's frames are read here, with the bridge wire's decoder
(F-WIRE: a 4-byte length, then one UTF-8 JSON object; the length bounded by
``max_frame_size``, D-BOUND), so that hostile input is answered rather than
obeyed or crashed on (H-RUN-2's promise, for the link):

- a frame whose contents are not UTF-8, not JSON or not an object, that
  holds a lone surrogate, that is neither a hello nor a command, or whose
  hello or command is malformed or not allowed (a second hello, a command
  before the hello or for another connection's call or device): an
  ``error`` frame naming the problem; nothing changes and the connection
  goes on;
- a hello claiming a device another live connection holds: an ``error``
  frame, then that connection is closed;
- a length above ``max_frame_size`` (the stream cannot be followed past
  it): an ``error`` frame, then the connection is closed.

Every frame the PBX writes is valid UTF-8 JSON (:func:`adapters.framing.encode_json`).
The sending side of a connection is a :class:`adapters.transport.FramedConnection`
(its send buffer bound and send timeout: an adapter that stops reading is
dropped, not buffered for without limit); its ``recv`` is not used.

A connection that ends releases its devices; their calls go on, and their
events are held for the next claim (:class:`adapters.pbx.core.Pbx`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import IO, Any, Final

from adapters.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    BadContents,
    Frame,
    FrameDecoder,
    FramingError,
    TruncatedFrame,
    decode_json,
)
from adapters.pbx.core import DEFAULT_MAX_HELD, ClaimRefused, LinkError, Pbx, Sends
from adapters.pbx.script import WAIT_TIMEOUT, ScriptError, Step, describe, listed, stdin_script
from adapters.transport import FramedConnection, TransportError
from fsm.codec import dumps
from fsm.messages import unclean

logger = logging.getLogger("telephony_fsm.pbx")

#: how often a wait looks again at most, in seconds (it is woken by every change)
POLL: Final = 0.2
_CHUNK: Final = 1 << 16
#: the longest error text sent, in characters (a frame may quote a long value)
MAX_ERROR: Final = 1000
#: how long a connection closed after an error frame is read on (and what
#: comes discarded), so that the peer sees the frame and a clean end, not a reset
LINGER: Final = 1.0
#: the frames a peer may send
_FRAME_FORM: Final = 'a frame is {"hello": ...} or {"command": ...}'


class WaitTimedOut(Exception):
    """A wait of the script that did not come true in time."""


#: exit codes of :func:`run_pbx`
OK, FAILED, BAD_SCRIPT = 0, 1, 2


class PbxServer:
    """The PBX, its connections and its script."""

    def __init__(
        self, pbx: Pbx, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, trace: IO[str] | None = None
    ) -> None:
        self.pbx = pbx
        self.max_frame_size = max_frame_size
        self.trace = trace
        #: connection number -> its connection, while it is open
        self.conns: dict[int, FramedConnection] = {}
        self._numbers = itertools.count(1)
        #: set once an adapter's hello was accepted
        self.ever_claimed = asyncio.Event()
        #: set at every change a wait may be waiting for
        self.changed = asyncio.Event()

    def record(self, entry: dict[str, Any]) -> None:
        """One line of ``--trace``: every frame in and out, script step and connection."""
        if self.trace is not None:
            self.trace.write(dumps(entry) + "\n")
            self.trace.flush()

    # -- sending

    async def deliver(self, sends: Sends) -> None:
        for number, frame in sends:
            assert isinstance(number, int)
            await self.send(number, frame)

    async def send(self, number: int, frame: dict[str, Any]) -> None:
        conn = self.conns.get(number)
        if conn is None or conn.closed:
            return
        self.record({"to": number, "frame": frame})
        try:
            await conn.send(frame)
        except TransportError as exc:  # lost, or not reading (D-BOUND): its reader sees the end
            logger.warning("cannot send to adapter %d at %s: %s", number, conn.peer, exc.message)

    async def error(self, number: int, text: str) -> None:
        if len(text) > MAX_ERROR:
            text = text[: MAX_ERROR - 1] + "\u2026"
        conn = self.conns.get(number)
        logger.warning("adapter %d at %s: %s", number, conn.peer if conn else "?", text)
        await self.send(number, {"error": text})

    # -- a connection

    async def accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FramedConnection(reader, writer, max_frame_size=self.max_frame_size)
        number = next(self._numbers)
        self.conns[number] = conn
        self.record({"connection": number, "peer": conn.peer})
        logger.info("adapter %d connected from %s", number, conn.peer)
        try:
            if await self._read(number, conn, reader):
                await _linger(writer, reader)
        except asyncio.CancelledError:  # shutting down
            pass
        except Exception:  # a bug: that connection ends, the PBX goes on
            logger.exception("adapter %d at %s: the connection failed", number, conn.peer)
        finally:
            devices = self.pbx.devices_of(number)
            self.pbx.closed(number)
            del self.conns[number]
            with contextlib.suppress(Exception):
                await conn.close()
            self.record({"closed": number})
            freed = f"; device(s) {', '.join(devices)} free" if devices else ""
            logger.info("adapter %d at %s disconnected%s", number, conn.peer, freed)
            self.changed.set()

    async def _read(self, number: int, conn: FramedConnection, reader: asyncio.StreamReader) -> bool:
        """Read and handle frames until the connection ends (False) or this
        side closes it after an error frame (True)."""
        decoder = FrameDecoder(self.max_frame_size)
        while not conn.closed:
            try:
                data = await reader.read(_CHUNK)
            except OSError as exc:
                logger.info("adapter %d at %s: connection lost: %s", number, conn.peer, exc)
                return False
            if conn.closed:
                return False
            if not data:
                try:
                    decoder.end_of_stream()
                except TruncatedFrame as exc:
                    logger.warning("adapter %d at %s: %s", number, conn.peer, exc.message)
                return False
            try:
                frames = decoder.feed(data)
            except FramingError as exc:  # a length above max_frame_size: the stream cannot be followed
                for frame in exc.frames:
                    if not await self._frame(number, conn, frame):
                        return True
                await self.error(number, f"{exc.message}; closing the connection")
                return True
            for frame in frames:
                if not await self._frame(number, conn, frame):
                    return True
        return False

    async def _frame(self, number: int, conn: FramedConnection, frame: Frame) -> bool:
        """Handle one frame; False to close the connection."""
        try:
            message = decode_json(frame)
        except BadContents as exc:
            self.record({"from": number, "bad": exc.message})
            await self.error(number, exc.message)
            return True
        defect = unclean(message)
        if defect is not None:
            self.record({"from": number, "bad": defect})
            await self.error(number, f"frame at offset {frame.offset}: {defect}")
            return True
        self.record({"from": number, "frame": message})
        if set(message) == {"hello"}:
            try:
                sends = self.pbx.hello(number, message["hello"])
            except ClaimRefused as exc:
                await self.error(number, f"hello refused: {exc}; closing the connection")
                return False
            except LinkError as exc:
                await self.error(number, f"hello refused: {exc}")
                return True
            logger.info(
                "adapter %d at %s holds device(s) %s",
                number,
                conn.peer,
                ", ".join(self.pbx.devices_of(number)) or "(none)",
            )
            await self.deliver(sends)
            self.ever_claimed.set()
            self.changed.set()
            return True
        if set(message) == {"command"}:
            try:
                sends = self.pbx.command(number, message["command"])
            except LinkError as exc:
                await self.error(number, str(exc))
                return True
            await self.deliver(sends)
            self.changed.set()
            return True
        keys = ", ".join(sorted(map(repr, message))) or "none"
        await self.error(number, f"{_FRAME_FORM}, not one with key(s) {keys}")
        return True

    # -- the script

    async def until(self, holds: Callable[[], bool], timeout: float) -> bool:
        """Whether ``holds()`` came true within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not holds():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(POLL, remaining))
        return True

    def condition(self, wait: dict[str, str]) -> Callable[[], bool]:
        pbx = self.pbx

        def holds() -> bool:
            if "connected" in wait:
                return wait["connected"] in pbx.owner
            if "device" in wait:
                return pbx.device_state(wait["device"]) == wait["state"]
            return pbx.call_state(wait["call"]) == wait["state"]

        return holds

    async def play(self, steps: AsyncIterator[tuple[int, Step]]) -> None:
        """Play the script; raises WaitTimedOut or ScriptError naming the line."""
        async for number, step in steps:
            self.record({"script": number, "step": step})
            if "wait" in step:
                timeout = float(step.get("timeout", WAIT_TIMEOUT))
                if not await self.until(self.condition(step["wait"]), timeout):
                    raise WaitTimedOut(
                        f"script line {number}: waited {timeout:g} s for {describe(step['wait'])}"
                    )
            elif "sleep" in step:
                await asyncio.sleep(float(step["sleep"]))
            else:
                try:
                    sends = self.pbx.play(step)
                except LinkError as exc:
                    raise ScriptError(f"script line {number}: {exc}") from None
                await self.deliver(sends)
                self.changed.set()


async def _linger(writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
    """End this side of the stream (the error frame is sent, then the end),
    and read what the peer still sends for a moment: closing with unread
    bytes would reset the connection and could lose the error frame."""
    with contextlib.suppress(OSError, RuntimeError):
        if writer.can_write_eof():
            writer.write_eof()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(LINGER):
            while await reader.read(_CHUNK):
                pass


async def run_pbx(
    host: str,
    port: int,
    script: list[tuple[int, Step]] | str | None = None,
    *,
    exit_when_done: bool = False,
    max_held: int = DEFAULT_MAX_HELD,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    trace: IO[str] | None = None,
    on_listening: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve until ``stop`` is set (0), or with ``exit_when_done`` until the
    script is over and, after an adapter's hello was accepted, no adapter
    holds a claim any more (0). 1 when a wait of the script times out (or the
    script task fails), 2 for a script line that cannot be played (named).
    ``script``: checked steps (:func:`adapters.pbx.script.load_script`),
    ``"-"`` for stdin, or None. Raises OSError when it cannot listen."""
    stop = stop or asyncio.Event()
    state = PbxServer(Pbx(max_held=max_held), max_frame_size=max_frame_size, trace=trace)
    server = await asyncio.start_server(state.accepted, host, port)
    bound = server.sockets[0].getsockname()[1]
    logger.info("PBX listening on %s:%s", host, bound)
    if on_listening is not None:
        on_listening(bound)
    code: list[int] = []

    async def script_then_idle() -> None:
        try:
            if script == "-":
                await state.play(stdin_script())
            elif isinstance(script, list):
                await state.play(listed(script))
        except WaitTimedOut as exc:
            logger.error("%s", exc)
            code.append(FAILED)
            stop.set()
            return
        except ScriptError as exc:
            logger.error("the script stops at a line that cannot be played: %s", exc)
            code.append(BAD_SCRIPT)
            stop.set()
            return
        if script is not None:
            logger.info("the script is over")
        if exit_when_done:
            await state.ever_claimed.wait()
            await state.until(lambda: not state.pbx.claims, float("inf"))
            logger.info("no adapter is connected: done")
            stop.set()

    def watch(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("the script task failed", exc_info=task.exception())
            code.append(FAILED)
            stop.set()

    task = asyncio.create_task(script_then_idle(), name="script")
    task.add_done_callback(watch)
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        for conn in list(state.conns.values()):
            with contextlib.suppress(Exception):
                await conn.close()
        await server.wait_closed()
    return code[0] if code else OK

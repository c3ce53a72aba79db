"""Tests of the framed TCP transport (F-WIRE, D-WIRE, D-BOUND) and of ``serve``
over it (its end-of-run rule, D-LIFE-5, D-DUP).

Real loopback sockets only (127.0.0.1, port 0); every test runs under an
asyncio timeout. Assertions are written ``expected == actual``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import math
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from adapters.bridge_server import BridgeProcess
from adapters.framing import BadContents, ByteOrder, FrameTooLarge, TruncatedFrame
from adapters.serve import main as serve_main
from adapters.serve import run_serve
from adapters.simulated import SimulatedSwitch
from adapters.transport import (
    KEEPALIVE_PROBES,
    ConnectionClosed,
    ConnectionLost,
    End,
    FramedConnection,
    SendBufferFull,
    TransportError,
    Unsendable,
    backoff_delays,
    client_ssl_context,
    connect,
    connect_with_backoff,
    serve,
    server_ssl_context,
)
from fsm.errors import LocalProtocolError
from fsm.policy import Policy
from fsm.switch_events import SwitchEvent
from tests.driver import CH
from tests.scenario import ACCEPT, INIT, assert_failure, itarget, login_lines, query, request, success

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LIMIT = 10.0  # seconds: the bound of every test
TRANSPORT_LOG = "telephony_fsm.transport"
exit_ok, exit_failed, exit_usage = 0, 1, 2
R = TypeVar("R")

#: A message in the envelope of F-ENV (the transport asks only for a JSON object)
EMPTY: dict[str, Any] = {"header": {}, "body": {}}
EMPTY_FRAME_SIZE = 4 + len(b'{"header":{},"body":{}}')  # 27: where the next frame starts


def run(coro: Coroutine[Any, Any, R]) -> R:
    async def bounded() -> R:
        async with asyncio.timeout(LIMIT):
            return await coro

    return asyncio.run(bounded())


def event(name: str, **body: Any) -> dict[str, Any]:
    return {"header": {"type": "cti.event", "name": name, "target": "s1.g1.c1"}, "body": body}


def frame_of(contents: bytes, byte_order: ByteOrder = "big") -> bytes:
    """F-WIRE, written out by hand: a 4-byte length, then the contents."""
    return len(contents).to_bytes(4, byte_order) + contents


def json_frame(message: object, byte_order: ByteOrder = "big") -> bytes:
    return frame_of(json.dumps(message, separators=(",", ":")).encode(), byte_order)


Handler = Callable[[FramedConnection], Awaitable[None]]


async def listen(handler: Handler, **options: Any) -> tuple[asyncio.Server, int]:
    server = await serve(HOST, 0, handler, **options)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


async def echo(conn: FramedConnection) -> None:
    while (msg := await conn.recv()) is not None:
        await conn.send(msg)


def reset(sock: Any) -> None:
    """Make the next close of ``sock`` a reset (RST), not a clean FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Raw:
    """A peer that speaks bytes, to send what a FramedConnection never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection(HOST, port))

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def exactly(self, size: int) -> bytes:
        return await self.reader.readexactly(size)

    async def until_closed(self) -> bytes:
        """Everything the peer still sends, up to its close (FIN or reset)."""
        data = b""
        try:
            while chunk := await self.reader.read(1 << 16):
                data += chunk
        except ConnectionResetError:
            pass
        self.writer.close()
        return data

    async def nothing_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.reader.read(1)
        except TimeoutError:
            return True
        return False


class Outcome:
    """What a server-side handler met: the messages, the error that ended it, how it ended."""

    def __init__(self) -> None:
        self.messages: list[object] = []
        self.error: BaseException | None = None
        self.end: End | None = None
        self.received = asyncio.Event()
        self.done = asyncio.Event()

    async def handler(self, conn: FramedConnection) -> None:
        try:
            while (msg := await conn.recv()) is not None:
                self.messages.append(msg)
                self.received.set()
        except Exception as error:
            self.error = error
        finally:
            self.end = conn.end
            self.done.set()


def transport_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == TRANSPORT_LOG and r.levelno >= logging.WARNING
    ]


# --------------------------------------------------------------------------
# The wire on real sockets (F-WIRE, D-WIRE).


def test_f_wire_round_trip() -> None:
    async def main() -> None:
        server, port = await listen(echo)
        async with server:
            client = await connect(HOST, port)
            messages = [event("channel.ready"), event("interaction.datachanged", n=1), EMPTY, {}]
            for msg in messages:
                await client.send(msg)
            assert messages == [await client.recv() for _ in messages]
            assert client.end is None
            await client.close()
            assert End.LOCAL == client.end
            assert await client.recv() is None

    run(main())


def test_f_wire_only_frames_on_the_wire_from_the_first_byte() -> None:
    """F-WIRE: no handshake: the first bytes a client writes are a frame, and
    what comes back is exactly a frame (4-byte big-endian length, then the
    JSON); nothing is sent unprompted."""

    async def main() -> None:
        async def reply(conn: FramedConnection) -> None:
            got = await conn.recv()
            assert got is not None
            await conn.send(event("channel.ready", echoed=got))
            assert await conn.recv() is None

        server, port = await listen(reply)
        async with server:
            raw = await Raw.open(port)
            assert await raw.nothing_within(0.2)  # the bridge side says nothing first
            raw.write(json_frame(EMPTY))
            expected = json_frame(event("channel.ready", echoed=EMPTY))
            assert expected == await raw.exactly(len(expected))
            assert await raw.nothing_within(0.2)  # no keepalive, no other message
            raw.writer.close()

    run(main())


def test_d_wire_little_endian_by_option() -> None:
    async def main() -> None:
        server, port = await listen(echo, byte_order="little")
        async with server:
            raw = await Raw.open(port)
            sent = json_frame(event("little"), "little")
            raw.write(sent)
            assert sent == await raw.exactly(len(sent))  # echoed in the same byte order
            raw.writer.close()
            client = await connect(HOST, port, byte_order="little")
            msg = event("x" * 300)  # a length with two non-zero bytes
            await client.send(msg)
            assert msg == await client.recv()
            await client.close()

    run(main())


def test_d_wire_byte_order_and_keepalive_options_are_checked() -> None:
    async def main() -> None:
        for options in ({"byte_order": "network"}, {"tcp_keepalive": 0}, {"tcp_keepalive": math.nan}):
            with pytest.raises(LocalProtocolError):
                await connect(HOST, 9, **options)
            with pytest.raises(LocalProtocolError):
                await serve(HOST, 0, echo, **options)

    run(main())


def test_many_messages_and_large_ones() -> None:
    limit = 64 * 1024

    def of_size(size: int) -> dict[str, Any]:
        msg = event("big", text="")
        overhead = len(json.dumps(msg, separators=(",", ":")))
        msg["body"]["text"] = "\u00e9\u260e" * ((size - overhead) // 5) + "x" * ((size - overhead) % 5)
        assert size == len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())
        return msg

    async def main() -> None:
        server, port = await listen(echo, max_frame_size=limit)
        async with server:
            client = await connect(HOST, port, max_frame_size=limit)
            many = [event("n", n=str(i)) for i in range(2000)]
            for msg in many:
                await client.send(msg)
            assert many == [await client.recv() for _ in many]
            big = [of_size(limit), of_size(limit - 1), of_size(limit // 2)]
            for msg in big:
                await client.send(msg)
            assert big == [await client.recv() for _ in big]
            with pytest.raises(Unsendable) as excinfo:
                await client.send(of_size(limit + 1))  # refused before anything is written
            assert "exceeds the maximum frame size of 65536 bytes" in excinfo.value.message
            with pytest.raises(Unsendable):
                await client.send({"nan": math.nan})
            usable = {"still": "usable"}
            await client.send(usable)
            assert usable == await client.recv()
            await client.close()

    run(main())


@pytest.mark.parametrize(
    ("bad", "cause", "defect"),
    [
        (frame_of(b'{"a":"\xff"}'), BadContents, "contents are not UTF-8"),
        (frame_of(b"not json"), BadContents, "contents are not JSON"),
        (frame_of(b'[{"header":{},"body":{}}]'), BadContents, "contents are not a JSON object but an array"),
        (
            (1001).to_bytes(4, "big"),
            FrameTooLarge,
            "length 1001 exceeds the maximum frame size of 1000 bytes",
        ),
    ],
    ids=["not-utf8", "not-json", "not-an-object", "too-large"],
)
def test_d_wire_broken_stream_is_logged_and_closes_the_connection(
    caplog: pytest.LogCaptureFixture, bad: bytes, cause: type[Exception], defect: str
) -> None:
    """D-WIRE: a broken stream: the receiver logs the frame's offset and the
    defect and closes the connection; no error frame goes back (the protocol
    has none). A length above the maximum is refused with no contents sent."""

    async def main() -> bytes:
        outcome = Outcome()
        server, port = await listen(outcome.handler, max_frame_size=1000)
        async with server:
            raw = await Raw.open(port)
            raw.write(json_frame(EMPTY) + bad)
            got_back = await raw.until_closed()
            await outcome.done.wait()
        assert [EMPTY] == outcome.messages  # the frame before it was delivered
        assert isinstance(outcome.error, ConnectionLost)
        assert isinstance(outcome.error.cause, cause)
        assert End.LOST == outcome.end
        return got_back

    with caplog.at_level(logging.WARNING, logger=TRANSPORT_LOG):
        nothing = b""
        assert nothing == run(main())  # no error frame, nothing at all
    [line] = transport_warnings(caplog)  # one clear line
    assert "broken stream" in line and f"frame at offset {EMPTY_FRAME_SIZE}: {defect}" in line, line


@pytest.mark.parametrize(
    ("tail", "defect"),
    [
        (b"\x00\x00", "truncated: the stream ended after 2 of its 4 length bytes"),
        (b"\x00\x00\x00\x0a{}{", "truncated: the stream ended after 3 of its 10 bytes of contents"),
    ],
)
def test_d_wire_truncated_frame_is_logged_as_truncated(
    caplog: pytest.LogCaptureFixture, tail: bytes, defect: str
) -> None:
    """D-WIRE: a connection that ends inside a frame is logged as truncated, a loss."""

    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler)
        async with server:
            raw = await Raw.open(port)
            raw.write(json_frame(EMPTY) + tail)
            raw.writer.write_eof()
            await outcome.done.wait()
            raw.writer.close()
        assert [EMPTY] == outcome.messages
        assert isinstance(outcome.error, ConnectionLost)
        assert isinstance(outcome.error.cause, TruncatedFrame)
        assert End.LOST == outcome.end

    with caplog.at_level(logging.WARNING, logger=TRANSPORT_LOG):
        run(main())
    [line] = transport_warnings(caplog)
    assert f"frame at offset {EMPTY_FRAME_SIZE}: {defect}" in line, line


def test_clean_close_at_a_frame_boundary() -> None:
    """D-WIRE: the peer closing after a whole frame is a clean end: recv returns None."""

    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler)
        async with server:
            client = await connect(HOST, port)
            await client.send(EMPTY)
            await client.close()
            await outcome.done.wait()
        assert ([EMPTY], None, End.CLEAN) == (outcome.messages, outcome.error, outcome.end)
        assert End.LOCAL == client.end
        with pytest.raises(ConnectionClosed):
            await client.send(EMPTY)

    run(main())


def test_the_server_closing_is_a_clean_end_for_the_client() -> None:
    async def main() -> None:
        async def one_then_close(conn: FramedConnection) -> None:
            await conn.send(EMPTY)
            await conn.close()

        server, port = await listen(one_then_close)
        async with server:
            client = await connect(HOST, port)
            assert EMPTY == await client.recv()
            assert await client.recv() is None
            assert End.CLEAN == client.end
            assert await client.recv() is None  # and stays so

    run(main())


def test_a_reset_is_a_loss(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler)
        async with server:
            raw = await Raw.open(port)
            raw.write(json_frame(EMPTY))
            await outcome.received.wait()
            reset(raw.writer.get_extra_info("socket"))
            raw.writer.close()
            await outcome.done.wait()
        assert [EMPTY] == outcome.messages
        assert isinstance(outcome.error, ConnectionLost)
        assert isinstance(outcome.error.cause, ConnectionResetError)
        assert End.LOST == outcome.end

    with caplog.at_level(logging.WARNING, logger=TRANSPORT_LOG):
        run(main())
    [line] = transport_warnings(caplog)
    assert "lost" in line, line


def test_abort_is_a_loss_for_the_peer_and_close_is_not() -> None:
    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler)
        async with server:
            client = await connect(HOST, port)
            await client.send(EMPTY)
            await outcome.received.wait()
            client.abort()
            await outcome.done.wait()
            assert End.LOCAL == client.end
            assert await client.recv() is None
        assert isinstance(outcome.error, ConnectionLost)
        assert End.LOST == outcome.end

    run(main())


def test_d_wire_a_broken_stream_is_a_loss_for_the_sender_too() -> None:
    """D-WIRE: the receiver of a broken stream (here a byte order that differs:
    little-endian 23 read big-endian is 385875968, above the maximum) resets
    the connection, so the sender does not take it for a clean end."""

    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler, byte_order="big")
        async with server:
            client = await connect(HOST, port, byte_order="little")
            await client.send(EMPTY)
            with pytest.raises(ConnectionLost):
                await client.recv()
            assert End.LOST == client.end
            await outcome.done.wait()
        assert isinstance(outcome.error, ConnectionLost)
        assert isinstance(outcome.error.cause, FrameTooLarge)
        assert "length 385875968 exceeds" in outcome.error.message

    run(main())


def test_d_wire_tcp_keepalive_sets_so_keepalive_on_the_socket() -> None:
    """D-WIRE: idle connections are detected with TCP keepalive, an option."""
    server_side: list[dict[str, int]] = []

    def options(sock: Any) -> dict[str, int]:
        found = {"SO_KEEPALIVE": int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0)}
        for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
            if hasattr(socket, name):
                found[name] = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
        return found

    def expected(seconds: int) -> dict[str, int]:
        timings = {"TCP_KEEPIDLE": seconds, "TCP_KEEPINTVL": round(seconds / 3), "TCP_KEEPCNT": 3}
        return {"SO_KEEPALIVE": 1, **{k: v for k, v in timings.items() if hasattr(socket, k)}}

    async def main() -> None:
        async def record(conn: FramedConnection) -> None:
            server_side.append(options(conn.get_extra_info("socket")))
            await echo(conn)

        server, port = await listen(record, tcp_keepalive=60)
        async with server:
            client = await connect(HOST, port, tcp_keepalive=9)
            await client.send(EMPTY)
            assert EMPTY == await client.recv()
            assert expected(9) == options(client.get_extra_info("socket"))
            await client.close()
            plain = await connect(HOST, port)
            off = 0
            assert off == options(plain.get_extra_info("socket"))["SO_KEEPALIVE"]
            await plain.close()

    run(main())
    three = 3
    assert three == KEEPALIVE_PROBES
    assert expected(60) == server_side[0]


def test_slow_reader_is_disconnected_at_the_send_buffer_bound(caplog: pytest.LogCaptureFixture) -> None:
    """D-BOUND: a peer that stops reading cannot make the send buffer grow."""
    bound = 64 * 1024
    sent: list[int] = []  # sizes of the messages sent
    errors: list[BaseException] = []
    ends: list[End | None] = []

    async def flood(conn: FramedConnection) -> None:
        conn.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        chunk = event("flood", text="x" * 8192)
        try:
            for _ in range(100_000):
                await conn.send(chunk)
                sent.append(len(chunk["body"]["text"]))
        except SendBufferFull as error:
            errors.append(error)
        ends.append(conn.end)

    async def main() -> None:
        server, port = await listen(flood, max_send_buffer=bound, send_timeout=0.3)
        async with server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (HOST, port))
            while not errors:  # never read: the server's buffers fill up
                await asyncio.sleep(0.05)
            sock.close()

    with caplog.at_level(logging.WARNING, logger=TRANSPORT_LOG):
        run(main())
    rule = "D-BOUND"
    assert rule == getattr(errors[0], "rule", None)
    assert [End.LOST] == ends
    assert len(sent) < 10_000  # it stopped long before the loop's end
    unsent = int(str(errors[0]).split(" bytes unsent")[0].rsplit(" ", 1)[1])
    assert unsent <= bound + max(sent) + 100  # the buffer never held more than the bound and one frame
    assert any("not reading" in line for line in transport_warnings(caplog))


# --------------------------------------------------------------------------
# TLS (F-WIRE: TLS optional), with certificates made at test time.


def _self_signed(directory: Path, name: str) -> tuple[str, str]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    if shutil.which("openssl") is None:
        pytest.skip("no test certificate: the openssl command is not on PATH")
    directory = tmp_path_factory.mktemp("certs")
    return {name: _self_signed(directory, name) for name in ("bridge", "other", "client")}


def test_f_wire_tls_round_trip_with_keepalive(certs: dict[str, tuple[str, str]]) -> None:
    async def main() -> None:
        server, port = await listen(echo, ssl=server_ssl_context(*certs["bridge"]), byte_order="little")
        async with server:
            client = await connect(
                HOST, port, ssl=client_ssl_context(certs["bridge"][0]), byte_order="little", tcp_keepalive=5
            )
            assert client.get_extra_info("peercert") is not None
            sock = client.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            msg = event("over.tls")
            await client.send(msg)
            assert msg == await client.recv()
            await client.close()

    run(main())


def test_tls_wrong_certificate_is_refused(certs: dict[str, tuple[str, str]]) -> None:
    async def main() -> None:
        server, port = await listen(echo, ssl=server_ssl_context(*certs["bridge"]))
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(HOST, port, ssl=client_ssl_context(certs["other"][0]))
            good = await connect(HOST, port, ssl=client_ssl_context(certs["bridge"][0]))
            msg = {"server": "unharmed"}
            await good.send(msg)
            assert msg == await good.recv()
            await good.close()

    run(main())


def test_tls_client_certificate_required(certs: dict[str, tuple[str, str]]) -> None:
    async def main() -> None:
        context = server_ssl_context(*certs["bridge"], cafile=certs["client"][0])
        server, port = await listen(echo, ssl=context)
        async with server:
            cert, key = certs["client"]
            trusted = client_ssl_context(certs["bridge"][0], certfile=cert, keyfile=key)
            ok = await connect(HOST, port, ssl=trusted)
            msg = {"mutual": "tls"}
            await ok.send(msg)
            assert msg == await ok.recv()
            await ok.close()
            # TLS 1.3: the client learns it at its first read, as an alert or the end of the stream
            got: object = None
            try:
                refused = await connect(HOST, port, ssl=client_ssl_context(certs["bridge"][0]))
                await refused.send(msg)
                got = await refused.recv()
            except (OSError, TransportError):  # ssl.SSLError is an OSError
                pass
            assert got is None  # never echoed

    run(main())


# --------------------------------------------------------------------------
# Backoff.


def test_backoff_schedule() -> None:
    delays = backoff_delays(base=0.1, factor=2.0, cap=1.0)
    expected = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert expected == [next(delays) for _ in range(6)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def test_connect_with_backoff_gives_up_after_max_attempts() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await connect_with_backoff(
                HOST, _free_port(), base=1.0, factor=3.0, cap=5.0, max_attempts=5, sleep=fake_sleep
            )

    run(main())
    expected = [1.0, 3.0, 5.0, 5.0]  # 4 sleeps between 5 attempts
    assert expected == slept


def test_connect_with_backoff_succeeds_once_the_bridge_listens() -> None:
    slept: list[float] = []

    async def main() -> None:
        port = _free_port()
        servers: list[asyncio.Server] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 3:
                servers.append(await serve(HOST, port, echo))

        conn = await connect_with_backoff(HOST, port, base=0.5, factor=2.0, cap=30.0, sleep=fake_sleep)
        msg = {"at": "last"}
        await conn.send(msg)
        assert msg == await conn.recv()
        await conn.close()
        servers[0].close()

    run(main())
    expected = [0.5, 1.0, 2.0]
    assert expected == slept


# --------------------------------------------------------------------------
# serve against a bridge played here.

IT1 = itarget("c1")
OFFERED = {"kind": "offered", "call": "c1", "device": "1001", "ani": "5551000"}


async def answer(conn: FramedConnection, msg: dict[str, Any], events: list[Any]) -> dict[str, Any]:
    """Send ``msg``; return its response, collecting the events before it."""
    await conn.send(msg)
    while True:
        got = await conn.recv()
        assert isinstance(got, dict), f"connection ended waiting for {msg}"
        if got["header"].get("requestId") == msg["header"]["requestId"]:
            return got
        events.append(got)


async def log_in(conn: FramedConnection, events: asyncio.Queue[object] | None = None) -> None:
    """The bridge's start-up and agent-1's login (tests.scenario.login_lines);
    with ``events``, the scripted switch's agent events are put there."""
    scripted = events is not None
    for line in login_lines("scripted" if scripted else "simulated"):
        if line["from"] == "switch":
            assert events is not None
            await events.put(line["event"])
            continue
        message = line["message"]
        if scripted and message["header"]["name"] in ("channel.request.activate", "channel.request.ready"):
            await conn.send(message)  # answered once the agent event has come
            continue
        await answer(conn, message, [])
    if scripted:
        while (got := await conn.recv()) is not None and got["header"].get("requestId") != "login-7":
            pass


async def switch_events(queue: asyncio.Queue[object]) -> AsyncIterator[object]:
    while True:
        yield await queue.get()


def alerting_snapshot() -> dict[str, Any]:
    return {
        "interaction-state": "ALERTING",
        "interaction-data": {"ani": "5551000"},
        "conversations": {"primary": {"id": "c1"}},
    }


def connections(trace: str) -> list[int]:
    """The ``{"connection": N}`` lines of a trace (harness.md "Traces")."""
    lines = [json.loads(line) for line in trace.splitlines()]
    return [line["connection"] for line in lines if "connection" in line]


def test_serve_answers_a_bridge() -> None:
    trace = io.StringIO()
    seen: list[Any] = []

    async def main() -> int:
        events: asyncio.Queue[object] = asyncio.Queue()

        async def bridge(conn: FramedConnection) -> None:
            await log_in(conn)
            await events.put(OFFERED)  # the customer calls
            created = await conn.recv()
            assert isinstance(created, dict)
            seen.append(created["header"]["name"])
            seen.append(await answer(conn, query(INIT, IT1, "r1")["message"], seen))
            seen.append(await answer(conn, request(ACCEPT, IT1, "r2")["message"], seen))
            await conn.close()

        server, port = await listen(bridge)
        async with server:
            return await run_serve(
                HOST, port, trace=trace, switch_events=switch_events(events), exit_on_close=True
            )

    assert exit_ok == run(main())
    expected = [
        "interaction.created",
        success(INIT, IT1, "r1", body=alerting_snapshot()),
        {"header": {"type": "cti.event", "name": "interaction.started", "target": IT1}, "body": {}},
        success(ACCEPT, IT1, "r2", body={}),
    ]
    assert expected == seen
    lines = [json.loads(line) for line in trace.getvalue().splitlines()]
    assert [1] == connections(trace.getvalue())
    assert {"connection": 1} == lines[0]  # events from outside: once connected
    from_switch = [
        line for line in lines if line.get("from") == "switch" and line["event"]["kind"] != "agent"
    ]
    assert [{"from": "switch", "event": OFFERED}] == from_switch[:1]
    answer_once = [{"to": "switch", "command": {"id": "cmd-3", "op": "answer", "call": "c1"}}]
    calls = [line for line in lines if line.get("to") == "switch" and "call" in line["command"]]
    assert answer_once == calls


class LossWatch(logging.Handler):
    """Sets ``lost`` when the adapter logs that it lost the bridge."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "lost" in record.getMessage():
            self.lost.set()


def test_serve_reconnects_keeping_its_engine() -> None:
    """D-LIFE-5: after a lost connection (a reset) serve reconnects; the bridge
    re-initializes and gets the current snapshot; D-DUP: a requestId answered
    before the loss is refused after it, and its switch command is not run
    twice. D-NEW: an interaction created while disconnected is announced after
    reconnecting."""
    trace = io.StringIO()
    first: list[Any] = []
    second: list[Any] = []

    async def main() -> int:
        events: asyncio.Queue[object] = asyncio.Queue()
        watch = LossWatch()
        logging.getLogger("telephony_fsm.serve").addHandler(watch)

        async def first_bridge(conn: FramedConnection) -> None:
            await log_in(conn)
            await events.put(OFFERED)
            first.append(await conn.recv())
            first.append(await answer(conn, query(INIT, IT1, "r1")["message"], first))
            first.append(await answer(conn, request(ACCEPT, IT1, "r2")["message"], first))
            server.close()  # stop listening, then reset the connection
            conn.abort()

        async def second_bridge(conn: FramedConnection) -> None:
            second.append(await conn.recv())  # held while disconnected
            second.append(await answer(conn, query(INIT, IT1, "r3")["message"], second))
            second.append(await answer(conn, request(ACCEPT, IT1, "r2")["message"], second))
            await conn.close()

        async def outage() -> asyncio.Server:
            await watch.lost.wait()
            await events.put({"kind": "offered", "call": "c2", "device": "1001"})  # while the bridge is away
            while '"interactionid":"c2"' not in trace.getvalue():
                await asyncio.sleep(0.01)
            return await serve(HOST, port, second_bridge)  # the bridge is back

        server, port = await listen(first_bridge)
        back = asyncio.create_task(outage())
        try:
            return await run_serve(
                HOST,
                port,
                trace=trace,
                switch_events=switch_events(events),
                backoff=(0.05, 2.0, 0.2),
                max_reconnects=20,
                exit_on_close=True,  # a loss is reconnected all the same
            )
        finally:
            logging.getLogger("telephony_fsm.serve").removeHandler(watch)
            (await back).close()

    assert exit_ok == run(main())
    created = {"header": {"type": "cti.event", "name": "interaction.created", "target": CH}}
    assert [
        {**created, "body": {"interactionid": "c1", "type": "telephony"}},
        success(INIT, IT1, "r1", body=alerting_snapshot()),
        {"header": {"type": "cti.event", "name": "interaction.started", "target": IT1}, "body": {}},
        success(ACCEPT, IT1, "r2", body={}),
    ] == first
    assert {**created, "body": {"interactionid": "c2", "type": "telephony"}} == second[0]
    started = {**alerting_snapshot(), "interaction-state": "STARTED"}
    assert success(INIT, IT1, "r3", body=started) == second[1]
    assert_failure(second[2], ACCEPT, IT1, "r2", "duplicate requestId")
    three = 3
    assert three == len(second)  # nothing else: no event, no second execution
    commands = [json.loads(line) for line in trace.getvalue().splitlines() if '"to":"switch"' in line]
    once = ["login", "ready", "answer"]
    assert once == [line["command"]["op"] for line in commands]
    assert [1, 2] == connections(trace.getvalue())


def test_serve_times_out_a_request_the_switch_never_completes() -> None:
    """D-ASYNC: the engine clock follows the event loop's clock."""
    got: list[Any] = []

    async def main() -> int:
        events: asyncio.Queue[object] = asyncio.Queue()

        async def bridge(conn: FramedConnection) -> None:
            await log_in(conn, events)
            await events.put(OFFERED)
            await conn.recv()
            await answer(conn, query(INIT, IT1, "r1")["message"], [])
            got.append(await answer(conn, request(ACCEPT, IT1, "r2")["message"], got))
            await conn.close()

        server, port = await listen(bridge)
        async with server:
            return await run_serve(
                HOST,
                port,
                switch="scripted",  # nobody answers the command
                policy=Policy().with_settings(["request_timeout=0.3"]),
                switch_events=switch_events(events),
                tick=0.05,
                exit_on_close=True,
            )

    assert exit_ok == run(main())
    assert_failure(got[-1], ACCEPT, IT1, "r2", "within 0.3 seconds")


async def raw_bridge(endings: list[str]) -> tuple[asyncio.Server, int]:
    """A bridge written with plain streams: on each connection it sends a
    request, reads one frame back (the bridge is working), then ends the
    connection as the next of ``endings`` says: ``clean`` (a close after a
    whole frame), ``reset``, ``broken`` (a frame whose contents are not JSON)
    or ``truncated`` (a frame cut short)."""
    left = list(endings)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json_frame(request(ACCEPT, IT1, f"r{len(left)}")["message"]))
        length = int.from_bytes(await reader.readexactly(4), "big")
        await reader.readexactly(length)
        how = left.pop(0)
        if how == "reset":
            reset(writer.get_extra_info("socket"))
        elif how == "broken":
            writer.write(frame_of(b"not json"))
        elif how == "truncated":
            writer.write(json_frame(EMPTY)[:10])
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, HOST, 0)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


@pytest.mark.parametrize(
    ("endings", "exit_on_close", "max_reconnects", "expected"),
    [
        # the bridge closes cleanly: --exit-on-close exits 0 ...
        (["clean"], True, 5, (exit_ok, [1])),
        # ... without it, serve reconnects until --max-reconnects is used up
        (["clean", "clean", "clean"], False, 2, (exit_failed, [1, 2, 3])),
        # a loss is always reconnected, --exit-on-close or not
        (["reset", "clean"], True, 5, (exit_ok, [1, 2])),
        (["broken", "clean"], True, 5, (exit_ok, [1, 2])),
        (["truncated", "clean"], True, 5, (exit_ok, [1, 2])),
        (["reset", "broken", "truncated"], True, 2, (exit_failed, [1, 2, 3])),
    ],
    ids=["clean-exit", "clean-reconnect", "reset", "broken", "truncated", "losses"],
)
def test_serve_end_of_run_rule(
    endings: list[str], exit_on_close: bool, max_reconnects: int, expected: tuple[int, list[int]]
) -> None:
    """serve reconnects whenever a connection is lost (reset, broken stream,
    truncated frame: D-WIRE); when the bridge closes at a frame boundary it
    reconnects too, unless exit_on_close: then it exits 0. Each connection
    starts with ``{"connection": N}`` in the trace."""
    trace = io.StringIO()

    async def main() -> int:
        server, port = await raw_bridge(endings)
        async with server:
            return await run_serve(
                HOST,
                port,
                trace=trace,
                backoff=(0.01, 2.0, 0.05),
                max_reconnects=max_reconnects,
                exit_on_close=exit_on_close,
            )

    assert expected == (run(main()), connections(trace.getvalue()))


def test_serve_pauses_before_reconnecting_to_a_bridge_that_sends_nothing() -> None:
    """A bridge that accepts and closes at once is not reconnected in a tight loop: bounded backoff."""
    accepted: list[float] = []

    async def main() -> int:
        loop = asyncio.get_running_loop()

        async def bridge(conn: FramedConnection) -> None:
            accepted.append(loop.time())
            await conn.close()

        server, port = await listen(bridge)
        async with server:
            return await run_serve(HOST, port, backoff=(0.1, 2.0, 0.4), max_reconnects=3)

    assert exit_failed == run(main())
    gaps = [later - earlier for earlier, later in itertools.pairwise(accepted)]
    four = 4
    assert four == len(accepted)
    assert all(gap >= minimum * 0.9 for gap, minimum in zip(gaps, [0.1, 0.2, 0.4], strict=True)), gaps


def test_serve_closes_the_connection_when_stopped() -> None:
    """No goodbye message (F-WIRE): stopping serve closes the connection at a frame boundary."""

    async def main() -> tuple[int, End | None]:
        stop = asyncio.Event()
        outcome = Outcome()

        async def bridge(conn: FramedConnection) -> None:
            stop.set()  # as SIGTERM does
            await outcome.handler(conn)

        server, port = await listen(bridge)
        async with server:
            code = await run_serve(HOST, port, stop=stop)
            await outcome.done.wait()
        assert [] == outcome.messages
        return code, outcome.end

    assert (exit_ok, End.CLEAN) == run(main())


def test_serve_gives_up_after_max_reconnects() -> None:
    async def main() -> int:
        return await run_serve(HOST, _free_port(), max_reconnects=2, backoff=(0.01, 2.0, 0.05))

    assert exit_failed == run(main())


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--connect", "127.0.0.1:1", "--policy", "no_such_policy=1"], "no_such_policy"),
        (["--connect", "127.0.0.1", "--max-reconnects", "0"], "HOST:PORT"),
        (["--connect", "127.0.0.1:1", "--tls-ca", "/nonexistent/ca.pem"], "cannot set up TLS"),
        (["--connect", "127.0.0.1:1", "--tls-key", "key.pem"], "--tls-key needs --tls-cert"),
        (["--connect", "127.0.0.1:1", "--byte-order", "middle"], "--byte-order"),
        (["--connect", "127.0.0.1:1", "--tcp-keepalive", "0"], "--tcp-keepalive"),
        (["--connect", "127.0.0.1:1", "--tcp-keepalive", "nan"], "--tcp-keepalive"),
    ],
)
def test_serve_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_main(argv)
    assert exit_usage == exited.value.code
    assert says in capsys.readouterr().err


async def serve_process(port: int, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.serve", "--connect", f"{HOST}:{port}", *options,
        cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """The process's exit code and what it wrote on stderr; killed if the test's time runs out."""
    try:
        _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace")


def test_serve_process_stops_on_sigterm(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"

    async def main() -> tuple[int, End | None]:
        connected = asyncio.Event()
        outcome = Outcome()

        async def bridge(conn: FramedConnection) -> None:
            connected.set()
            await outcome.handler(conn)

        server, port = await listen(bridge)
        async with server:
            process = await serve_process(port, "--max-reconnects", "0", "--trace", str(trace))
            await connected.wait()
            while "connection" not in trace.read_text():
                await asyncio.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            code, err = await finished(process)
            await outcome.done.wait()
        assert exit_ok == code, err
        return code, outcome.end

    assert (exit_ok, End.CLEAN) == run(main())
    assert [1] == connections(trace.read_text())


def test_serve_process_wire_options(tmp_path: Path) -> None:
    """``serve --byte-order little --tcp-keepalive S --exit-on-close`` against a
    little-endian bridge (D-WIRE): it answers, then exits 0 when the bridge closes."""
    trace = tmp_path / "trace.jsonl"

    async def main() -> tuple[int, dict[str, Any] | None]:
        answers: list[dict[str, Any] | None] = []

        async def bridge(conn: FramedConnection) -> None:
            await conn.send(request(ACCEPT, IT1, "r1")["message"])
            answers.append(await conn.recv())
            await conn.close()

        server, port = await listen(bridge, byte_order="little")
        async with server:
            process = await serve_process(
                port, "--byte-order", "little", "--tcp-keepalive", "30", "--exit-on-close",
                "--max-reconnects", "0", "--trace", str(trace),
            )  # fmt: skip
            code, err = await finished(process)
        assert exit_ok == code, err
        return code, answers[0]

    code, answered = run(main())
    assert exit_ok == code
    assert answered is not None
    assert_failure(answered, ACCEPT, IT1, "r1")


def test_bridge_process_writes_each_connection_in_its_trace() -> None:
    """harness.md "Traces": the bridge writes ``{"connection": N}`` when a client connects."""
    trace = io.StringIO()

    async def main() -> None:
        process = BridgeProcess([], trace=trace, report=io.StringIO())
        server, port = await listen(process.handle)
        async with server:
            for _ in range(2):
                client = await connect(HOST, port)
                while process.conn is None:
                    await asyncio.sleep(0.01)
                await client.close()
                while process.conn is not None:
                    await asyncio.sleep(0.01)

    run(main())
    assert [1, 2] == connections(trace.getvalue())


class FailingPoll(SimulatedSwitch):
    """A switch that reports on its own (PolledSwitch) and whose polling
    raises once, on its third call: the SIP stack failing inside poll()."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0
        self.closed = False

    def poll(self, wait_ms: int = 0) -> list[SwitchEvent]:
        self.polls += 1
        if self.polls == 3:
            raise RuntimeError("the stack failed inside poll")
        return []

    def close(self) -> None:
        self.closed = True


async def events_then_failure() -> AsyncIterator[object]:
    yield OFFERED
    raise OSError("the switch events source broke")


async def until_closed(conn: FramedConnection) -> None:
    """A bridge that stays connected until the client closes the connection."""
    while await conn.recv() is not None:
        pass


@pytest.mark.parametrize("source", ["switch polling", "switch events"])
def test_a_failed_background_task_stops_serve(source: str, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 17: a background task that fails never leaves serve connected
    and deaf; its failure is logged with the traceback and serve exits 1."""
    switch = FailingPoll()

    async def main() -> int:
        server, port = await listen(until_closed)
        async with server:
            if source == "switch polling":
                return await run_serve(HOST, port, switch=switch)
            return await run_serve(HOST, port, switch_events=events_then_failure())

    with caplog.at_level(logging.ERROR, logger="telephony_fsm.serve"):
        assert exit_failed == run(main())
    logged = f"the {source} task failed; stopping"
    failures = [record for record in caplog.records if record.getMessage() == logged]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    polling = source == "switch polling"
    reason = "the stack failed inside poll" if polling else "the switch events source broke"
    assert reason == str(failures[0].exc_info[1])
    if polling:
        assert switch.polls == 3  # it was not polled again after the failure


def test_serve_reports_its_stop_before_closing() -> None:
    """F-CTRL-3, D-CTRL-1: once the start-up exchange has happened, stopping
    serve sends cti.status stopping and then stopped, and closes cleanly."""

    async def main() -> tuple[int, End | None, list[object]]:
        stop = asyncio.Event()
        outcome = Outcome()

        async def bridge(conn: FramedConnection) -> None:
            await log_in(conn)
            stop.set()  # as SIGTERM does
            await outcome.handler(conn)

        server, port = await listen(bridge)
        async with server:
            code = await run_serve(HOST, port, stop=stop)
            await outcome.done.wait()
        return code, outcome.end, outcome.messages

    code, end, messages = run(main())
    assert (exit_ok, End.CLEAN) == (code, end)
    statuses = [
        m["body"]["status"] for m in messages if isinstance(m, dict) and m["header"]["name"] == "cti.status"
    ]
    assert ["stopping", "stopped"] == statuses

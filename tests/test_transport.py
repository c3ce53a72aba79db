"""Tests of the framed TCP transport (D-WIRE, D-BOUND) and of ``serve`` (D-LIFE-5, D-DUP).

Real loopback sockets only (127.0.0.1, port 0); every test runs under an
asyncio timeout. Assertions are written ``expected == actual``.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from adapters.framing import (
    BOUNDARY,
    CTI_INDEX,
    TRANSPORT_INDEX,
    BadBoundary,
    BadContents,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    decode_json,
    encode_frame,
    encode_json,
)
from adapters.serve import main as serve_main
from adapters.serve import run_serve
from adapters.transport import (
    BYE,
    HELLO,
    FramedConnection,
    HandshakeError,
    IdleTimeout,
    SendBufferFull,
    backoff_delays,
    client_ssl_context,
    connect,
    connect_with_backoff,
    serve,
    server_ssl_context,
)
from fsm.policy import Policy
from tests.scenario import ACCEPT, CH, INIT, assert_failure, itarget, success

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LIMIT = 10.0  # seconds: the bound of every test
exit_ok, exit_failed, exit_usage = 0, 1, 2
R = TypeVar("R")


def run(coro: Coroutine[Any, Any, R]) -> R:
    async def bounded() -> R:
        async with asyncio.timeout(LIMIT):
            return await coro

    return asyncio.run(bounded())


Handler = Callable[[FramedConnection], Awaitable[None]]


async def listen(handler: Handler, **options: Any) -> tuple[asyncio.Server, int]:
    server = await serve(HOST, 0, handler, **options)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


async def echo(conn: FramedConnection) -> None:
    while (msg := await conn.recv()) is not None:
        await conn.send(msg)


class Raw:
    """A client that speaks bytes, to send what a FramedConnection never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, port: int, hello: bool = True) -> Raw:
        raw = cls(*await asyncio.open_connection(HOST, port))
        if hello:
            raw.write(encode_json(HELLO, TRANSPORT_INDEX))
            expected = {"headers": {"type": "transport.welcome"}, "properties": {"index": "1"}}
            assert expected == await raw.message(TRANSPORT_INDEX)
        return raw

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self) -> Frame | None:
        while not self.frames:
            data = await self.reader.read(1 << 16)
            if not data:
                self.decoder.end_of_stream()
                return None
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    async def message(self, index: int) -> object:
        frame = await self.frame()
        assert frame is not None, "the peer closed"
        assert index == frame.index
        return decode_json(frame)

    async def error_then_eof(self) -> str:
        """The peer's transport.error message text, then end of stream."""
        error = await self.message(TRANSPORT_INDEX)
        assert isinstance(error, dict)
        expected = {"type": "transport.error"}
        assert expected == error["headers"]
        assert await self.frame() is None
        self.writer.close()
        text: str = error["properties"]["message"]
        return text


class Outcome:
    """What a server-side handler met: the messages, and the error that ended it."""

    def __init__(self) -> None:
        self.messages: list[object] = []
        self.error: BaseException | None = None
        self.done = asyncio.Event()

    async def handler(self, conn: FramedConnection) -> None:
        try:
            while (msg := await conn.recv()) is not None:
                self.messages.append(msg)
        except Exception as error:
            self.error = error
        finally:
            self.done.set()


# --------------------------------------------------------------------------
# Framing and negotiation on real sockets (D-WIRE).


def test_round_trip_and_negotiated_index() -> None:
    async def main() -> None:
        server, port = await listen(echo)
        async with server:
            client = await connect(HOST, port)
            one = CTI_INDEX
            assert one == client.index
            messages = [{"headers": {"name": f"e{i}"}, "body": {"n": i}} for i in range(3)]
            for msg in messages:
                await client.send(msg)
            assert messages == [await client.recv() for _ in messages]
            await client.bye()
        server7, port7 = await listen(echo, index=7)
        async with server7:
            client = await connect(HOST, port7)
            seven = 7
            assert seven == client.index
            msg = {"x": "y"}
            await client.send(msg)
            assert msg == await client.recv()
            await client.close()

    run(main())


def test_wire_format_of_the_handshake() -> None:
    """D-WIRE: hello and welcome on index 0; CTI messages then on index 1."""

    async def main() -> None:
        server, port = await listen(echo)
        async with server:
            raw = await Raw.open(port)  # checks the exact welcome
            msg = {"headers": {"type": "cti.event"}}
            raw.write(encode_json(msg, CTI_INDEX))
            assert msg == await raw.message(CTI_INDEX)
            raw.write(encode_json(BYE, TRANSPORT_INDEX))
            assert await raw.frame() is None
            raw.writer.close()

    run(main())


def test_first_frame_not_a_hello_is_refused() -> None:
    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler)
        async with server:
            raw = await Raw.open(port, hello=False)
            raw.write(encode_json({"headers": {"type": "cti.event"}}, CTI_INDEX))
            assert "transport.hello" in await raw.error_then_eof()
            assert not outcome.done.is_set()  # the handler never ran

    run(main())


def test_many_messages_and_large_ones() -> None:
    limit = 64 * 1024

    def of_size(size: int) -> dict[str, Any]:
        msg: dict[str, Any] = {"headers": {"type": "cti.event"}, "body": ""}
        overhead = len(json.dumps(msg, separators=(",", ":")))
        msg["body"] = "é~!OM" * ((size - overhead) // 6) + "x" * ((size - overhead) % 6)
        assert size == len(json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode())
        return msg

    async def main() -> None:
        server, port = await listen(echo, max_frame_size=limit)
        async with server:
            client = await connect(HOST, port, max_frame_size=limit)
            many = [{"headers": {"type": "cti.event"}, "properties": {"n": str(i)}} for i in range(2000)]
            for msg in many:
                await client.send(msg)
            assert many == [await client.recv() for _ in many]
            big = [of_size(limit), of_size(limit - 1), of_size(limit // 2)]
            for msg in big:
                await client.send(msg)
            assert big == [await client.recv() for _ in big]
            with pytest.raises(FrameTooLarge):
                await client.send(of_size(limit + 1))  # refused before anything is written
            usable = {"still": "usable"}
            await client.send(usable)
            assert usable == await client.recv()
            await client.bye()

    run(main())


def test_garbage_gets_an_error_frame_then_close(caplog: pytest.LogCaptureFixture) -> None:
    """D-WIRE: a frame that does not start with the boundary: ERROR, then close."""

    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler)
        async with server:
            raw = await Raw.open(port)
            good = {"ok": 1}
            raw.write(encode_json(good))
            while not outcome.messages:
                await asyncio.sleep(0.01)
            raw.write(b"GARBAGE, not a frame")
            assert "boundary" in await raw.error_then_eof()
            await outcome.done.wait()
            assert [good] == outcome.messages
            assert isinstance(outcome.error, BadBoundary)

    with caplog.at_level(logging.WARNING, logger="telephony_fsm.transport"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "telephony_fsm.transport"]
    one = 1
    assert one == len(lines), lines  # one clear line
    assert "error frame" in lines[0]


def test_a_frame_that_is_not_json_leaves_the_connection_usable() -> None:
    """D-WIRE: the framing is intact, so only that message is refused."""
    caught: list[BaseException] = []

    async def picky(conn: FramedConnection) -> None:
        while True:
            try:
                msg = await conn.recv()
            except BadContents as error:
                caught.append(error)
                continue
            if msg is None:
                return
            await conn.send(msg)

    async def main() -> None:
        server, port = await listen(picky)
        async with server:
            raw = await Raw.open(port)
            for contents in (b"not json", b"[" * 100_000, b"\xff"):
                raw.write(encode_frame(contents, CTI_INDEX))
            good = {"after": "bad ones"}
            raw.write(encode_json(good))
            assert good == await raw.message(CTI_INDEX)
            raw.writer.close()

    run(main())
    three = 3
    assert three == len(caught)


def test_oversized_frame_is_refused_before_its_contents_are_read() -> None:
    """D-WIRE/D-BOUND: the header alone is enough to refuse a frame too large."""

    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler, max_frame_size=1000)
        async with server:
            raw = await Raw.open(port)
            raw.write(BOUNDARY + bytes((CTI_INDEX,)) + (1001).to_bytes(4, "big"))  # no contents ever
            assert "1001" in await raw.error_then_eof()
            await outcome.done.wait()
            assert isinstance(outcome.error, FrameTooLarge)

    run(main())


def test_half_open_connection_times_out() -> None:
    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler, idle_timeout=0.3)
        async with server:
            raw = await Raw.open(port)  # then silence: the peer is gone without a FIN
            started = asyncio.get_running_loop().time()
            assert "nothing received" in await raw.error_then_eof()
            await outcome.done.wait()
            assert isinstance(outcome.error, IdleTimeout)
            assert asyncio.get_running_loop().time() - started < 3

    run(main())


def test_keepalive_keeps_a_quiet_connection_open() -> None:
    async def main() -> None:
        outcome = Outcome()
        server, port = await listen(outcome.handler, idle_timeout=0.4, keepalive=0.1)
        async with server:
            client = await connect(HOST, port, idle_timeout=0.4)
            receiving = asyncio.create_task(client.recv())  # answers the pings
            await asyncio.sleep(1.2)  # three idle timeouts without a CTI message
            assert not receiving.done()
            assert outcome.error is None
            after = {"after": "silence"}
            await client.send(after)
            await client.bye()
            assert await receiving is None
            await outcome.done.wait()
            assert [after] == outcome.messages
            assert outcome.error is None

    run(main())


def test_slow_reader_is_disconnected_at_the_send_buffer_bound(caplog: pytest.LogCaptureFixture) -> None:
    """D-BOUND: a peer that stops reading cannot make the send buffer grow."""
    bound = 64 * 1024
    sent: list[int] = []  # sizes of the messages sent
    errors: list[BaseException] = []

    async def flood(conn: FramedConnection) -> None:
        conn.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        chunk = {"body": "x" * 8192}
        try:
            for _ in range(100_000):
                await conn.send(chunk)
                sent.append(len(chunk["body"]))
        except SendBufferFull as error:
            errors.append(error)

    async def main() -> None:
        server, port = await listen(flood, max_send_buffer=bound, send_timeout=0.3)
        async with server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (HOST, port))
            await loop.sock_sendall(sock, encode_json(HELLO, TRANSPORT_INDEX))
            while not errors:  # never read: the server's buffers fill up
                await asyncio.sleep(0.05)
            sock.close()

    with caplog.at_level(logging.WARNING, logger="telephony_fsm.transport"):
        run(main())
    rule = "D-BOUND"
    assert rule == getattr(errors[0], "rule", None)
    assert len(sent) < 10_000  # it stopped long before the loop's end
    unsent = int(str(errors[0]).split(" bytes unsent")[0].rsplit(" ", 1)[1])
    assert unsent <= bound + max(sent) + 100  # the buffer never held more than the bound and one frame
    assert any("not reading" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------
# TLS, with certificates made at test time.


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


def test_tls_round_trip(certs: dict[str, tuple[str, str]]) -> None:
    async def main() -> None:
        server, port = await listen(echo, ssl=server_ssl_context(*certs["bridge"]))
        async with server:
            client = await connect(HOST, port, ssl=client_ssl_context(certs["bridge"][0]))
            assert client.get_extra_info("peercert") is not None
            msg = {"over": "tls"}
            await client.send(msg)
            assert msg == await client.recv()
            await client.bye()

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
            await good.bye()

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
            await ok.bye()
            # TLS 1.3: the client learns it at its first read, as an alert or end of stream
            with pytest.raises((ssl.SSLError, HandshakeError)):
                await connect(HOST, port, ssl=client_ssl_context(certs["bridge"][0]))

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
        await conn.bye()
        servers[0].close()

    run(main())
    expected = [0.5, 1.0, 2.0]
    assert expected == slept


# --------------------------------------------------------------------------
# serve against a fake bridge.

IT1 = itarget("c1")
OFFERED = {"kind": "offered", "call": "c1", "ani": "5551000"}


def query(name: str, target: str, rid: str) -> dict[str, Any]:
    return {"headers": {"type": "cti.query", "name": name, "target": target, "requestId": rid}}


def request(name: str, target: str, rid: str) -> dict[str, Any]:
    return {"headers": {"type": "cti.request", "name": name, "target": target, "requestId": rid}}


async def answer(conn: FramedConnection, msg: dict[str, Any], events: list[Any]) -> dict[str, Any]:
    """Send ``msg``; return its response, collecting the events before it."""
    await conn.send(msg)
    while True:
        got = await conn.recv()
        assert isinstance(got, dict), f"connection ended waiting for {msg}"
        if got["headers"].get("requestId") == msg["headers"]["requestId"]:
            return got
        events.append(got)


async def switch_events(queue: asyncio.Queue[object]) -> AsyncIterator[object]:
    while True:
        yield await queue.get()


def alerting_snapshot() -> dict[str, Any]:
    return {
        "interaction-state": "ALERTING",
        "interaction-data": {"ani": "5551000"},
        "conversations": {"primary": {"id": "c1"}},
    }


def test_serve_answers_a_bridge() -> None:
    trace = io.StringIO()
    seen: list[Any] = []

    async def main() -> int:
        events: asyncio.Queue[object] = asyncio.Queue()

        async def bridge(conn: FramedConnection) -> None:
            await events.put(OFFERED)  # the customer calls
            created = await conn.recv()
            assert isinstance(created, dict)
            seen.append(created["headers"]["name"])
            seen.append(await answer(conn, query(INIT, IT1, "r1"), seen))
            seen.append(await answer(conn, request(ACCEPT, IT1, "r2"), seen))
            await conn.bye()

        server, port = await listen(bridge)
        async with server:
            return await run_serve(HOST, port, trace=trace, switch_events=switch_events(events))

    assert exit_ok == run(main())
    expected = [
        "interaction.created",
        success(INIT, IT1, "r1", body=alerting_snapshot()),
        {"headers": {"type": "cti.event", "name": "interaction.started", "target": IT1}},
        success(ACCEPT, IT1, "r2"),
    ]
    assert expected == seen
    lines = [json.loads(line) for line in trace.getvalue().splitlines()]
    offered = {"from": "switch", "event": OFFERED}
    assert offered == lines[0]
    answer_once = [{"to": "switch", "command": {"id": "cmd-1", "op": "answer", "call": "c1"}}]
    assert answer_once == [line for line in lines if line.get("to") == "switch"]


class LossWatch(logging.Handler):
    """Sets ``lost`` when the adapter logs that it lost the bridge."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "lost" in record.getMessage():
            self.lost.set()


def test_serve_reconnects_keeping_its_engine() -> None:
    """D-LIFE-5: after a reconnect the bridge re-initializes and gets the
    current snapshot; D-DUP: a requestId answered before the drop is refused
    after it, and its switch command is not run twice. D-NEW: an interaction
    created while disconnected is announced after reconnecting."""
    trace = io.StringIO()
    first: list[Any] = []
    second: list[Any] = []

    async def main() -> int:
        events: asyncio.Queue[object] = asyncio.Queue()
        watch = LossWatch()
        logging.getLogger("telephony_fsm.serve").addHandler(watch)

        async def first_bridge(conn: FramedConnection) -> None:
            await events.put(OFFERED)
            first.append(await conn.recv())
            first.append(await answer(conn, query(INIT, IT1, "r1"), first))
            first.append(await answer(conn, request(ACCEPT, IT1, "r2"), first))
            server.close()  # stop listening, then drop the connection: no bye

        async def second_bridge(conn: FramedConnection) -> None:
            second.append(await conn.recv())  # held while disconnected
            second.append(await answer(conn, query(INIT, IT1, "r3"), second))
            second.append(await answer(conn, request(ACCEPT, IT1, "r2"), second))
            await conn.bye()

        async def outage() -> asyncio.Server:
            await watch.lost.wait()
            await events.put({"kind": "offered", "call": "c2"})  # while the bridge is away
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
            )
        finally:
            logging.getLogger("telephony_fsm.serve").removeHandler(watch)
            (await back).close()

    assert exit_ok == run(main())
    created = {"headers": {"type": "cti.event", "name": "interaction.created", "target": CH}}
    assert [
        {**created, "properties": {"interactionid": "c1", "type": "telephony"}},
        success(INIT, IT1, "r1", body=alerting_snapshot()),
        {"headers": {"type": "cti.event", "name": "interaction.started", "target": IT1}},
        success(ACCEPT, IT1, "r2"),
    ] == first
    assert {**created, "properties": {"interactionid": "c2", "type": "telephony"}} == second[0]
    started = {**alerting_snapshot(), "interaction-state": "STARTED"}
    assert success(INIT, IT1, "r3", body=started) == second[1]
    assert_failure(second[2], ACCEPT, IT1, "r2", "duplicate requestId")
    three = 3
    assert three == len(second)  # nothing else: no event, no second execution
    commands = [json.loads(line) for line in trace.getvalue().splitlines() if '"to":"switch"' in line]
    once = ["answer"]
    assert once == [line["command"]["op"] for line in commands]


def test_serve_times_out_a_request_the_switch_never_completes() -> None:
    """D-ASYNC: the engine clock follows the event loop's clock."""
    got: list[Any] = []

    async def main() -> int:
        events: asyncio.Queue[object] = asyncio.Queue()

        async def bridge(conn: FramedConnection) -> None:
            await events.put(OFFERED)
            await conn.recv()
            await answer(conn, query(INIT, IT1, "r1"), [])
            got.append(await answer(conn, request(ACCEPT, IT1, "r2"), got))
            await conn.bye()

        server, port = await listen(bridge)
        async with server:
            return await run_serve(
                HOST,
                port,
                switch="scripted",  # nobody answers the command
                policy=Policy().with_settings(["request_timeout=0.3"]),
                switch_events=switch_events(events),
                tick=0.05,
            )

    assert exit_ok == run(main())
    assert_failure(got[-1], ACCEPT, IT1, "r2", "within 0.3 seconds")


def test_serve_says_bye_when_stopped() -> None:
    async def main() -> tuple[int, bool]:
        stop = asyncio.Event()
        outcome = Outcome()

        async def bridge(conn: FramedConnection) -> None:
            stop.set()  # as SIGTERM does
            await outcome.handler(conn)
            outcome.messages.append(conn.bye_received)

        server, port = await listen(bridge)
        async with server:
            code = await run_serve(HOST, port, stop=stop)
            await outcome.done.wait()
        return code, outcome.messages == [True]

    assert (exit_ok, True) == run(main())


def test_serve_gives_up_after_max_reconnects() -> None:
    async def main() -> int:
        return await run_serve(HOST, _free_port(), max_reconnects=2, backoff=(0.01, 2.0, 0.05))

    assert exit_failed == run(main())


def test_serve_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--connect", "127.0.0.1:1", "--policy", "no_such_policy=1"],
        ["--connect", "127.0.0.1", "--max-reconnects", "0"],
        ["--connect", "127.0.0.1:1", "--tls-ca", "/nonexistent/ca.pem"],
    ):
        with pytest.raises(SystemExit) as exited:
            serve_main(argv)
        assert exit_usage == exited.value.code
    assert "no_such_policy" in capsys.readouterr().err


def test_serve_process_stops_on_sigterm(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"

    async def main() -> tuple[int, bool]:
        connected = asyncio.Event()
        outcome = Outcome()

        async def bridge(conn: FramedConnection) -> None:
            connected.set()
            await outcome.handler(conn)
            outcome.messages.append(conn.bye_received)

        server, port = await listen(bridge)
        async with server:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "adapters.serve", "--connect", f"{HOST}:{port}",
                "--max-reconnects", "0", "--trace", str(trace),
                cwd=ROOT, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                await connected.wait()
                process.send_signal(signal.SIGTERM)
                code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            await outcome.done.wait()
        return code, outcome.messages == [True]

    assert (exit_ok, True) == run(main())
    assert trace.exists()

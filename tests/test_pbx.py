"""The PBX process (``telephony-fsm pbx``) and its driver (``serve --switch
pbx``), adapters/pbx.

1. The model without IO: events go to the connection holding their device
   and to no other; a device nobody holds keeps its events until a hello
   claims it; a device held elsewhere cannot be claimed; a connection's
   commands reach its own calls and devices only; every bad frame is an
   error naming the problem and changes nothing.
2. The process over real loopback sockets: the hello's answer, an error
   frame for a frame it cannot use (and it goes on serving), the script's
   bad lines (exit 2, naming the line) and waits that time out (exit 1,
   naming what it waited for).
3. End to end: the bridge, serve and the PBX as three processes, two agents
   each with a consulting call at the same time: all exit 0, 0 violations,
   both traces clean; a PBX killed while the agent is logged in turns the
   control destination cti-lost and, restarted on the same port, back to
   started (F-CTRL-3, D-CTRL-1, D-CTRL-3).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main
from adapters.pbx.core import LinkError, Pbx
from adapters.pbx.link import PbxLink
from adapters.pbx.script import listed
from adapters.pbx.server import MAX_ERROR, PbxServer, run_pbx
from adapters.session import agents_call
from adapters.switch import dispatch
from adapters.transport import connect
from fsm.checker import check_lines
from fsm.switch_events import Command, SwitchEvent
from tests.test_bridge_serve_e2e import CLI, ROOT, finish, start_bridge

A, B = "conn-a", "conn-b"


def offered(call: str, device: str) -> dict[str, Any]:
    return {"kind": "offered", "call": call, "device": device}


# --------------------------------------------------------------------------
# 1. The model.


def test_events_go_to_the_connection_holding_the_device_only() -> None:
    pbx = Pbx()
    assert [(A, {"hello": {"devices": ["1001"]}})] == pbx.hello(A, {"devices": ["1001"]})
    pbx.hello(B, {"devices": ["1002"]})
    assert [(A, {"event": offered("c1", "1001")})] == pbx.play(offered("c1", "1001"))
    assert [(B, {"event": offered("c2", "1002")})] == pbx.play(offered("c2", "1002"))
    sent = pbx.command(A, {"id": "cmd-1", "op": "answer", "call": "c1"})
    assert [(A, {"event": {"kind": "connected", "call": "c1"}})] == sent
    consult = pbx.command(A, {"id": "cmd-2", "op": "consult", "call": "c1", "destination": "200"})
    assert {A} == {conn for conn, _ in consult}
    assert ["held", "dialing", "alerting", "connected"] == [frame["event"]["kind"] for _, frame in consult]
    assert "TALKING" == pbx.call_state("sim-1")
    ended = pbx.play({"kind": "ended", "call": "c2"})
    assert [(B, {"event": {"kind": "ended", "call": "c2"}})] == ended
    assert "ended" == pbx.call_state("c2")


def test_a_device_nobody_holds_keeps_its_events_for_the_next_claim() -> None:
    pbx = Pbx(max_held=2)
    assert [] == pbx.play(offered("c1", "1001"))
    assert [] == pbx.play({"kind": "connected", "call": "c1"})
    assert [] == pbx.play({"kind": "held", "call": "c1"})  # the oldest of three is dropped (max_held)
    sends = pbx.hello(A, {"devices": ["1001"]})
    assert ["hello", "connected", "held"] == [
        next(iter(f)) if "hello" in f else f["event"]["kind"] for _, f in sends
    ]
    pbx.closed(A)
    assert [] == pbx.play({"kind": "retrieved", "call": "c1"})  # held again: nobody holds 1001
    assert "retrieved" == pbx.hello(B, {"devices": ["1001"]})[1][1]["event"]["kind"]


def test_a_device_held_elsewhere_cannot_be_claimed_and_a_connection_says_hello_once() -> None:
    pbx = Pbx()
    pbx.hello(A, {"devices": ["1001", "1002"]})
    with pytest.raises(LinkError, match=r"device\(s\) 1002 are held by another connection"):
        pbx.hello(B, {"devices": ["1003", "1002"]})
    assert ["1001", "1002"] == pbx.devices_of(A) and [] == pbx.devices_of(B)
    with pytest.raises(LinkError, match="a second hello"):
        pbx.hello(A, {"devices": ["1004"]})


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ("answer", "a command must be a JSON object, not a string"),
        ({"id": "cmd-1", "op": "answer", "call": "c1", "colour": "red"}, "unknown command field(s) 'colour'"),
        (
            {"id": "cmd-1", "op": "answer", "call": 7},
            "command field 'call' must be a string, not the number 7",
        ),
        ({"op": "answer", "call": "c1"}, "a command needs 'id'"),
        ({"id": "cmd-1", "op": "explode", "call": "c1"}, "unknown operation 'explode'"),
        ({"id": "cmd-1", "op": "answer", "call": "c9"}, "answer cmd-1: no call c9 at this PBX"),
        (
            {"id": "cmd-1", "op": "answer", "call": "c2"},
            "answer cmd-1: call c2 is not on this connection's devices",
        ),
        (
            {"id": "cmd-1", "op": "login", "device": "1002"},
            "login cmd-1: device 1002 is not this connection's",
        ),
    ],
)
def test_a_bad_command_is_an_error_naming_it_and_changes_nothing(frame: object, words: str) -> None:
    pbx = Pbx()
    pbx.hello(A, {"devices": ["1001"]})
    pbx.hello(B, {"devices": ["1002"]})
    pbx.play(offered("c1", "1001"))
    pbx.play(offered("c2", "1002"))
    before = (dict(pbx.switch.calls), dict(pbx.switch.devices), pbx.switch.legs_made)
    with pytest.raises(LinkError) as caught:
        pbx.command(A, frame)
    assert words == str(caught.value)
    assert before == (dict(pbx.switch.calls), dict(pbx.switch.devices), pbx.switch.legs_made)


def test_a_command_before_hello_and_bad_hellos_are_refused() -> None:
    pbx = Pbx()
    with pytest.raises(LinkError, match="a command before hello"):
        pbx.command(A, {"id": "cmd-1", "op": "login", "device": "1001"})
    bad: object
    for bad in ({"devices": "1001"}, {"devices": [1001]}, {"devices": [""]}, {"devices": [], "x": 1}, []):
        with pytest.raises(LinkError, match="hello"):
            pbx.hello(A, bad)


def test_the_script_cannot_play_what_is_not_the_pbxs() -> None:
    pbx = Pbx()
    with pytest.raises(LinkError, match="a link event is not the PBX's to play"):
        pbx.play({"kind": "link", "up": False})
    with pytest.raises(LinkError, match="connected: no call c1 at this PBX, and no device named"):
        pbx.play({"kind": "connected", "call": "c1"})
    with pytest.raises(LinkError, match="switch event offered: missing required field call"):
        pbx.play({"kind": "offered", "device": "1001"})


# --------------------------------------------------------------------------
# 2. The process.


def start_pbx(
    tmp_path: Path, *options: str, script: list[object] | None = None
) -> tuple[subprocess.Popen[str], int]:
    args = [*CLI, "pbx", "--listen", "127.0.0.1:0", *options]
    if script is not None:
        path = tmp_path / "pbx-script.jsonl"
        path.write_text("".join(json.dumps(step) + "\n" for step in script), encoding="utf-8")
        args += ["--script", str(path)]
    pbx = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert pbx.stdout is not None
    line = pbx.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), (line, pbx.stderr.read() if pbx.stderr else "")
    return pbx, int(line.rsplit(":", 1)[1])


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.terminate()
    return finish(process)


def test_the_pbx_answers_frames_it_cannot_use_with_an_error_and_goes_on(tmp_path: Path) -> None:
    pbx, port = start_pbx(tmp_path, script=[{"wait": {"connected": "1001"}}, offered("c1", "1001")])

    async def talk() -> list[dict[str, Any]]:
        conn = await connect("127.0.0.1", port)
        got = []
        for frame in (
            {"command": {"id": "cmd-1", "op": "login", "device": "1001"}},  # before hello
            {"hello": {"devices": ["1001"]}},
            {"colour": "red"},
            {"command": {"id": "cmd-2", "op": "answer", "call": "c1", "x": "y"}},
            {"command": {"id": "cmd-3", "op": "answer", "call": "c1"}},
        ):
            await conn.send(frame)
            got.append(await asyncio.wait_for(conn.recv(), 10))
            if "hello" in frame:
                got.append(await asyncio.wait_for(conn.recv(), 10))  # the script's offer
        await conn.close()
        return [g for g in got if g is not None]

    got = asyncio.run(talk())
    code, err = stop(pbx)
    assert 0 == code, err
    assert {"error": "a command before hello"} == got[0]
    assert {"hello": {"devices": ["1001"]}} == got[1]
    assert {"event": {"kind": "offered", "call": "c1", "device": "1001"}} == got[2]
    assert {"error": 'a frame is {"hello": ...} or {"command": ...}, not one with key(s) \'colour\''} == got[
        3
    ]
    assert {"error": "unknown command field(s) 'x'"} == got[4]
    assert {"event": {"kind": "connected", "call": "c1"}} == got[5]


def frame_of(contents: bytes) -> bytes:
    return len(contents).to_bytes(4, "big") + contents


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, strictly UTF-8 JSON (every output of the PBX must be); None at a clean end."""
    try:
        length = int.from_bytes(await asyncio.wait_for(reader.readexactly(4), 10), "big")
    except asyncio.IncompleteReadError as end:
        assert b"" == end.partial, "the stream ended inside a length"
        return None
    contents = await asyncio.wait_for(reader.readexactly(length), 10)
    value = json.loads(contents.decode("utf-8"))
    assert isinstance(value, dict)
    return value


class Adapter:
    """A raw adapter connection: frames as bytes out, strict JSON in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Adapter:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, frame: object) -> None:
        raw = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
        self.writer.write(frame_of(raw))
        await self.writer.drain()

    async def recv(self) -> dict[str, Any] | None:
        return await read_frame(self.reader)

    async def hello(self, *devices: str) -> None:
        await self.send({"hello": {"devices": list(devices)}})
        assert {"hello": {"devices": list(devices)}} == await self.recv()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def with_pbx(body: Callable[[PbxServer, int], Awaitable[None]], **options: Any) -> None:
    """Run ``body(server, port)`` beside a PBX listening on loopback, bounded in time."""

    async def main() -> None:
        state = PbxServer(Pbx(**options))
        server = await asyncio.start_server(state.accepted, "127.0.0.1", 0)
        try:
            await asyncio.wait_for(body(state, server.sockets[0].getsockname()[1]), 30)
        finally:
            server.close()
            for conn in list(state.conns.values()):
                await conn.close()
            await server.wait_closed()

    asyncio.run(main())


LONG_KEY = "k" * 5000
HOSTILE: list[tuple[bytes, str]] = [
    (b"{not json", "frame at offset 0: contents are not JSON: Expecting property name"),
    (b"\xff{}", "contents are not UTF-8: invalid start byte b'\\xff' at byte 0"),
    (b"[1, 2]", "contents are not a JSON object but an array"),
    (b'"hello"', "contents are not a JSON object but a string"),
    (b'{"command": NaN}', "contents are not JSON: NaN is not a JSON value"),
    (b"[" * 100_000, "contents are not JSON: nested too deeply"),
    (
        b'{"command": {"id": "cmd-1", "op": "dial", "device": "\\ud800"}}',
        "a lone surrogate in command.device",
    ),
    (b'{"hello": {"devices": ["\\udfff"]}}', "a lone surrogate in hello.devices"),
    (b'{"command": {"id": "cmd-1", "op": "answer", "call": 9007199254740993}}', "beyond 2^53"),
    (b"{}", 'a frame is {"hello": ...} or {"command": ...}, not one with key(s) none'),
    (b'{"hello": {"devices": []}, "command": {}}', "not one with key(s) 'command', 'hello'"),
    (json.dumps({LONG_KEY: 1}).encode(), "not one with key(s) 'kkkk"),
    (b'{"command": {"id": "cmd-1", "op": "login", "device": "1001"}}', "a command before hello"),
    (b'{"hello": {"devices": "1001"}}', "hello refused: hello's devices must be a list of non-empty strings"),
    (b'{"hello": {"devices": [1001]}}', "hello's devices must be a list of non-empty strings"),
    (b'{"hello": ["1001"]}', 'hello takes {"devices": [END-POINT, ...]} and nothing else'),
    (b'{"command": "answer"}', "a command must be a JSON object, not a string"),
    (b'{"command": {"id": "cmd-1", "op": "answer"}}', "answer cmd-1: a answer command needs 'call'"),
    (b'{"command": {"id": "cmd-1", "op": "dial", "device": true}}', "must be a string, not a boolean"),
]
AFTER_HELLO: list[tuple[object, str]] = [
    (
        {"hello": {"devices": ["1002"]}},
        "hello refused: a second hello on one connection (its first claim stands)",
    ),
    ({"command": {"id": "cmd-2", "op": "explode", "call": "c1"}}, "unknown operation 'explode'"),
    ({"command": {"id": "cmd-3", "op": "answer", "call": "c9"}}, "answer cmd-3: no call c9 at this PBX"),
    ({"command": {"id": "cmd-4", "op": "login", "device": "1002"}}, "device 1002 is not this connection's"),
    ({"command": {"id": "cmd-5", "op": "answer", "call": "c1", "x": "y"}}, "unknown command field(s) 'x'"),
]


def test_every_hostile_frame_is_answered_with_an_error_naming_it_and_the_pbx_goes_on() -> None:
    """Each frame the PBX cannot use gets one error frame naming the problem
    (valid UTF-8 JSON, at most MAX_ERROR characters), changes nothing, and
    the same connection then claims its device and runs a command."""

    async def body(state: PbxServer, port: int) -> None:
        adapter = await Adapter.open(port)
        for raw, words in HOSTILE:
            await adapter.send(raw)
            answer = await adapter.recv()
            assert answer is not None and set(answer) == {"error"}, (raw[:60], answer)
            assert words in answer["error"], (raw[:60], answer)
            assert len(answer["error"]) <= MAX_ERROR
        assert {} == state.pbx.owner and {} == state.pbx.claims
        await adapter.hello("1001")
        await state.deliver(state.pbx.play({"kind": "offered", "call": "c1", "device": "1001"}))
        assert "offered" == (await adapter.recv() or {})["event"]["kind"]
        before = (dict(state.pbx.switch.calls), dict(state.pbx.switch.devices), dict(state.pbx.owner))
        for frame, words in AFTER_HELLO:
            await adapter.send(frame)
            answer = await adapter.recv()
            assert answer is not None and words in answer.get("error", ""), (frame, answer)
        assert before == (dict(state.pbx.switch.calls), dict(state.pbx.switch.devices), dict(state.pbx.owner))
        await adapter.send({"command": {"id": "cmd-6", "op": "answer", "call": "c1"}})
        assert {"event": {"kind": "connected", "call": "c1"}} == await adapter.recv()
        await adapter.close()

    with_pbx(body)


def test_an_oversized_frame_is_answered_then_that_connection_closed_cleanly() -> None:
    """A length above the bound: the stream cannot be followed, so an error
    frame naming it, then a clean end (not a reset: the error is read); the
    PBX goes on serving other connections."""

    async def body(state: PbxServer, port: int) -> None:
        adapter = await Adapter.open(port)
        await adapter.hello("1001")
        adapter.writer.write((1 << 31).to_bytes(4, "big") + b"{" * 1000)
        answer = await adapter.recv()
        assert answer is not None
        assert "length 2147483648 exceeds the maximum frame size of 1048576 bytes; closing" in answer["error"]
        assert await adapter.recv() is None  # the end, cleanly at a frame boundary
        await adapter.close()
        for _ in range(100):  # the claim goes with the connection
            if not state.pbx.claims:
                break
            await asyncio.sleep(0.02)
        again = await Adapter.open(port)
        await again.hello("1001")
        await again.close()

    with_pbx(body)


def test_each_connection_hears_only_its_own_devices_and_their_calls() -> None:
    """Two adapters, two devices: a command's events (a consult's new leg
    too) go to the connection that owns the device; the other hears
    nothing of them, and cannot command that call or device."""

    async def body(state: PbxServer, port: int) -> None:
        a, b = await Adapter.open(port), await Adapter.open(port)
        await a.hello("1001")
        await b.hello("1002")
        await state.play(listed([(1, offered("c1", "1001")), (2, offered("c2", "1002"))]))
        assert offered("c1", "1001") == (await a.recv() or {})["event"]
        assert offered("c2", "1002") == (await b.recv() or {})["event"]
        await a.send({"command": {"id": "cmd-1", "op": "answer", "call": "c1"}})
        await a.send({"command": {"id": "cmd-2", "op": "consult", "call": "c1", "destination": "200"}})
        kinds = [((await a.recv()) or {}).get("event", {}) for _ in range(5)]
        assert ["connected", "held", "dialing", "alerting", "connected"] == [e.get("kind") for e in kinds]
        assert {"kind": "dialing", "call": "sim-1", "device": "1001", "destination": "200"} == kinds[2]
        await b.send({"command": {"id": "cmd-1", "op": "release", "call": "sim-1"}})
        assert {"error": "release cmd-1: call sim-1 is not on this connection's devices"} == await b.recv()
        await b.send({"command": {"id": "cmd-2", "op": "ready", "device": "1001"}})
        assert {"error": "ready cmd-2: device 1001 is not this connection's"} == await b.recv()
        # what b hears next is its own call's: nothing of a's came in between
        await state.play(listed([(3, {"kind": "ended", "call": "c2", "cause": "hangup"})]))
        assert {"event": {"kind": "ended", "call": "c2", "cause": "hangup"}} == await b.recv()
        assert "TALKING" == state.pbx.call_state("sim-1") and "HELD" == state.pbx.call_state("c1")
        await a.close()
        await b.close()

    with_pbx(body)


def test_events_of_a_device_nobody_holds_wait_for_its_claim_in_order() -> None:
    """Held events are delivered, in order, after the hello's answer; a
    closed connection's device holds them again for the next claim (its
    calls go on); the call's end is routed by the device it was on."""

    async def body(state: PbxServer, port: int) -> None:
        await state.play(listed([(1, offered("c1", "1001")), (2, {"kind": "connected", "call": "c1"})]))
        a = await Adapter.open(port)
        await a.hello("1001")
        assert [offered("c1", "1001"), {"kind": "connected", "call": "c1"}] == [
            ((await a.recv()) or {}).get("event") for _ in range(2)
        ]
        await a.close()
        for _ in range(100):
            if not state.pbx.claims:
                break
            await asyncio.sleep(0.02)
        await state.play(listed([(3, {"kind": "ended", "call": "c1", "cause": "hangup"})]))
        assert "ended" == state.pbx.call_state("c1")
        b = await Adapter.open(port)
        await b.hello("1001")
        assert {"event": {"kind": "ended", "call": "c1", "cause": "hangup"}} == await b.recv()
        await b.send({"command": {"id": "cmd-1", "op": "release", "call": "c1"}})
        assert {"error": "release cmd-1: call c1 has ended"} == await b.recv()
        await b.close()

    with_pbx(body)


def test_a_claim_of_a_device_held_elsewhere_is_refused_and_that_connection_closed() -> None:
    async def body(state: PbxServer, port: int) -> None:
        a, c = await Adapter.open(port), await Adapter.open(port)
        await a.hello("1001")
        await c.send({"hello": {"devices": ["1003", "1001"]}})
        assert {
            "error": "hello refused: device(s) 1001 are held by another connection; closing the connection"
        } == await c.recv()
        assert await c.recv() is None  # closed cleanly after the error
        assert {"1001": next(iter(state.pbx.claims))} == state.pbx.owner  # nothing of c's claim stands
        await a.send({"command": {"id": "cmd-1", "op": "login", "device": "1001"}})
        assert {"event": {"kind": "agent", "device": "1001", "state": "loggedin"}} == await a.recv()
        await a.close()
        await c.close()

    with_pbx(body)


def test_the_held_events_are_bounded_in_all_dropping_a_devices_oldest() -> None:
    pbx = Pbx(max_held=3)
    pbx.play(offered("c1", "1001"))
    pbx.play(offered("c2", "1002"))
    pbx.play(offered("c3", "1003"))
    pbx.play({"kind": "ended", "call": "c1"})  # a fourth: 1001's oldest goes (D-BOUND)
    assert 3 == pbx.held_count
    assert [{"kind": "ended", "call": "c1"}] == [
        f["event"] for _, f in pbx.hello(A, {"devices": ["1001"]})[1:]
    ]
    assert 2 == pbx.held_count


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json", "script.jsonl:2: not JSON"),
        ('{"wait": {"device": "1001"}}', 'script.jsonl:2: a wait is {"wait": {"device": D, "state": S}'),
        ('{"wait": {"connected": "1001"}, "timeout": -1}', "script.jsonl:2: timeout must be a number"),
        ('{"sleep": "soon"}', 'script.jsonl:2: a pause is {"sleep": SECONDS}'),
        ('{"call": "c1"}', "script.jsonl:2: a step is a switch event (with 'kind'), a wait or a sleep"),
        ('{"kind": "offered", "call": "c1"}', "script.jsonl:2: switch event offered: missing required field"),
        ('{"kind": "link", "up": false}', "script.jsonl:2: a link event is not the PBX's to play"),
        ('{"wait": {"device": "1001", "state": "Ready"}}', "script.jsonl:2: unknown state 'Ready' (known: "),
        ('{"wait": {"call": "c1", "state": "talking"}}', "unknown state 'talking' (known: DIALING, ALERTING"),
        ('{"kind": "ended", "call": "c1", "cause": "\\udc80"}', "script.jsonl:2: a lone surrogate in cause"),
    ],
)
def test_a_bad_script_line_is_a_usage_error_naming_it(
    tmp_path: Path, line: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole file is checked before anything is played: exit 2 naming the
    line, and the PBX never listens."""
    script = tmp_path / "script.jsonl"
    script.write_text(
        "# a comment\n" + line + "\n" + json.dumps(offered("c1", "1001")) + "\n", encoding="utf-8"
    )
    with pytest.raises(SystemExit) as exited:
        main(["pbx", "--listen", "127.0.0.1:0", "--script", str(script)])
    out, err = capsys.readouterr()
    assert 2 == exited.value.code, err
    assert words in err
    assert "listening" not in out


def test_a_bad_line_on_stdin_ends_the_pbx_with_2_naming_it() -> None:
    """stdin is played as it comes: the steps before the bad line are played,
    then the PBX exits 2 naming the line."""
    lines = [json.dumps({"sleep": 0}), "", "# a comment", json.dumps({"wait": {"device": "1001"}})]
    done = subprocess.run(
        [*CLI, "pbx", "--listen", "127.0.0.1:0", "--script", "-"],
        cwd=ROOT,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode, done.stderr
    assert done.stdout.startswith("listening on 127.0.0.1:")
    assert 'cannot be played: stdin:4: a wait is {"wait"' in done.stderr


def play_alone(script: list[tuple[int, dict[str, Any]]], **options: Any) -> int:
    """run_pbx in process on loopback with ``script``; its exit code."""
    code: int = asyncio.run(asyncio.wait_for(run_pbx("127.0.0.1", 0, script, **options), 30))
    return code


def test_a_step_that_cannot_be_played_ends_the_pbx_with_2(caplog: pytest.LogCaptureFixture) -> None:
    assert 2 == play_alone([(1, {"sleep": 0}), (3, {"kind": "connected", "call": "c9"})])
    assert "script line 3: connected: no call c9 at this PBX, and no device named" in caplog.text


def test_a_call_wait_that_times_out_ends_the_pbx_with_1(caplog: pytest.LogCaptureFixture) -> None:
    script = [(1, offered("c1", "1001")), (2, {"wait": {"call": "c1", "state": "TALKING"}, "timeout": 0.3})]
    assert 1 == play_alone(script)
    assert "script line 2: waited 0.3 s for call c1 to be TALKING" in caplog.text


def test_exit_when_done_waits_for_the_script_and_for_the_adapters_to_go() -> None:
    """--exit-when-done: 0 once the script is over and, after an adapter
    claimed its devices, none is connected; the trace has every frame."""
    trace = io.StringIO()

    async def scenario() -> int:
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        script = [(1, {"wait": {"connected": "1001"}, "timeout": 10}), (2, offered("c1", "1001"))]
        pbx = asyncio.create_task(
            run_pbx(
                "127.0.0.1", 0, script, exit_when_done=True, trace=trace, on_listening=listening.set_result
            )
        )
        adapter = await Adapter.open(await listening)
        await adapter.hello("1001")
        assert {"event": offered("c1", "1001")} == await adapter.recv()
        await asyncio.sleep(0.3)
        assert not pbx.done()  # the script is over, but an adapter is connected
        await adapter.close()
        return await asyncio.wait_for(pbx, 10)

    assert 0 == asyncio.run(asyncio.wait_for(scenario(), 30))
    entries = [json.loads(line) for line in trace.getvalue().splitlines()]
    assert [
        {"script": 1, "step": {"wait": {"connected": "1001"}, "timeout": 10}},
        {"connection": 1},
        {"from": 1, "frame": {"hello": {"devices": ["1001"]}}},
        {"to": 1, "frame": {"hello": {"devices": ["1001"]}}},
        {"script": 2, "step": offered("c1", "1001")},
        {"to": 1, "frame": {"event": offered("c1", "1001")}},
        {"closed": 1},
    ] == [{k: v for k, v in e.items() if k != "peer"} for e in entries]


def test_a_wait_that_times_out_ends_the_pbx_with_1_naming_it(tmp_path: Path) -> None:
    pbx, _ = start_pbx(
        tmp_path, script=[{"sleep": 0.1}, {"wait": {"device": "1001", "state": "ready"}, "timeout": 0.5}]
    )
    code, err = finish(pbx)
    assert 1 == code, err
    assert "script line 2: waited 0.5 s for device 1001 to be ready" in err


# --------------------------------------------------------------------------
# 3. End to end.


def start_serve_on_pbx(
    tmp_path: Path, bridge_port: int, pbx_port: int, *agents: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *CLI,
            "serve",
            *("--connect", f"127.0.0.1:{bridge_port}", "--switch", "pbx", "--pbx", f"127.0.0.1:{pbx_port}"),
            *(option for agent in agents for option in ("--agent", agent)),
            *("--trace", str(tmp_path / "serve.jsonl"), "--exit-on-close", "--max-reconnects", "10"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_agents_with_consulting_calls_through_the_pbx_process(tmp_path: Path) -> None:
    both = agents_call(2)
    steps = tmp_path / "steps.jsonl"
    steps.write_text("".join(json.dumps(s) + "\n" for s in both if s["actor"] == "agent"))
    script: list[object] = []
    for step in both:
        if step["actor"] == "customer":  # each customer calls once the agent is ready
            script += [
                {"wait": {"device": step["event"]["device"], "state": "ready"}, "timeout": 30},
                step["event"],
            ]
    pbx, pbx_port = start_pbx(tmp_path, "--exit-when-done", script=script)
    bridge, port = start_bridge(tmp_path, "--login", "agent-1", "--login", "agent-2", "--steps", str(steps))
    serve = start_serve_on_pbx(tmp_path, port, pbx_port, "agent-1=1001", "agent-2=1002")
    (bridge_code, bridge_err), (serve_code, serve_err) = finish(bridge), finish(serve)
    pbx_code, pbx_err = finish(pbx)
    assert (0, 0, 0) == (bridge_code, serve_code, pbx_code), (bridge_err, serve_err, pbx_err)
    agent_steps = sum(1 for s in both if s["actor"] == "agent")
    assert f"{agent_steps + 6} agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace
    entries = [json.loads(x) for x in (tmp_path / "serve.jsonl").read_text().splitlines()]
    ops = [e["command"]["op"] for e in entries if "command" in e]
    assert 4 == ops.count("consult") and 2 == ops.count("transfer") and 2 == ops.count("login")
    statuses = [
        e["message"]["body"]["status"]
        for e in entries
        if e.get("message", {}).get("header", {}).get("name") == "cti.status"
    ]
    assert ["starting", "started"] == statuses[:2]  # started once the PBX took the hello (F-CTRL-2)
    assert "no adapter is connected: done" in pbx_err


def test_a_lost_pbx_turns_the_client_cti_lost_and_back_to_started(tmp_path: Path) -> None:
    """F-CTRL-3, D-CTRL-1: the PBX killed (SIGKILL) once the agent is ready:
    serve's control reports cti-lost; a PBX started again on the same port
    takes serve's claim back, the control is started again, and a call
    offered by the new PBX is accepted, hung up by its customer and
    completed. All exit 0, serve's trace is clean."""
    agent = [
        {"actor": "agent", "action": "accept"},
        {"actor": "bridge", "wait": {"state": "ENDED"}, "timeout": 20},
        {"actor": "agent", "action": "complete"},
    ]
    steps = tmp_path / "steps.jsonl"
    steps.write_text("".join(json.dumps(step) + "\n" for step in agent))
    pbx, pbx_port = start_pbx(tmp_path)
    bridge, port = start_bridge(tmp_path, "--steps", str(steps))
    serve = start_serve_on_pbx(tmp_path, port, pbx_port, "agent-1=1001")
    trace = tmp_path / "serve.jsonl"

    def statuses() -> list[str]:
        if not trace.exists():
            return []
        lines = [json.loads(x) for x in trace.read_text().splitlines() if '"cti.status"' in x]
        return [x["message"]["body"]["status"] for x in lines if x.get("to") == "bridge"]

    def until(holds: Any, what: str) -> None:
        deadline = time.monotonic() + 20
        while not holds():
            assert time.monotonic() < deadline, f"{what}; statuses {statuses()}"
            time.sleep(0.05)

    until(lambda: trace.exists() and '"state":"ready"' in trace.read_text(), "the agent is not ready")
    pbx.kill()
    finish(pbx)
    until(lambda: "cti-lost" in statuses(), "no cti-lost")
    script: list[object] = [
        {"wait": {"connected": "1001"}, "timeout": 20},
        offered("c1", "1001"),
        {"wait": {"call": "c1", "state": "TALKING"}, "timeout": 20},
        {"kind": "ended", "call": "c1", "cause": "hangup"},
    ]
    again, _ = start_pbx(tmp_path, "--listen", f"127.0.0.1:{pbx_port}", "--exit-when-done", script=script)
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    again_code, again_err = finish(again)
    assert (0, 0, 0) == (bridge_code, serve_code, again_code), (bridge_err, serve_err, again_err)
    assert "5 agent requests, 0 failed, 0 rule violations" in bridge_err
    assert ["starting", "started", "cti-lost", "started"] == statuses()
    entries = [json.loads(x) for x in trace.read_text().splitlines()]
    links = [e["event"] for e in entries if e.get("from") == "switch" and e["event"]["kind"] == "link"]
    assert [True, False, True] == [link["up"] for link in links]
    assert "lost" in links[1]["reason"] or "closed" in links[1]["reason"]
    assert [] == check_lines(trace.read_text().splitlines())


def test_serve_whose_device_another_adapter_holds_exits_1_naming_it(tmp_path: Path) -> None:
    """A refused hello is fatal: serve logs why and exits 1 (it would
    otherwise serve the bridge with a switch that never hears it)."""
    pbx, pbx_port = start_pbx(tmp_path)

    async def hold_and_run_serve() -> tuple[int, str]:
        conn = await connect("127.0.0.1", pbx_port)
        await conn.send({"hello": {"devices": ["1001"]}})
        assert {"hello": {"devices": ["1001"]}} == await asyncio.wait_for(conn.recv(), 10)
        bridge, port = start_bridge(tmp_path)
        serve = start_serve_on_pbx(tmp_path, port, pbx_port, "agent-1=1001")
        done = await asyncio.to_thread(finish, serve)
        bridge.kill()
        finish(bridge)
        await conn.close()
        return done

    code, err = asyncio.run(hold_and_run_serve())
    stop(pbx)
    assert 1 == code, err
    assert "the switch link task failed" in err
    assert "refused this adapter: hello refused: device(s) 1001 are held by another connection" in err


def test_serve_refuses_a_state_store_with_the_pbx(tmp_path: Path) -> None:
    """Events the PBX sent after a killed serve's last commit would be lost
    to the restarted one, so --state is refused with --switch pbx."""
    done = subprocess.run(
        [
            *(*CLI, "serve", "--connect", "127.0.0.1:9", "--switch", "pbx", "--pbx", "127.0.0.1:9"),
            *("--state", str(tmp_path / "state.db")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode, done.stderr
    assert "--state cannot be used with --switch pbx" in done.stderr
    assert not (tmp_path / "state.db").exists()


# --------------------------------------------------------------------------
# 4. serve's side: the driver and its options.


async def polled(link: PbxLink, count: int, within: float = 10.0) -> list[SwitchEvent]:
    """The next ``count`` events the driver reports, as the adapter polls them."""
    events: list[SwitchEvent] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            events += link.poll()
            await asyncio.sleep(0.01)
    return events


def test_the_driver_sends_commands_and_hears_their_events_over_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PbxLink: up once the hello is answered (a link event), a command's
    events come back to poll(), an error frame is logged as an error, and
    a link the PBX closes is down, then up again at once (F-CTRL-3)."""

    async def body(state: PbxServer, port: int) -> None:
        link = PbxLink("127.0.0.1", port, ["1001"], backoff=(0.05, 2.0, 0.2))
        task = asyncio.create_task(link.run())
        try:
            assert [SwitchEvent(kind="link", up=True)] == await polled(link, 1)
            assert [] == dispatch(link, Command(id="cmd-1", op="login", device="1001"))  # not acknowledged
            assert [SwitchEvent(kind="agent", device="1001", state="loggedin")] == await polled(link, 1)
            dispatch(link, Command(id="cmd-2", op="answer", call="c9"))
            dispatch(link, Command(id="cmd-3", op="ready", device="1001"))
            assert "ready" == (await polled(link, 1))[0].state  # after the error: the link goes on
            assert "the PBX says: answer cmd-2: no call c9 at this PBX" in caplog.text
            for conn in list(state.conns.values()):
                await conn.close()
            down, up = await polled(link, 2)
            assert (False, "the PBX closed the link", True) == (down.up, down.reason, up.up)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()  # it ends only by cancellation (or a refused hello)

    with_pbx(body)


def test_the_driver_reports_a_pbx_it_cannot_use_and_does_not_hammer_it() -> None:
    """The first connect fails: link down at once. A PBX that accepts and
    closes at once is retried after growing pauses; one that does not
    answer the hello within its bound is given up on, named."""

    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        nobody = PbxLink("127.0.0.1", closed_port, ["1001"], backoff=(5.0, 2.0, 5.0))
        task = asyncio.create_task(nobody.run())
        (down,) = await polled(nobody, 1)
        assert not down.up and down.reason.startswith("PBX unreachable")
        task.cancel()

        accepted = 0

        async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            writer.close()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # the hello is read, never answered

        for handler in (slam, silent):
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            link = PbxLink(
                "127.0.0.1",
                server.sockets[0].getsockname()[1],
                ["1001"],
                backoff=(0.05, 2.0, 0.4),
                hello_timeout=0.2,
            )
            task = asyncio.create_task(link.run())
            await asyncio.sleep(1.0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            events = link.poll()
            assert events and not any(event.up for event in events)
            if handler is slam:
                assert 2 <= accepted <= 8, accepted  # 0.05, 0.1, 0.2, 0.4 s apart: not hundreds
                assert events[0].reason.startswith(
                    ("the PBX closed the link", "the link to the PBX was lost")
                )
            else:
                assert "the PBX did not answer the hello within 0.2 s" == events[0].reason
            server.close()

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--switch", "pbx"], "--switch pbx needs --pbx HOST:PORT"),
        (["--switch", "pbx", "--pbx", "nohost"], "--pbx takes HOST:PORT, got 'nohost'"),
        (["--switch", "pbx", "--pbx", "127.0.0.1:99999"], "--pbx takes HOST:PORT"),
        (["--pbx", "127.0.0.1:7100"], "--pbx goes with --switch pbx"),
        (
            ["--switch", "pbx", "--pbx", "127.0.0.1:7100", "--switch-events", "events.jsonl"],
            "--switch-events cannot be used with --switch pbx",
        ),
    ],
)
def test_serve_pbx_options_are_checked(
    options: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--connect", "127.0.0.1:9", *options])
    assert 2 == exited.value.code
    assert words in capsys.readouterr().err

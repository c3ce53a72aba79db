"""telephony-fsm bridge and serve as separate processes over loopback TCP.

The bridge plays the demo's agent session, the serve process runs the engine
with the simulated switch and plays the customer's call. Both must exit 0
with zero rule violations, and both traces must pass the checker. A second
test puts a proxy between them that kills the connection mid-consult.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.framing import FrameDecoder, decode_json
from adapters.session import DEMO_CALL
from fsm.checker import check_lines

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "adapters.cli"]


def start_bridge(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[str], int]:
    bridge = subprocess.Popen(
        [
            *CLI,
            "bridge",
            "--listen",
            "127.0.0.1:0",
            "--trace",
            str(tmp_path / "bridge.jsonl"),
            "--timeout",
            "40",
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert bridge.stdout is not None
    line = bridge.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), line
    return bridge, int(line.rsplit(":", 1)[1])


def start_serve(
    tmp_path: Path, port: int, *options: str, customers: list[dict[str, object]] | None = None
) -> subprocess.Popen[str]:
    events = tmp_path / "customer.jsonl"
    customer = (
        customers if customers is not None else [s["event"] for s in DEMO_CALL if s["actor"] == "customer"]
    )
    events.write_text("".join(json.dumps({"from": "switch", "event": e}) + "\n" for e in customer))
    return subprocess.Popen(
        [
            *CLI,
            "serve",
            "--connect",
            f"127.0.0.1:{port}",
            "--switch-events",
            str(events),
            "--trace",
            str(tmp_path / "serve.jsonl"),
            "--max-reconnects",
            "10",
            "--exit-on-close",  # the bridge closes the connection when its session is over
            *options,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"process did not stop: {err}") from None
    return process.returncode, err


def test_full_call_between_bridge_and_serve_processes(tmp_path: Path) -> None:
    """Full call with consult, alternate, conference and transfer over TCP
    (D-WIRE); both exit 0 with zero violations; both traces pass check."""
    bridge, port = start_bridge(tmp_path)
    serve = start_serve(tmp_path, port)
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert (bridge_code, serve_code) == (0, 0), (bridge_err, serve_err)
    assert "11 agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err
    for trace in ("bridge.jsonl", "serve.jsonl"):
        lines = (tmp_path / trace).read_text().splitlines()
        assert check_lines(lines) == [], trace
    entries = [json.loads(x) for x in (tmp_path / "bridge.jsonl").read_text().splitlines()]
    assert [1] == [e["connection"] for e in entries if "connection" in e]  # harness.md "Traces"
    names = [e["message"]["header"]["name"] for e in entries if "message" in e]
    for request in ("consult", "alternate", "consultconference", "consulttransfer", "complete"):
        assert f"interaction.request.{request}" in names


class Proxy:
    """A TCP proxy that forwards frames and, once, drops both connections
    right after the client's answer to the consult conversation's init: the
    client's with a reset (a loss, D-WIRE, which serve reconnects after even
    with --exit-on-close)."""

    def __init__(self, upstream: int, *, mid_frame: bool = False) -> None:
        self.upstream = upstream
        #: drop in the middle of the frame instead of after it
        self.mid_frame = mid_frame
        self.dropped = 0
        self.connections = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._accepted, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        server.close()

    async def _accepted(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        bridge_r, bridge_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        kill = asyncio.Event()

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, watch: bool) -> None:
            decoder = FrameDecoder()
            while not kill.is_set():
                data = await reader.read(65536)
                if not data:
                    break
                if watch and not self.dropped:
                    for frame in decoder.feed(data):
                        message = decode_json(frame)
                        if _consult_initialized(message):
                            self.dropped += 1
                            kill.set()
                if kill.is_set() and self.mid_frame:
                    data = data[: len(data) // 2]  # the frame is cut short
                writer.write(data)
                await writer.drain()
            if kill.is_set():  # a reset for the client, not a clean close at a frame boundary
                with contextlib.suppress(OSError):
                    client_w.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            for w in (client_w, bridge_w):
                w.close()

        await asyncio.gather(
            pipe(client_r, bridge_w, watch=True),
            pipe(bridge_r, client_w, watch=False),
            return_exceptions=True,
        )

    @contextmanager
    def running(self) -> Iterator[Proxy]:
        self.thread.start()
        assert self.ready.wait(10)
        try:
            yield self
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def _consult_initialized(message: object) -> bool:
    if not isinstance(message, dict):
        return False
    headers, body = message.get("header", {}), message.get("body")
    return (
        headers.get("name") == "conversation.query.init"
        and headers.get("result") == "SUCCESS"
        and isinstance(body, dict)
        and body.get("role") == "consult"
    )


@pytest.mark.parametrize("mid_frame", [False, True], ids=["after-frame", "mid-frame"])
def test_connection_killed_mid_consult_and_call_completes_after_reconnect(
    tmp_path: Path, mid_frame: bool
) -> None:
    """D-LIFE-5: serve reconnects with backoff, the bridge re-initializes every
    live destination (D-CC-3 re-registration), and the call completes; no
    request is executed twice (D-DUP) and no rule is broken. Mid-frame: the
    bridge sees a truncated frame (D-WIRE) before the connection closes."""
    bridge, port = start_bridge(tmp_path)
    with Proxy(port, mid_frame=mid_frame).running() as proxy:
        serve = start_serve(tmp_path, proxy.port)
        bridge_code, bridge_err = finish(bridge)
        serve_code, serve_err = finish(serve)
    assert proxy.dropped == 1
    assert (bridge_code, serve_code) == (0, 0), (bridge_err, serve_err)
    assert "0 failed, 0 rule violations, 2 connections" in bridge_err
    assert "Traceback" not in bridge_err
    assert "Traceback" not in serve_err
    if mid_frame:
        assert "truncated: the stream ended after" in bridge_err
    for trace in ("bridge.jsonl", "serve.jsonl"):  # harness.md "Traces": where the reconnect happened
        entries = [json.loads(x) for x in (tmp_path / trace).read_text().splitlines()]
        assert [1, 2] == [e["connection"] for e in entries if "connection" in e], trace
    serve_trace = (tmp_path / "serve.jsonl").read_text().splitlines()
    commands = [json.loads(x)["command"]["op"] for x in serve_trace if '"to":"switch"' in x]
    call = ["answer", "consult", "alternate", "alternate", "conference", "consult", "transfer"]
    # every agent step executed exactly once; the agent stays logged in across the reconnect (F-SESS-2)
    expected = ["login", "ready", *call, "logout"]
    assert expected == commands
    inits = [x for x in (tmp_path / "bridge.jsonl").read_text().splitlines() if "interaction.query.init" in x]
    assert len([x for x in inits if '"from":"bridge"' in x]) >= 2  # the re-initialization


def test_two_agents_each_with_a_consulting_call_at_the_same_time(tmp_path: Path) -> None:
    """F-SESS-1, D-LEG, D-NEW: the bridge logs two agents in on one connection
    (--login twice) and plays both agents' calls, each with consults, their
    steps interleaved; serve knows both agents (--agent twice) and the
    customers call each one's device. Both exit 0, 0 violations, both
    traces clean; each call is announced on its own agent's channel."""
    from adapters.session import agents_call

    steps = tmp_path / "steps.jsonl"
    both = agents_call(2)
    steps.write_text("".join(json.dumps(s) + "\n" for s in both if s["actor"] == "agent"))
    bridge, port = start_bridge(tmp_path, "--login", "agent-1", "--login", "agent-2", "--steps", str(steps))
    customers = [s["event"] for s in both if s["actor"] == "customer"]
    serve = start_serve(
        tmp_path, port, "--agent", "agent-1=1001", "--agent", "agent-2=1002", customers=customers
    )
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    assert (bridge_code, serve_code) == (0, 0), (bridge_err, serve_err)
    agent_steps = sum(1 for s in both if s["actor"] == "agent")
    logins = 2 * 3  # activate, ready and logout for each agent
    assert f"{agent_steps + logins} agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines()), trace
    entries = [json.loads(x) for x in (tmp_path / "serve.jsonl").read_text().splitlines()]
    # each call is on its own agent's channel (announced, or listed when it came before the channel's init)
    inits = {
        e["message"]["header"]["target"]
        for e in entries
        if e.get("from") == "bridge" and e["message"]["header"]["name"] == "interaction.query.init"
    }
    assert {"S1.G1.1001.c1", "S2.G1.1002.c2"} == inits


def test_a_bridge_wait_that_times_out_fails_the_run_naming_it(tmp_path: Path) -> None:
    """A bridge step waits for a state with a bound: when it does not
    come, the run fails (exit 1) with a message naming what it waited for;
    the session still ends (logout, dispose) and the traces stay clean."""
    steps = tmp_path / "agent.jsonl"
    waits = [
        {"actor": "bridge", "wait": {"state": "ALERTING"}, "timeout": 10},
        {"actor": "bridge", "wait": {"seconds": 0.2}},
        {"actor": "bridge", "wait": {"state": "HELD", "role": "primary"}, "timeout": 1},
    ]
    steps.write_text("".join(json.dumps(s) + "\n" for s in waits), encoding="utf-8")
    bridge, port = start_bridge(tmp_path, "--steps", str(steps))
    offered: dict[str, object] = {"kind": "offered", "call": "c1", "device": "1001", "ani": "5551000"}
    serve = start_serve(tmp_path, port, customers=[offered])
    bridge_code, bridge_err = finish(bridge)
    finish(serve)
    assert 1 == bridge_code, bridge_err
    assert "waited 1 s for the primary conversation to be HELD: it did not happen" in bridge_err
    for trace in ("bridge.jsonl", "serve.jsonl"):
        assert [] == check_lines((tmp_path / trace).read_text().splitlines(), end_of_run=False), trace

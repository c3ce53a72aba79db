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
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.pbx.core import LinkError, Pbx
from adapters.session import agents_call
from adapters.transport import connect
from fsm.checker import check_lines
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
        ("answer", "a command must be a JSON object, not str"),
        ({"id": "cmd-1", "op": "answer", "call": "c1", "colour": "red"}, "unknown command field(s) 'colour'"),
        ({"id": "cmd-1", "op": "answer", "call": 7}, "command field 'call' must be a string, not int"),
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


def test_a_broken_frame_closes_that_connection_only(tmp_path: Path) -> None:
    pbx, port = start_pbx(tmp_path)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(len(b"{not json").to_bytes(4, "big") + b"{not json")
        with pytest.raises(ConnectionResetError):  # the stream is broken: reset (F-WIRE, as the bridge wire)
            raw.recv(100)

    async def hello() -> dict[str, Any] | None:
        conn = await connect("127.0.0.1", port)
        await conn.send({"hello": {"devices": ["1001"]}})
        answer = await asyncio.wait_for(conn.recv(), 10)
        await conn.close()
        return answer

    assert {"hello": {"devices": ["1001"]}} == asyncio.run(hello())
    code, err = stop(pbx)
    assert 0 == code, err
    assert "broken stream from 127.0.0.1" in err


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json", "script.jsonl:2: not JSON"),
        ('{"wait": {"device": "1001"}}', 'script.jsonl:2: a wait is {"wait": {"device": D, "state": S}'),
        ('{"wait": {"connected": "1001"}, "timeout": -1}', "script.jsonl:2: timeout must be a number"),
        ('{"sleep": "soon"}', 'script.jsonl:2: a pause is {"sleep": SECONDS}'),
        ('{"call": "c1"}', "script.jsonl:2: a step is a switch event (with 'kind'), a wait or a sleep"),
    ],
)
def test_a_bad_script_line_is_a_usage_error_naming_it(tmp_path: Path, line: str, words: str) -> None:
    script = tmp_path / "script.jsonl"
    script.write_text("# a comment\n" + line + "\n", encoding="utf-8")
    done = subprocess.run(
        [*CLI, "pbx", "--listen", "127.0.0.1:0", "--script", str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode, done.stderr
    assert words in done.stderr


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
    steps = tmp_path / "steps.jsonl"
    steps.write_text(json.dumps({"actor": "bridge", "wait": {"seconds": 6}}) + "\n")
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
    stop(pbx)
    until(lambda: "cti-lost" in statuses(), "no cti-lost")
    again, _ = start_pbx(tmp_path, "--listen", f"127.0.0.1:{pbx_port}")
    until(lambda: statuses()[-1:] == ["started"] and "cti-lost" in statuses(), "not started again")
    bridge_code, bridge_err = finish(bridge)
    serve_code, serve_err = finish(serve)
    stop(again)
    assert (0, 0) == (bridge_code, serve_code), (bridge_err, serve_err)
    assert ["starting", "started", "cti-lost", "started"] == statuses()
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

"""The PBX process, the reference bridge and serve as three processes on
loopback: what harness.md promises of ``telephony-fsm pbx`` and ``serve
--switch pbx`` together (the other end-to-end runs are in tests/test_pbx.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.test_bridge_serve_e2e import CLI, ROOT, finish, start_bridge
from tests.test_pbx import start_pbx, start_serve_on_pbx


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_transfer_and_a_customer_who_hangs_up_through_the_pbx_process(tmp_path: Path) -> None:
    """Two agents on one serve: agent-1's customer is consulted on and
    transferred; agent-2's customer hangs up once the call is talking
    (the PBX's script waits for that at the PBX), and the agent completes.
    The three processes exit 0, the bridge counts no violation, ``telephony-fsm
    check`` passes serve's trace, and every command serve sent reached the
    PBX once, over the link (its --trace)."""
    agent: list[dict[str, Any]] = [
        {"actor": "agent", "action": "accept", "interaction": "c1"},
        {"actor": "agent", "action": "accept", "interaction": "c2"},
        {"actor": "agent", "action": "consult", "interaction": "c1", "body": {"destination": "200"}},
        {"actor": "agent", "action": "transfer", "interaction": "c1"},
        {"actor": "bridge", "wait": {"state": "ENDED"}, "interaction": "c2", "timeout": 20},
        {"actor": "agent", "action": "complete", "interaction": "c2", "body": {"wrapup": "hung up"}},
        {"actor": "agent", "action": "complete", "interaction": "c1", "body": {"wrapup": "transferred"}},
    ]
    steps = tmp_path / "steps.jsonl"
    steps.write_text("".join(json.dumps(step) + "\n" for step in agent), encoding="utf-8")
    script: list[object] = [
        {"wait": {"device": "1001", "state": "ready"}, "timeout": 20},
        {"kind": "offered", "call": "c1", "device": "1001", "ani": "5551000", "dnis": "800"},
        {"wait": {"device": "1002", "state": "ready"}, "timeout": 20},
        {"kind": "offered", "call": "c2", "device": "1002", "ani": "5552000"},
        {"wait": {"call": "c2", "state": "TALKING"}, "timeout": 20},
        {"kind": "ended", "call": "c2", "cause": "hangup"},
        {"wait": {"call": "c1", "state": "ended"}, "timeout": 20},
    ]
    pbx_trace = tmp_path / "pbx.jsonl"
    pbx, pbx_port = start_pbx(tmp_path, "--exit-when-done", "--trace", str(pbx_trace), script=script)
    bridge, port = start_bridge(tmp_path, "--login", "agent-1", "--login", "agent-2", "--steps", str(steps))
    serve = start_serve_on_pbx(tmp_path, port, pbx_port, "agent-1=1001", "agent-2=1002")
    (bridge_code, bridge_err), (serve_code, serve_err) = finish(bridge), finish(serve)
    pbx_code, pbx_err = finish(pbx)
    assert (0, 0, 0) == (bridge_code, serve_code, pbx_code), (bridge_err, serve_err, pbx_err)
    requests = sum(1 for step in agent if step["actor"] == "agent") + 2 * 3  # and activate, ready, logout
    assert f"{requests} agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err
    check = subprocess.run(
        [*CLI, "check", str(tmp_path / "serve.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == check.returncode, check.stdout + check.stderr
    served = lines_of(tmp_path / "serve.jsonl")
    sent = [entry["command"] for entry in served if entry.get("to") == "switch"]
    at_pbx = lines_of(pbx_trace)
    received = [e["frame"]["command"] for e in at_pbx if "command" in e.get("frame", {}) and "from" in e]
    assert sent == received
    assert [] == [e for e in at_pbx if "error" in e.get("frame", {})]
    assert ["1001", "1002"] == next(e["frame"]["hello"]["devices"] for e in at_pbx if "from" in e)
    # the customer's hang-up reached the engine from the PBX, and ended agent-2's interaction
    ended = [e["event"] for e in served if e.get("from") == "switch" and e["event"]["kind"] == "ended"]
    assert {"kind": "ended", "call": "c2", "cause": "hangup"} in ended
    names = [
        (e["message"]["header"]["name"], e["message"]["header"]["target"])
        for e in served
        if "to" in e and "message" in e
    ]
    assert ("interaction.ended", "S2.G1.1002.c2") in names
    assert "no adapter is connected: done" in pbx_err
    for err in (bridge_err, serve_err, pbx_err):
        assert "Traceback" not in err and " ERROR " not in err, err

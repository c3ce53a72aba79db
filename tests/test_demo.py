"""telephony-fsm demo and the reference bridge (issue: bridge, transport, demo)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from adapters.bridge import Send
from adapters.demo import run_demo
from adapters.session import DEMO_CALL
from fsm.checker import Violation, check_lines
from tests.driver import logged_in_bridge

ROOT = Path(__file__).resolve().parent.parent
CH = "S1.G1.1001"


def test_demo_full_call_is_clean_and_its_trace_passes_check() -> None:
    """The demo's call: every agent request SUCCESS, zero violations (S-REQ-1,
    S-INIT-6, D-CONS-3 ...), and its trace passes the checker."""
    out, trace = io.StringIO(), io.StringIO()
    assert run_demo(out, trace=trace) == 0
    text = out.getvalue()
    assert "rule violations: 0" in text
    # the call's agent steps, and the login's activate and ready and the logout (D-CH-1, D-SESS-2)
    assert f"agent requests: {len(DEMO_CALL) - 1 + 3}, failed: 0" in text
    assert "\x1b[" not in text  # plain when not a terminal
    assert check_lines(trace.getvalue().splitlines()) == []
    for step in ("consult", "alternate", "consultconference", "consulttransfer", "complete"):
        assert f"interaction.request.{step}" in text


def test_demo_shows_state_after_every_step() -> None:
    out = io.StringIO()
    run_demo(out)
    text = out.getvalue()
    assert len(DEMO_CALL) == text.count("\n== ") - 3  # the login, the steps, the logout, the summary
    assert "state: control proc-1.CONTROL started" in text
    assert "session S1 agent agent-1: channel ACTIVE.READY" in text
    assert "state: interaction c1 STARTED with a connected consult call" in text
    assert "state: no live interaction" in text.rsplit("== summary", 1)[0].rsplit("\n== ", 1)[1]
    assert "session S1" not in text.rsplit("== logout", 1)[1]  # logged out and disposed


def test_demo_exits_1_when_an_agent_request_fails() -> None:
    """A refused request (consult in ALERTING: S-CONS-1) is reported and fails the demo."""
    steps = [DEMO_CALL[0], {"actor": "agent", "action": "consult", "body": {"destination": "200"}}]
    out = io.StringIO()
    assert run_demo(out, steps=steps) == 1
    assert "failed: interaction.request.consult: consult refused" in out.getvalue()


def test_demo_command_as_a_process(tmp_path: Path) -> None:
    trace = tmp_path / "demo.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "demo", "--trace", str(trace)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "rule violations: 0" in done.stdout
    assert check_lines(trace.read_text().splitlines()) == []


def test_demo_bad_step_file_is_a_usage_error(tmp_path: Path) -> None:
    steps = tmp_path / "steps.jsonl"
    steps.write_text('{"actor": "agent", "action": "fly"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "demo", "--steps", str(steps)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown action 'fly'" in done.stderr


# -- the reference bridge against a deliberately misbehaving client (a fake peer)


def created(iid: str = "c1") -> dict[str, Any]:
    return {
        "header": {"type": "cti.event", "name": "interaction.created", "target": CH},
        "body": {"interactionid": iid, "type": "telephony"},
    }


def sent(outputs: list[Any]) -> list[dict[str, Any]]:
    return [o.message for o in outputs if isinstance(o, Send)]


def answer(request: dict[str, Any], body: Any = None, **headers: Any) -> dict[str, Any]:
    h = request["header"]
    message: dict[str, Any] = {
        "header": {
            "type": "cti.response",
            "name": h["name"],
            "target": h["target"],
            "requestId": h["requestId"],
            "result": "SUCCESS",
            **headers,
        },
        "body": body if body is not None else {},
    }
    return message


def rules(violations: list[Any]) -> list[str]:
    return [v.rule for v in violations if isinstance(v, Violation)]


def test_bridge_initializes_on_created_and_creates_listed_conversations() -> None:
    """S-INIT-6: init, then createconversation + conversation init per listed leg."""
    bridge = logged_in_bridge()
    (init,) = sent(bridge.receive(created()))
    assert init["header"]["name"] == "interaction.query.init"
    body = {
        "interaction-state": "ALERTING",
        "interaction-data": {},
        "conversations": {"primary": {"id": "c1"}},
    }
    (create,) = sent(bridge.receive(answer(init, body)))
    assert create["body"] == {"id": "conv-1", "nativeid": "c1"}
    (conv_init,) = sent(bridge.receive(answer(create)))
    assert f"{CH}.c1.conv-1" == conv_init["header"]["target"]
    assert bridge.violations == []


def test_bridge_queues_interaction_events_until_conversations_initialize() -> None:
    """S-INIT-6: events held while a listed conversation is not initialized,
    delivered afterwards in arrival order."""
    bridge = logged_in_bridge()
    (init,) = sent(bridge.receive(created()))
    body = {
        "interaction-state": "ALERTING",
        "interaction-data": {},
        "conversations": {"primary": {"id": "c1"}},
    }
    (create,) = sent(bridge.receive(answer(init, body)))
    started = {
        "header": {"type": "cti.event", "name": "interaction.started", "target": f"{CH}.c1"},
        "body": {},
    }
    changed = {
        "header": {"type": "cti.event", "name": "interaction.datachanged", "target": f"{CH}.c1"},
        "body": {"interaction-data": {"k": "v"}},
    }
    assert [o for o in bridge.receive(started) if not isinstance(o, Send)] == []
    assert [o for o in bridge.receive(changed) if not isinstance(o, Send)] == []
    (conv_init,) = sent(bridge.receive(answer(create)))
    body = {"conversation-state": "ALERTING", "nativeid": "c1", "role": "primary"}
    delivered = [
        o.event["header"]["name"] for o in bridge.receive(answer(conv_init, body)) if hasattr(o, "event")
    ]
    assert delivered == ["interaction.started", "interaction.datachanged"]


def test_bridge_flags_event_before_init() -> None:
    """S-LIFE-2: an event on the interaction before its init was answered."""
    bridge = logged_in_bridge()
    bridge.receive(created())
    early = {"header": {"type": "cti.event", "name": "interaction.started", "target": f"{CH}.c1"}, "body": {}}
    assert rules(bridge.receive(early)) == ["S-LIFE-2"]


def test_bridge_flags_missing_response_and_wrong_request_id() -> None:
    """S-REQ-1 (never answered) and S-REQ-2 (answer to no pending request)."""
    bridge = logged_in_bridge()
    (init,) = sent(bridge.receive(created()))
    wrong = answer(init, {"interaction-state": "ALERTING", "interaction-data": {}, "conversations": {}})
    wrong["header"]["requestId"] = "{not-sent}"
    assert "S-REQ-2" in rules(bridge.receive(wrong))
    assert "S-REQ-1" in rules(bridge.finish())


def test_bridge_flags_bad_init_json() -> None:
    """S-INIT-3 (no primary while ALERTING), S-INIT-4 (consult while ALERTING),
    S-INIT-5 (conversations while ENDED)."""
    cases = [
        ({"interaction-state": "ALERTING", "interaction-data": {}, "conversations": {}}, "S-INIT-3"),
        (
            {
                "interaction-state": "ALERTING",
                "interaction-data": {},
                "conversations": {"primary": {"id": "c1"}, "consult": {"id": "c2"}},
            },
            "S-INIT-4",
        ),
        (
            {
                "interaction-state": "ENDED",
                "interaction-data": {},
                "conversations": {"primary": {"id": "c1"}},
            },
            "S-INIT-5",
        ),
    ]
    for body, rule in cases:
        bridge = logged_in_bridge()
        (init,) = sent(bridge.receive(created()))
        assert rule in rules(bridge.receive(answer(init, body))), (body, rule)


def test_session_steps_round_trip_as_jsonl(tmp_path: Path) -> None:
    from adapters.session import load_steps

    path = tmp_path / "call.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in DEMO_CALL))
    assert load_steps(path) == DEMO_CALL


def test_demo_with_three_agents_keeps_their_calls_apart(tmp_path: Path) -> None:
    """D-LEG, D-NEW, F-SESS-1: demo --agent-count 3 logs three agents in on one
    connection and plays their calls interleaved; each call is announced on
    its own agent's channel, every request succeeds, no rule is broken."""
    trace = tmp_path / "demo.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "demo", "--agent-count", "3", "--trace", str(trace)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 0 == done.returncode, done.stdout[-2000:]
    assert "rule violations: 0" in done.stdout
    assert f"agent requests: {3 * (len(DEMO_CALL) - 1 + 3)}, failed: 0" in done.stdout
    entries = [json.loads(line) for line in trace.read_text().splitlines()]
    created = {
        e["message"]["body"]["interactionid"]: e["message"]["header"]["target"]
        for e in entries
        if e.get("to") == "bridge" and e["message"]["header"]["name"] == "interaction.created"
    }
    assert {"c1": "S1.G1.1001", "c2": "S2.G1.1002", "c3": "S3.G1.1003"} == created
    assert [] == check_lines(trace.read_text().splitlines())

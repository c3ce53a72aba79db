"""End-to-end tests on real SIP calls over loopback (issue: a real switch).

Each test runs ``telephony-fsm demo --switch sip`` as a process: the
reference bridge, the engine and the agent's SIP softphone (PJSIP) in it,
the scripted far ends (:mod:`adapters.sip.cast`) in a second process. The
assertions read what the SIP peers themselves reported (call states, media
direction, the level of the audio each one hears: every far end plays a
tone of its own), not only the engine's messages; and every run's trace
must pass ``telephony-fsm check``.

The SIP stack is the optional extra ``sip``; without it these tests are
skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsm.checker import check_lines
from tests.test_bridge_serve_e2e import CLI, finish, start_bridge

if importlib.util.find_spec("pjsua2") is None:
    pytest.skip(
        "the SIP tests need PJSIP's bindings: pip install -e '.[sip]' (extra 'sip')", allow_module_level=True
    )

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = "5551000"


class Run:
    def __init__(self, tmp_path: Path, steps: list[dict[str, Any]] | None) -> None:
        self.trace = tmp_path / "trace.jsonl"
        self.peers_file = tmp_path / "peers.jsonl"
        command = [sys.executable, "-m", "adapters.cli", "demo", "--switch", "sip", "--colour", "never"]
        command += ["--trace", str(self.trace), "--peers", str(self.peers_file)]
        if steps is not None:
            steps_file = tmp_path / "steps.jsonl"
            steps_file.write_text("".join(json.dumps(s) + "\n" for s in steps), encoding="utf-8")
            command += ["--steps", str(steps_file)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        self.code = done.returncode
        self.out = done.stdout
        self.peers = [json.loads(line) for line in self.peers_file.read_text(encoding="utf-8").splitlines()]
        self.entries = [json.loads(line) for line in self.trace.read_text(encoding="utf-8").splitlines()]

    def report(self, step: int) -> list[dict[str, Any]]:
        """The far ends' calls after ``step`` (1-based), live ones only."""
        for item in self.peers:
            if item.get("step") == step and "report" in item:
                calls: list[dict[str, Any]] = item["report"]["calls"]
                return calls
        raise AssertionError(f"no report after step {step}")

    def call(self, step: int, party: str, remote: str | None = None) -> dict[str, Any]:
        found = [
            c for c in self.report(step) if c["party"] == party and (remote is None or c["remote"] == remote)
        ]
        assert len(found) == 1, (step, party, self.report(step))
        return found[0]

    def seen(self, party: str) -> list[dict[str, Any]]:
        return [item["seen"] for item in self.peers if "seen" in item and item["seen"]["party"] == party]

    def switch_events(self, kind: str) -> list[dict[str, Any]]:
        return [e["event"] for e in self.entries if e.get("from") == "switch" and e["event"]["kind"] == kind]

    def check(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "adapters.cli", "check", str(self.trace)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (0, "") == (done.returncode, done.stdout), done.stdout


def _call_in(**extra: Any) -> dict[str, Any]:
    return {"actor": "far", "do": "call", "party": CUSTOMER, "to": "800", **extra}


def _agent(action: str, **properties: str) -> dict[str, Any]:
    step: dict[str, Any] = {"actor": "agent", "action": action}
    if properties:
        step["body"] = properties
    return step


def test_inbound_call_accepted_and_completed(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        [
            _call_in(data={"account": "42"}),
            _agent("accept"),
            {"actor": "agent", "action": "senddtmf", "body": {"digits": "42#"}},
            {"actor": "far", "do": "hangup", "party": CUSTOMER},
            _agent("complete"),
        ],
    )
    assert 0 == run.code, run.out
    run.check()
    # the offer carried the caller, the number dialled and the data header
    offered = run.switch_events("offered")
    assert [("5551000", "800", {"account": "42"})] == [(e["ani"], e["dnis"], e["data"]) for e in offered]
    # the customer's phone rang, then talked with the agent both ways
    assert "EARLY" == run.call(1, CUSTOMER)["state"]
    talking = run.call(2, CUSTOMER, "800")
    assert ("CONFIRMED", "sendrecv") == (talking["state"], talking["media"])
    # RFC 4733 digits reached the customer
    digits = [item["dtmf"]["digit"] for item in run.peers if "dtmf" in item]
    assert ["4", "2", "#"] == digits
    # after the customer hung up, nobody is on a call
    assert [] == run.report(4)
    assert ["ended"] == [e["kind"] for e in run.switch_events("ended")]
    assert "summary" in run.out
    assert "rule violations: 0" in run.out


def test_full_call_consult_alternate_conference_transfer(tmp_path: Path) -> None:
    run = Run(tmp_path, None)  # the demo's SIP call (adapters.sip.demo.SIP_CALL)
    assert 0 == run.code, run.out
    run.check()
    # 3: consult: the customer is held (the agent sends only), the expert talks
    assert "recvonly" == run.call(3, CUSTOMER, "800")["media"]
    assert "sendrecv" == run.call(3, "200", "800")["media"]
    # 4: the desktop waited for the expert's answer; 5 and 6: alternate twice: who is held swaps each time
    assert ("sendrecv", "recvonly") == (run.call(5, CUSTOMER)["media"], run.call(5, "200")["media"])
    assert ("recvonly", "sendrecv") == (run.call(6, CUSTOMER)["media"], run.call(6, "200")["media"])
    # until the conference neither hears the other (the agent's microphone is silent) ...
    for step in (3, 4, 5, 6):
        assert [0, 0] == [run.call(step, party)["rx_level"] for party in (CUSTOMER, "200")]
    # 7: conference: both talk, and each hears the other's tone through the agent's mix
    customer, expert = run.call(7, CUSTOMER, "800"), run.call(7, "200", "800")
    assert ("sendrecv", "sendrecv") == (customer["media"], expert["media"])
    assert customer["rx_level"] > 0, (customer, expert)
    assert expert["rx_level"] > 0, (customer, expert)
    assert "mix:   agent -> 200, 5551000; 200 -> agent, 5551000; 5551000 -> agent, 200" in run.out
    # 8: the expert leaves; the customer stays with the agent
    assert [CUSTOMER] == [c["party"] for c in run.report(8)]
    # 11: attended transfer: the customer and 300 are in one call, the agent is out
    after = run.report(11)
    assert {(CUSTOMER, "300"), ("300", CUSTOMER)} == {(c["party"], c["remote"]) for c in after}
    assert all(c["state"] == "CONFIRMED" and c["media"] == "sendrecv" for c in after), after
    assert all(c["rx_level"] > 0 for c in after), after
    # it was REFER with Replaces: the customer was referred, 300 replaced the agent's call
    assert any("refer" in item and "Replaces=" in item["refer"]["to"] for item in run.peers)
    assert any("replaced" in item and item["replaced"]["party"] == "300" for item in run.peers)
    causes = [(e["call"], e["cause"]) for e in run.switch_events("ended")]
    assert [("sip-2", "conferenced"), ("sip-3", "transferred"), ("sip-1", "transferred")] == causes


def test_consult_to_a_busy_number(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        [
            _call_in(),
            _agent("accept"),
            _agent("consult", destination="busy-1"),
            {"actor": "agent", "action": "retrieve"},
            {"actor": "far", "do": "hangup", "party": CUSTOMER},
            _agent("complete"),
        ],
    )
    assert 0 == run.code, run.out
    run.check()
    # the busy party answered the INVITE with 486, and the leg failed with that status
    assert 486 in [s["code"] for s in run.seen("busy-1")]
    assert [("sip-2", "486 Busy Here")] == [(e["call"], e["reason"]) for e in run.switch_events("failed")]
    # the customer was held for the consult, then retrieved
    assert "recvonly" == run.call(3, CUSTOMER)["media"]
    assert "sendrecv" == run.call(4, CUSTOMER)["media"]
    assert [] == run.report(5)


def test_a_consult_released_while_it_rings_ends_released(tmp_path: Path) -> None:
    """The agent gives up on a ringing consult: CANCEL, which the far end
    answers with 487; the leg ended because this side released it (cause
    ``released``), not a failure of the far end (issue: SIP endpoint)."""
    run = Run(
        tmp_path,
        [
            _call_in(),
            _agent("accept"),
            _agent("consult", destination="ring-1"),
            {"actor": "bridge", "wait": {"state": "ALERTING", "role": "consult"}},
            {"actor": "agent", "action": "release", "role": "consult"},
            {"actor": "agent", "action": "retrieve"},
            {"actor": "far", "do": "hangup", "party": CUSTOMER},
            _agent("complete"),
        ],
    )
    assert 0 == run.code, run.out
    run.check()
    assert 487 in [s["code"] for s in run.seen("ring-1")], run.seen("ring-1")
    assert [] == run.switch_events("failed")
    assert ("sip-2", "released") in [(e["call"], e["cause"]) for e in run.switch_events("ended")]


def test_customer_hangs_up_during_a_consult(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        [
            _call_in(),
            _agent("accept"),
            _agent("consult", destination="200"),
            {"actor": "far", "do": "hangup", "party": CUSTOMER},
            # the desktop still knows the expert's conversation as the consult one
            {"actor": "agent", "action": "release", "role": "consult"},
            _agent("complete"),
        ],
    )
    assert 0 == run.code, run.out
    run.check()
    # the customer is gone; the expert is still on the line with the agent (D-PRIMARY-LOSS)
    assert [("200", "800", "CONFIRMED")] == [(c["party"], c["remote"], c["state"]) for c in run.report(4)]
    # the agent releases the expert (now the primary): nobody is left
    assert [] == run.report(5)
    ended = [(e["call"], e["cause"]) for e in run.switch_events("ended")]
    assert ("sip-1", "remote: 200 Normal call clearing") == ended[0]
    assert ("sip-2", "released") == ended[1]


def test_blind_transfer(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        [
            _call_in(),
            _agent("accept"),
            {"actor": "agent", "action": "blindtransfer", "body": {"destination": "300"}},
            _agent("complete"),
        ],
    )
    assert 0 == run.code, run.out
    run.check()
    after = run.report(3)
    assert {(CUSTOMER, "300"), ("300", CUSTOMER)} == {(c["party"], c["remote"]) for c in after}
    assert all(c["state"] == "CONFIRMED" and c["rx_level"] > 0 for c in after), after
    # a plain REFER (no Replaces), and the agent's leg ended as transferred
    refers = [item["refer"]["to"] for item in run.peers if "refer" in item]
    assert 1 == len(refers)
    assert "Replaces" not in refers[0]
    assert [("sip-1", "transferred")] == [(e["call"], e["cause"]) for e in run.switch_events("ended")]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_with_the_sip_softphone_against_the_bridge_process(tmp_path: Path) -> None:
    """``serve --switch sip`` as an adapter process: the bridge process
    drives it over TCP while the customer calls its softphone over SIP."""
    from adapters.sip.demo import CastProcess  # the SIP stack loads only when this test runs

    sip_port = _free_udp_port()
    cast = CastProcess(f"sip:agent@127.0.0.1:{sip_port}")
    try:
        steps = tmp_path / "agent.jsonl"
        agent_steps = [_agent("accept"), {"actor": "agent", "action": "release"}, _agent("complete")]
        steps.write_text("".join(json.dumps(s) + "\n" for s in agent_steps), encoding="utf-8")
        bridge, port = start_bridge(tmp_path, "--steps", str(steps))
        serve = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--connect",
                f"127.0.0.1:{port}",
                "--switch",
                "sip",
                "--sip-listen",
                f"127.0.0.1:{sip_port}",
                "--sip-domain",
                f"127.0.0.1:{cast.port}",
                "--trace",
                str(tmp_path / "serve.jsonl"),
                "--max-reconnects",
                "3",
                "--exit-on-close",  # the bridge closes the connection when its session is over
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        cast.send({"do": "call", "party": CUSTOMER, "to": "800"})
        bridge_code, bridge_err = finish(bridge)
        serve_code, serve_err = finish(serve)
        report, seen = cast.report("end")
    finally:
        cast.close()
    assert (0, 0) == (bridge_code, serve_code), (bridge_err, serve_err)
    assert "6 agent requests, 0 failed, 0 rule violations, 1 connections" in bridge_err
    for trace in ("bridge.jsonl", "serve.jsonl"):
        lines = (tmp_path / trace).read_text().splitlines()
        assert [] == check_lines(lines), trace
    # the customer's phone talked with the agent, then the agent hung up
    states = [item["seen"]["state"] for item in seen if "seen" in item]
    assert "CONFIRMED" in states, states
    assert "DISCONNECTED" == states[-1], states
    assert report is not None
    assert [] == report["calls"]


def test_hold_retrieve_and_blind_conference(tmp_path: Path) -> None:
    run = Run(
        tmp_path,
        [
            _call_in(),
            _agent("accept"),
            {"actor": "agent", "action": "hold"},
            {"actor": "agent", "action": "retrieve"},
            {"actor": "agent", "action": "blindconference", "body": {"destination": "300"}},
            {"actor": "agent", "action": "release"},
            _agent("complete"),
        ],
    )
    assert 0 == run.code, run.out
    run.check()
    assert "recvonly" == run.call(3, CUSTOMER)["media"]
    assert "sendrecv" == run.call(4, CUSTOMER)["media"]
    # 300 joined the agent's call: the customer and 300 hear each other through the mix
    customer, added = run.call(5, CUSTOMER, "800"), run.call(5, "300", "800")
    assert ("CONFIRMED", "CONFIRMED") == (customer["state"], added["state"])
    assert customer["rx_level"] > 0, (customer, added)
    assert added["rx_level"] > 0, (customer, added)
    # releasing the leg hangs up everyone in it
    assert [] == run.report(6)
    assert [("sip-1", "released")] == [(e["call"], e["cause"]) for e in run.switch_events("ended")]


def test_a_fault_in_the_sip_polling_ends_serve_never_deaf(tmp_path: Path) -> None:
    """The deafness fault of the issue: an exception inside the SIP stack's
    polling (raised once by a test-only wrapper around the process,
    tests/deaf_serve.py) is logged with its traceback and ends serve with
    status 1, closing its connection: it never stays connected and deaf."""
    from adapters.sip.demo import CastProcess  # the SIP stack loads only when this test runs

    sip_port = _free_udp_port()
    cast = CastProcess(f"sip:agent@127.0.0.1:{sip_port}")
    try:
        bridge, port = start_bridge(tmp_path)
        serve = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.deaf_serve", "200"),
                *("--connect", f"127.0.0.1:{port}", "--switch", "sip"),
                *("--sip-listen", f"127.0.0.1:{sip_port}", "--sip-domain", f"127.0.0.1:{cast.port}"),
                *("--trace", str(tmp_path / "serve.jsonl"), "--max-reconnects", "0"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        serve_code, serve_err = finish(serve)
        bridge.kill()
        finish(bridge)
    finally:
        cast.close()
    assert 1 == serve_code, serve_err
    assert "the switch polling task failed; stopping" in serve_err, serve_err
    assert "Traceback" in serve_err and "InjectedFault: a fault injected into poll number 200" in serve_err


def test_an_unknown_codec_is_refused_naming_those_there_are(tmp_path: Path) -> None:
    """--sip-codecs names a codec the SIP stack lacks: serve does not start,
    and says which codecs there are."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "adapters.cli", "serve", "--connect", "127.0.0.1:9", "--switch", "sip"),
            *("--sip-listen", f"127.0.0.1:{_free_udp_port()}", "--sip-codecs", "PCMA/8000,NOPE/1"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode, done.stderr
    assert "no codec 'NOPE/1'; the SIP stack has" in done.stderr and "PCMU/8000" in done.stderr, done.stderr


def test_a_maximum_above_what_the_stack_holds_is_logged(tmp_path: Path) -> None:
    """--sip-max-calls above what the SIP stack declares it holds (the wheel's
    4, a build of .ci/pjsua2's 64): serve says so when the stack starts,
    naming both figures, since PJSIP would refuse the calls beyond its own
    limit unseen by the softphone's 486."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "adapters.cli", "serve", "--connect", "127.0.0.1:9", "--switch", "sip"),
            *("--sip-listen", f"127.0.0.1:{_free_udp_port()}", "--max-reconnects", "0"),
            *("--sip-max-calls", "500"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 1 == done.returncode, done.stderr  # nothing listens on port 9
    assert "--sip-max-calls 500 is more than the SIP stack declares it holds (" in done.stderr, done.stderr

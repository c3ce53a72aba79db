"""What a hostile or careless peer sends, one finding at a time.

Each test is one way the engine once crashed, answered wrongly or lost
track of a call; it fails without the fix at the cause. The rules are those
of ``../shared/spec/protocol.md`` and ``harness.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.driver import (
    CH,
    Driver,
    cmd_id,
    commands,
    error_message,
    errors,
    event_names,
    events,
    ok,
    responses,
    result,
    state,
)
from tests.scenario import login_lines

ROOT = Path(__file__).resolve().parents[1]


#: the agent's login (tests.scenario.login_lines) as ``run`` reads it
LOGIN = "".join(json.dumps(line) + "\n" for line in login_lines()).encode()


def run_cli(stdin: bytes, *args: str, login: bool = True) -> list[bytes]:
    """``run`` fed ``stdin`` after the agent's login (unless ``login`` is
    False); the lines it wrote for ``stdin``."""
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "run", *args],
        cwd=ROOT,
        input=(LOGIN if login else b"") + stdin,
        capture_output=True,
        timeout=60,
    )
    assert 0 == done.returncode, done.stderr.decode("utf-8", "replace")
    lines = done.stdout.splitlines()
    if login:
        markers = [n for n, line in enumerate(lines) if line.startswith(b'{"done"')]
        lines = lines[markers[len(login_lines()) - 1] + 1 :]
    return lines


def from_bridge(traced: list[Any]) -> list[Any]:
    """The bridge's messages of a trace, less the login's."""
    return [
        t
        for t in traced
        if t.get("from") == "bridge"
        and not str(t["message"]["header"].get("requestId", "")).startswith("login-")
        and not str(t["message"]["header"].get("requestId", "")).startswith("login-")
    ]


def strict_json(line: bytes) -> Any:
    """H-RUN-2: UTF-8 (strict), JSON without NaN, and no lone surrogate even
    escaped."""

    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} in output")

    value = json.loads(line.decode("utf-8"), parse_constant=no_constants)
    assert "\\ud8" not in line.decode().lower(), line
    assert "\\udc" not in line.decode().lower(), line
    return value


# -- crashes of the runner, and outputs that were not JSON


def test_h_run_2_lone_surrogates_in_input_never_reach_an_output(tmp_path: Path) -> None:
    """D-BAD, H-RUN-2: a lone surrogate in a target is a defect answered with
    a FAILURE whose echo can be written; one in a requestId makes the
    message unanswerable (a protocol error). Every line out, trace included,
    is strict UTF-8 JSON; the trace passes check."""
    trace = tmp_path / "t.jsonl"
    lines = [
        '{"from":"switch","event":{"kind":"offered","call":"c1","device":"1001","device":"1001"}}',
        '{"from":"bridge","message":{"header":{"type":"cti.query","name":"interaction.query.init",'
        '"target":"S1.G1.1001.\\ud800","requestId":"r1"}}}',
        '{"from":"bridge","message":{"header":{"type":"cti.query","name":"interaction.query.init",'
        '"target":"S1.G1.1001.c1","requestId":"r\\udc00"}}}',
        '{"from":"switch","event":{"kind":"ended","call":"c1","cause":"\\udfff"}}',
    ]
    out = [strict_json(line) for line in run_cli("\n".join(lines).encode(), "--trace", str(trace))]
    [failure] = [
        o for o in out if o.get("to") == "bridge" and o["message"]["header"].get("requestId") == "r1"
    ]
    assert "D-BAD" == failure["rule"]
    assert "lone surrogate in header.target" in failure["message"]["header"]["errorMessage"]
    assert ["D-BAD"] == [o["protocol_error"]["rule"] for o in out if "protocol_error" in o]
    assert any("lone surrogate" in o["error"]["message"] for o in out if "error" in o)
    for line in trace.read_bytes().splitlines():
        strict_json(line)
    checked = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "check", str(trace)], cwd=ROOT, capture_output=True, text=True
    )
    assert 0 == checked.returncode, checked.stdout


def test_d_bad_a_defect_outside_the_message_does_not_mark_the_message_malformed(tmp_path: Path) -> None:
    """D-BAD, H-RUN-2: a lone surrogate in a key the runner ignores (beside
    ``message`` on the input line) is made writable in the trace, but the
    message itself is well-formed and answered, so its trace line is not
    marked malformed, and the trace passes check (found by the atheris
    structured target once it checked every trace)."""
    trace = tmp_path / "t.jsonl"
    lines = [
        '{"from":"switch","event":{"kind":"offered","call":"c1","device":"1001","device":"1001"}}',
        '{"from":"bridge","message":{"header":{"type":"cti.query","name":"interaction.query.init",'
        '"target":"S1.G1.1001.c1","requestId":"r1"}},"\\ud83d":1}',
    ]
    out = [strict_json(line) for line in run_cli("\n".join(lines).encode(), "--trace", str(trace))]
    [answer] = [
        o for o in out if o.get("to") == "bridge" and "cti.response" == o["message"]["header"]["type"]
    ]
    assert "SUCCESS" == answer["message"]["header"]["result"]
    traced = [strict_json(line) for line in trace.read_bytes().splitlines()]
    [asked] = from_bridge(traced)
    assert "malformed" not in asked
    checked = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "check", str(trace)], cwd=ROOT, capture_output=True, text=True
    )
    assert 0 == checked.returncode, checked.stdout


def test_h_run_2_bytes_that_are_not_utf8_are_an_error_output_even_with_a_trace(tmp_path: Path) -> None:
    """H-RUN-2, D-BAD: an input line with a byte that is not UTF-8 is an
    `error` output; the runner goes on, its trace stays valid."""
    trace = tmp_path / "t.jsonl"
    stdin = b'{"from":"bridge","message":"\xff"}\n{"from":"clock","advance":1}\n'
    out = [strict_json(line) for line in run_cli(stdin, "--trace", str(trace), login=False)]
    assert [{"error": {"input": 1, "message": "input line is not UTF-8"}}, {"done": 1}, {"done": 2}] == out
    for line in trace.read_bytes().splitlines():
        strict_json(line)


@pytest.mark.parametrize(
    "seq", ["NaN", "Infinity", "-Infinity", "1.0", "9007199254740993", "[1]", '"\\ud800"']
)
def test_h_run_1_an_unusable_seq_is_an_error_and_the_line_number_stands_in(seq: str) -> None:
    """H-RUN-1, H-RUN-2: a seq that is not a string or an integer within 2^53
    gives an error output; `done` names the line; nothing like {"done": NaN}."""
    out = [
        strict_json(line)
        for line in run_cli(f'{{"seq": {seq}, "from": "clock", "advance": 0}}\n'.encode(), login=False)
    ]
    assert {"done": 1} == out[-1]
    assert "seq must be a string or an integer within 2^53" in out[0]["error"]["message"]


def test_h_run_1_a_usable_seq_is_echoed() -> None:
    """H-RUN-1: the control: strings and integers within 2^53 come back as sent."""
    out = [
        strict_json(line)
        for line in run_cli(
            b'{"seq": "s-1", "from": "clock", "advance": 0}\n'
            b'{"seq": 9007199254740992, "from": "clock", "advance": 0}\n'
        )
    ]
    assert [{"done": "s-1"}, {"done": 9007199254740992}] == out


@pytest.mark.parametrize("advance", ["1" + "0" * 300, "1e309", "-1", "9007199254740993"])
def test_d_bad_a_huge_or_bad_clock_advance_is_an_error_and_changes_nothing(advance: str) -> None:
    """D-BAD: an advance of a few hundred digits, an infinite one, a negative
    one, one beyond 2^53: an error output, the clock unchanged."""
    d = Driver()
    out = d.raw(f'{{"from": "clock", "advance": {advance}}}')
    assert 1 == len(errors(out))
    assert 0.0 == d.engine.clock


def test_d_bad_the_engine_clock_stays_below_10_to_the_12() -> None:
    """D-BAD: an advance that would bring the clock to 10^12 s is an error and
    changes nothing; many huge advances never make it infinite."""
    d = Driver()
    for _ in range(3):
        d.feed({"from": "clock", "advance": 9 * 10**11 / 3})
    assert 9e11 == pytest.approx(d.engine.clock)
    out = d.feed({"from": "clock", "advance": 10**11})
    assert ["clock advance 1e+11 would bring the engine clock to 10^12 seconds or beyond"] == errors(out)
    assert 9e11 == pytest.approx(d.engine.clock)


# -- answers that were inconsistent


def test_d_bad_a_requestid_over_256_code_points_is_unanswerable_even_when_well_formed() -> None:
    """D-BAD: one rule for a usable requestId: a well-formed query with a
    257-character requestId gets a protocol error, exactly as a malformed one."""
    d = Driver()
    d.switch("offered")
    for body in ({}, {"x": 1}):
        out = d.msg("interaction.query.init", rid="r" * 257, properties=body)
        assert [] == responses(out)
        assert ["D-BAD"] == [o["protocol_error"]["rule"] for o in out if "protocol_error" in o]
    assert ok(d.msg("interaction.query.init", rid="r" * 256))


def test_d_dup_a_malformed_requests_id_counts_as_seen() -> None:
    """D-DUP: consult without destination is refused (D-BAD); the same
    requestId sent again, well-formed, is the D-DUP refusal and never runs."""
    d = Driver()
    d.talking_call()
    bad = d.msg("interaction.request.consult", rid="r-x", properties={})
    assert "D-BAD" == d.rule(bad)
    again = d.req("consult", rid="r-x", destination="200")
    assert "FAILURE" == result(again)
    assert "D-DUP" == d.rule(again)
    assert [] == commands(again)


# -- timers, queues and legs


def _two_queued_requests(d: Driver) -> None:
    d.switch("offered")
    d.init()
    d.req("accept")  # executes until the scripted switch says connected
    d.req("reject")  # waits behind it


@pytest.mark.parametrize("split", [[61], [30, 31], [20, 20, 21], [30, 30, 1]])
def test_d_serial_a_queued_requests_timer_starts_when_the_one_before_finished(split: list[int]) -> None:
    """D-SERIAL, D-ASYNC: accept times out at 30 s, the queued reject starts
    then and times out at 60 s, however the 61 s of clock are split."""
    d = Driver(scripted=True)
    _two_queued_requests(d)
    seen = []
    for seconds in split:
        out = d.feed({"from": "clock", "advance": seconds})
        seen += [r["header"]["name"].rpartition(".")[2] for r in responses(out)]
    assert ["accept", "reject"] == seen
    assert 61 == d.engine.clock


def test_d_serial_the_queued_request_does_not_time_out_early() -> None:
    """D-SERIAL, D-ASYNC: the control: at 59 s only accept has timed out."""
    d = Driver(scripted=True)
    _two_queued_requests(d)
    out = d.feed({"from": "clock", "advance": 59})
    assert ["interaction.request.accept"] == [r["header"]["name"] for r in responses(out)]


def _scripted_talking(d: Driver) -> None:
    """An inbound call c1 answered, its primary b1 created, with the scripted switch."""
    d.switch("offered")
    d.init()
    assert ok(d.create("b1", "c1"))
    d.conv_init("b1")
    accept = d.req("accept")
    d.switch("connected")
    d.feed({"from": "switch", "event": {"kind": "result", "command": commands(accept)[0]["id"], "ok": True}})


def test_d_consult_end_retrieves_the_primary_while_a_request_executes() -> None:
    """D-CONSULT-END: with reconnect_on_consult_end, the consult leg ending
    while a DTMF executes still retrieves the held primary."""
    d = Driver(scripted=True, reconnect_on_consult_end=True)
    _scripted_talking(d)
    consult = d.req("consult", destination="200")
    d.feed(
        {
            "from": "switch",
            "event": {"kind": "result", "command": commands(consult)[0]["id"], "ok": True, "call": "k1"},
        }
    )
    d.switch("held", "c1")
    d.switch("connected", "k1")
    d.conv("senddtmf", digits="1")  # waits for its result
    out = d.switch("ended", "k1")
    assert [("retrieve", "c1")] == [(c["op"], c["call"]) for c in commands(out)]


def test_s_evt_1_a_phone_consult_while_a_request_executes_is_announced_as_consult() -> None:
    """S-EVT-1: a new outbound leg while a DTMF executes on the one STARTED
    interaction is its phone consult: interaction.consult, not a new interaction."""
    d = Driver(scripted=True)
    _scripted_talking(d)
    d.conv("senddtmf", digits="1")
    out = d.switch("dialing", "p1", destination="200")
    assert ["interaction.consult"] == event_names(out)
    assert [{"nativeid": "p1"}] == [e["body"] for e in events(out)]


def _consult_timed_out() -> Driver:
    """A talking call (scripted switch) whose consult timed out before the switch named its leg."""
    d = Driver(scripted=True)
    d.switch("offered")
    d.init()
    accept = d.req("accept")
    d.switch("connected")
    d.feed({"from": "switch", "event": {"kind": "result", "command": commands(accept)[0]["id"], "ok": True}})
    d.req("consult", destination="200")
    assert "FAILURE" == result(d.feed({"from": "clock", "advance": 30}))
    return d


def test_d_async_a_timed_out_consult_claims_no_leg_of_a_later_interaction() -> None:
    """D-ASYNC: a consult that timed out without a leg claims the first new
    leg only within request_timeout after the timeout while its interaction
    has a live leg; after its call ended, a later call's outbound leg is
    that call's own, never released."""
    d = _consult_timed_out()
    d.switch("ended", "c1")
    out = d.switch("dialing", "o1", destination="555")
    assert [] == commands(out)  # not released
    assert ["interaction.created"] == event_names(out)


def test_d_async_a_timed_out_consult_claims_the_next_leg_within_its_window() -> None:
    """D-ASYNC: the control: the call still live, a leg right after the
    timeout is the late consult leg: released, never announced."""
    d = _consult_timed_out()
    out = d.switch("dialing", "k9", destination="200")
    assert [("release", "k9")] == [(c["op"], c["call"]) for c in commands(out)]
    assert [] == event_names(out)


def test_d_bound_a_phone_consult_beyond_max_legs_is_refused() -> None:
    """D-BOUND: legs from the switch count against max_legs too."""
    d = Driver(max_legs=2)
    d.switch("offered")
    d.switch("connected")
    d.switch("dialing", "p1", destination="1")
    d.switch("ended", "p1")
    out = d.switch("dialing", "p2", destination="2")
    assert ["D-BOUND"] == [e.partition(":")[0] for e in errors(out)]
    assert ["c1", "p1"] == list(d.engine.interactions["c1"].legs)


def test_d_bound_a_full_queue_does_not_refuse_a_dispose() -> None:
    """D-BOUND, D-SERIAL: with the queue full, dispose still runs: what waited
    is answered FAILURE (disposed) first, then the dispose SUCCESS."""
    d = Driver(scripted=True, max_pending_requests=2)
    _two_queued_requests(d)
    assert "D-BOUND" == d.rule(d.req("setdata", k="v"))
    out = d.req("dispose")
    answers = [(r["header"]["name"].rpartition(".")[2], r["header"]["result"]) for r in responses(out)]
    assert [("accept", "FAILURE"), ("reject", "FAILURE"), ("dispose", "SUCCESS")] == answers
    assert "disposed" in responses(out)[0]["header"]["errorMessage"]


# -- the simulated switch follows only what the engine accepted


def test_d_switch_a_refused_event_does_not_change_the_simulated_switch() -> None:
    """D-SWITCH: a `held` for a ringing leg and a second `offered` for a known
    call are refused and change nothing, not even the simulated switch's
    own model: accept then still connects the call."""
    d = Driver()
    d.switch("offered")
    d.init()
    before = state(d.engine)
    assert 1 == len(errors(d.switch("held")))
    assert 1 == len(errors(d.switch("offered")))
    assert before == state(d.engine)
    out = d.req("accept")
    assert "SUCCESS" == result(out)
    assert "interaction.started" in event_names(out)


def test_d_switch_an_accepted_event_is_followed_by_the_simulated_switch() -> None:
    """D-SWITCH: the control: the customer hanging up (accepted) ends the
    call in the simulated switch's model too."""
    d = Driver()
    d.switch("offered")
    d.init()
    d.switch("ended", cause="hangup")
    assert "c1" not in d.switch_driver.calls  # type: ignore[attr-defined]


def test_d_cc_2_an_empty_conversation_id_is_refused() -> None:
    """D-CC-2: createconversation with id "" is FAILURE and creates nothing."""
    d = Driver()
    d.switch("offered")
    d.init()
    out = d.create("", "c1")
    assert "D-CC-2" == d.rule(out)
    assert "empty" in error_message(out)
    assert ok(d.create("b1", "c1"))
    assert [f"{CH}.c1", f"{CH}.c1.b1"] == sorted(t for t in d.engine.destinations if t.startswith(f"{CH}."))


# -- the line protocol's own rules


def test_h_run_3_protocol_error_and_error_outputs() -> None:
    """H-RUN-3: a bridge message without a usable requestId is a
    protocol_error; a line the runner cannot use, and a malformed switch
    event, are `error` outputs; neither stops the runner."""
    d = Driver()
    no_id = d.feed(
        {"from": "bridge", "message": {"header": {"type": "cti.request", "name": "x", "target": "t"}}}
    )
    assert ["D-BAD"] == [o["protocol_error"]["rule"] for o in no_id if "protocol_error" in o]
    assert ["unknown 'from' 'nowhere': expected bridge, switch or clock"] == errors(
        d.feed({"from": "nowhere"})
    )
    assert 1 == len(errors(d.feed({"from": "switch", "event": {"kind": "held"}})))
    assert ["interaction.created"] == event_names(d.switch("offered"))


def test_h_sw_1_unknown_fields_are_ignored_and_required_ones_checked() -> None:
    """H-SW-1: an unknown field of a switch event is ignored; a missing or
    mistyped required one is an error that changes nothing."""
    d = Driver()
    assert ["interaction.created"] == event_names(d.switch("offered", colour="blue", ani="1"))
    assert {"ani": "1"} == d.init()["interaction-data"]
    before = state(d.engine)
    assert ["malformed switch event connected: call: expected a string, got the number 7"] == errors(
        d.feed({"from": "switch", "event": {"kind": "connected", "call": 7}})
    )
    assert ["switch event ended: missing required field call"] == errors(
        d.feed({"from": "switch", "event": {"kind": "ended"}})
    )
    assert before == state(d.engine)


def test_h_cmd_command_ids_count_from_one_and_a_failure_line_names_its_rule() -> None:
    """H-CMD: commands are cmd-1, cmd-2, ...; a FAILURE response's output line
    carries "rule" beside its message, and no other line does."""
    d = Driver()
    d.switch("offered")
    d.init()
    accept = d.req("accept")
    refused = d.req("consult", destination="")
    assert [cmd_id(1)] == [c["id"] for c in commands(accept)]
    assert [o for o in accept if "rule" in o] == []
    [line] = [o for o in refused if o.get("to") == "bridge"]
    assert {"to", "message", "rule"} == set(line)
    assert "D-CONS-2" == line["rule"]
    second = d.req("setdata", k="v")
    assert [o for o in second if "rule" in o] == []


def test_d_done_when_a_request_is_done_by_its_catalog_row() -> None:
    """D-DONE: with a switch that acknowledges, an at-once request (senddtmf)
    waits for its result; a result with ok false fails it with its reason;
    a state request (hold) is not done by its result, only by `held`; a
    result for an unknown command id is an error and changes nothing."""
    d = Driver(scripted=True)
    _scripted_talking(d)
    dtmf = d.conv("senddtmf", digits="12")
    assert [] == responses(dtmf)
    done = d.feed(
        {"from": "switch", "event": {"kind": "result", "command": commands(dtmf)[0]["id"], "ok": True}}
    )
    assert "SUCCESS" == result(done)
    dtmf2 = d.conv("senddtmf", digits="3")
    refused = d.feed(
        {
            "from": "switch",
            "event": {
                "kind": "result",
                "command": commands(dtmf2)[0]["id"],
                "ok": False,
                "reason": "no tones here",
            },
        }
    )
    assert "FAILURE" == result(refused)
    assert "no tones here" in error_message(refused)
    hold = d.conv("hold")
    confirmed = d.feed(
        {"from": "switch", "event": {"kind": "result", "command": commands(hold)[0]["id"], "ok": True}}
    )
    assert [] == responses(confirmed)
    assert "SUCCESS" == result(d.switch("held"))
    before = state(d.engine)
    assert 1 == len(
        errors(d.feed({"from": "switch", "event": {"kind": "result", "command": "cmd-99", "ok": True}}))
    )
    assert before == state(d.engine)


def test_d_done_without_acknowledgements_an_at_once_request_is_answered_after_its_command() -> None:
    """D-DONE: the simulated switch acknowledges nothing: senddtmf is SUCCESS
    right after its command is written."""
    d = Driver()
    d.talking_call()
    out = d.conv("senddtmf", digits="5")
    kinds = ["command" if o.get("to") == "switch" else o["message"]["header"]["type"] for o in out]
    assert ["command", "cti.response"] == kinds


def test_d_order_command_then_its_events_then_the_response() -> None:
    """D-ORDER: within one input, the command comes before the switch events
    it causes, the interaction's event before the conversation's, and the
    request's response right after the events of the change completing it."""
    d = Driver()
    d.switch("offered")
    d.init()
    assert ok(d.create("b1", "c1"))
    d.conv_init("b1")
    out = d.req("accept")
    seen = [o["command"]["op"] if o.get("to") == "switch" else o["message"]["header"]["name"] for o in out]
    assert ["answer", "interaction.started", "conversation.talking", "interaction.request.accept"] == seen

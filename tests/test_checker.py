"""The conformance checker (``fsm.checker``, ``telephony-fsm check``).

The engine's own traces, recorded in process with the real runner and
switch drivers, are clean. Every broken trace below is derived from such a
real trace (parsed, modified, re-serialized), and the checker must report
exactly the rule it breaks, at the line that proves it.
"""

from __future__ import annotations

import ast
import copy
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.check import main
from fsm.checker import UnreadableTrace, Violation, Watcher, check_lines
from fsm.engine import Targets
from fsm.errors import Refusal
from fsm.policy import Policy
from tests.driver import CH, Driver, cmd_id
from tests.scenario import (
    ACCEPT,
    CINIT,
    COMPLETE,
    CONFERENCE,
    CONSULT,
    CREATE,
    DATA,
    DISPOSE,
    HOLD,
    INIT,
    IT,
    K1,
    REJECT,
    RELEASE,
    ROOT,
    SETDATA,
    TRANSFER,
    Line,
    P,
    busy_consult,
    ctarget,
    dialing,
    feed_lines,
    full_call,
    inbound_setup,
    itarget,
    make_runner,
    offered,
    primary_loss,
    query,
    request,
    result,
    scripted_setup,
    scripted_timeout,
    serial,
    switch,
)

Trace = list[dict[str, Any]]
Found = list[tuple[int, str]]
RINGING = ("transfer_while_consult_ringing=true",)


class SlashTargets(Targets):
    """Another D-TARGET rule: ``CHANNEL/INTERACTIONID``, conversations ``.../BRIDGEID``."""

    def interaction(self, channel: str, interaction_id: str) -> str:
        return f"{channel}/{interaction_id}"

    def conversation(self, interaction_target: str, bridge_id: str) -> str:
        return f"{interaction_target}/{bridge_id}"


def record(
    lines: Sequence[Line], switch_kind: str = "simulated", policy: Sequence[str] = (), *, login: bool = True
) -> Trace:
    """The trace ``telephony-fsm run --trace`` writes for ``lines``, after
    the agent's login unless ``login`` is False."""
    buffer = io.StringIO()
    feed_lines(make_runner(switch_kind, list(policy), buffer, login=login), lines)
    return [json.loads(text) for text in buffer.getvalue().splitlines()]


def serialize(trace: Trace) -> list[str]:
    return [json.dumps(entry) for entry in trace]


def check(trace: Trace, policy: Sequence[str] = ()) -> Found:
    """(line, rule) of every violation of ``trace``."""
    found = check_lines(serialize(trace), policy=Policy().with_settings(list(policy)))
    return [(v.line, v.rule) for v in found]


# --------------------------------------------------------------------------
# Finding lines in a trace (indexes are 0-based, trace lines 1-based).


def find(trace: Trace, predicate: Callable[[dict[str, Any]], bool], nth: int = 0) -> int:
    hits = [i for i, entry in enumerate(trace) if predicate(entry)]
    assert len(hits) > nth, "no such line in the trace"
    return hits[nth]


def _headers(entry: dict[str, Any], direction: str, side: str) -> dict[str, Any] | None:
    if entry.get(direction) != side or not isinstance(entry.get("message"), dict):
        return None
    headers: dict[str, Any] = entry["message"]["header"]
    return headers


def asked(trace: Trace, rid: str, nth: int = 0) -> int:
    """The bridge's message with requestId ``rid``."""
    return find(trace, lambda e: (_headers(e, "from", "bridge") or {}).get("requestId") == rid, nth)


def answer(trace: Trace, rid: str, nth: int = 0) -> int:
    """The client's response with requestId ``rid``."""
    return find(trace, lambda e: (_headers(e, "to", "bridge") or {}).get("requestId") == rid, nth)


def event(trace: Trace, name: str, target: str = IT, nth: int = 0) -> int:
    def predicate(entry: dict[str, Any]) -> bool:
        headers = _headers(entry, "to", "bridge") or {}
        return headers.get("type") == "cti.event" and (headers.get("name"), headers.get("target")) == (
            name,
            target,
        )

    return find(trace, predicate, nth)


def headers_at(trace: Trace, index: int) -> dict[str, Any]:
    found = _headers(trace[index], "to", "bridge")
    assert found is not None
    return found


def body_at(trace: Trace, index: int) -> dict[str, Any]:
    value: dict[str, Any] = trace[index]["message"]["body"]
    return value


def moved(trace: Trace, source: int, before: int) -> tuple[Trace, int]:
    """``trace`` with line ``source`` moved just before line ``before``; the
    moved line's new index."""
    entries = list(trace)
    entry = entries.pop(source)
    at = before if before < source else before - 1
    entries.insert(at, entry)
    return entries, at


def flipped(trace: Trace, rid: str, nth: int = 0, **properties: str) -> tuple[Trace, int]:
    """``trace`` with the engine's FAILURE response to ``rid`` (the nth
    response with that requestId) turned into a SUCCESS (with
    ``properties``); the response's index."""
    broken = copy.deepcopy(trace)
    index = answer(broken, rid, nth)
    headers = headers_at(broken, index)
    refused = "FAILURE"
    assert refused == headers["result"], "the engine refused it: the mutation makes it succeed"
    headers["result"] = "SUCCESS"
    del headers["errorMessage"]
    broken[index].pop("rule", None)  # H-CMD: only a FAILURE's line names a rule
    if properties:
        broken[index]["message"]["body"] = dict(properties)
    return broken, index


def line(index: int) -> int:
    return index + 1


# --------------------------------------------------------------------------
# Scenarios (inputs of `run`): those of tests/scenario.py, and a few more.


def accepted_then_hung_up() -> list[Line]:
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        switch("ended", "c1", cause="hangup"),
        request(COMPLETE, IT, "r5"),
    ]


def reinit_while_alerting() -> list[Line]:
    return [*inbound_setup(), query(INIT, IT, "r4"), request(ACCEPT, IT, "r5")]


def rejected() -> list[Line]:
    return [
        *inbound_setup(),
        request(REJECT, IT, "r4"),
        query(INIT, IT, "r5"),
        request(ACCEPT, IT, "r6"),
        request(COMPLETE, IT, "r7"),
        query(INIT, IT, "r8"),
        request(SETDATA, IT, "r9", note="late"),
    ]


def ringing_consult() -> list[Line]:
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="ring-1"),
        request(CREATE, IT, "r6", id="b2", nativeid="sim-1"),
        query(CINIT, K1, "r7"),
        request(TRANSFER, IT, "r8"),
        query(INIT, IT, "r9"),
    ]


def second_consult() -> list[Line]:
    """A consult while the first one is connected (refused: D-CONS-2)."""
    return [*full_call()[:8], request(CONSULT, IT, "r7b", destination="300")]


def outbound_call() -> list[Line]:
    it, conv = itarget("o1"), ctarget("o1", "b1")
    return [
        dialing("o1", "5552000"),
        query(INIT, it, "r1"),
        request(CONSULT, it, "r2", destination="300"),
        request(CREATE, it, "r3", id="b1", nativeid="o1"),
        query(CINIT, conv, "r4"),
        switch("alerting", "o1"),
        switch("connected", "o1"),
        query(INIT, it, "r5"),
        switch("ended", "o1", cause="hangup"),
        query(INIT, it, "r6"),
    ]


def phone_consult() -> list[Line]:
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        dialing("p1", "400"),
        request(CREATE, IT, "r5", id="b2", nativeid="p1"),
        request(CREATE, IT, "r6", id="b3", nativeid="p1"),
        request(CREATE, IT, "r7", id="b4", nativeid="nosuchcall"),
        request(CREATE, IT, "r8", id="b2", nativeid="p1"),
        query(CINIT, K1, "r9"),
        switch("alerting", "p1"),
        switch("connected", "p1"),
        query(INIT, IT, "r10"),
        request(TRANSFER, IT, "r11"),
    ]


def before_init() -> list[Line]:
    """Changes folded into snapshots, requests before init, a phone consult
    before init, dispose before init."""
    return [
        offered("c1", ani="5551000"),
        request(ACCEPT, IT, "r1"),
        switch("connected", "c1"),
        dialing("p1", "400"),
        query(INIT, IT, "r2"),
        request(CREATE, IT, "r3", id="b1", nativeid="c1"),
        request(HOLD, P, "r4"),
        switch("held", "c1"),
        query(CINIT, P, "r5"),
        request(CREATE, IT, "r6", id="b2", nativeid="p1"),
        query(CINIT, K1, "r7"),
        switch("connected", "p1"),
        switch("retrieved", "c1"),
        offered("c2"),
        request(DISPOSE, itarget("c2"), "r1"),
        query(INIT, itarget("c2"), "r2"),
    ]


def duplicates_and_malformed() -> list[Line]:
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(SETDATA, IT, "r4", note="dup"),
        query(INIT, IT, "r1"),
        request(HOLD, P, "r5"),
        request(HOLD, P, "r5"),
        query(DATA, IT, "r6"),
        request(CREATE, IT, "r7", id="b1", nativeid=7),
        request("interaction.request.bogus", IT, "r8"),
        request(ACCEPT, f"{CH}.nope", "r9"),
        request(HOLD, IT, "r10"),
        {"from": "bridge", "message": {"header": {"type": "cti.request", "name": ACCEPT, "target": IT}}},
        "not json",
        request(RELEASE, P, "r11"),
    ]


def pending_duplicate() -> list[Line]:
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(ACCEPT, IT, "r4"),
        switch("connected", "c1"),
        result(cmd_id(1)),
    ]


def hang_up_while_consult_rings() -> list[Line]:
    return [
        *ringing_consult()[:8],
        switch("ended", "c1"),
        query(INIT, IT, "r8"),
        switch("connected", "sim-1"),
        query(INIT, IT, "r9"),
        query(CINIT, K1, "r10"),
    ]


def refused_then_repeated() -> list[Line]:
    """complete r4 refused while ALERTING (D-GENERIC); reject; complete r4
    again, now in ENDED: refused as a duplicate (D-DUP)."""
    return [
        *inbound_setup(),
        request(COMPLETE, IT, "r4"),
        request(REJECT, IT, "r5"),
        request(COMPLETE, IT, "r4"),
    ]


def refused_switch_lines() -> list[Line]:
    """Switch events the engine refuses (H-SW-1: a kind that is an object or
    a list, a call that is a number) in the middle of a call: the trace
    records them and check reads them without a crash (found by the atheris
    structured target)."""
    return [
        *inbound_setup(),
        {"from": "switch", "event": {"kind": {"x": 1}, "call": "c1"}},
        {"from": "switch", "event": {"kind": ["ended"], "call": "c1"}},
        {"from": "switch", "event": {"kind": "ended", "call": 7}},
        request(COMPLETE, IT, "r4"),
    ]


def consult_while_one_rings(reinit: bool) -> list[Line]:
    """A consult to ring-1 (its leg rings, never answered), optionally a
    re-init (which lists it), then a second consult (refused: D-CONS-2)."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="ring-1"),
        *([query(INIT, IT, "r6")] if reinit else []),
        request(CONSULT, IT, "r7", destination="200"),
    ]


def consult_again_after_busy() -> list[Line]:
    """A consult to busy-1 (SUCCESS, then its leg fails before any
    conversation exists: no message says so), then a consult to 200, which
    the engine rightly lets succeed."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="busy-1"),
        request(CONSULT, IT, "r6", destination="200"),
    ]


def created_after_an_ended_reinit() -> list[Line]:
    """D-CC-3: c1 was listed by the first init; a re-init after reject
    (ENDED) keeps the init phase open for it, so its creation succeeds."""
    return [
        offered("c1"),
        query(INIT, IT, "r1"),
        request(REJECT, IT, "r2"),
        query(INIT, IT, "r3"),
        request(CREATE, IT, "r4", id="b1", nativeid="c1"),
    ]


def dispose_while_accept_executes() -> list[Line]:
    """Scripted: the primary conversation is disposed while accept waits for
    the switch (a dispose does not wait, D-SERIAL), then setdata waits."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request("conversation.request.dispose", P, "r5"),
        request(SETDATA, IT, "r6", note="x"),
        switch("connected", "c1"),
        result(cmd_id(1)),
    ]


SCENARIOS: dict[str, tuple[list[Line], str, tuple[str, ...]]] = {
    "inbound_setup": (inbound_setup(), "simulated", ()),
    "full_call": (full_call(), "simulated", ()),
    "busy_consult": (busy_consult(), "simulated", ()),
    "busy_consult_reconnect": (busy_consult(), "simulated", ("reconnect_on_consult_end=true",)),
    "primary_loss": (primary_loss(), "simulated", ()),
    "scripted_setup": (scripted_setup(), "scripted", ()),
    "scripted_timeout": (scripted_timeout(), "scripted", ()),
    "serial": (serial(), "scripted", ()),
    "accepted_then_hung_up": (accepted_then_hung_up(), "simulated", ()),
    "rejected": (rejected(), "simulated", ()),
    "ringing_consult": (ringing_consult(), "simulated", ()),
    "ringing_consult_transfer_by_policy": (ringing_consult(), "simulated", RINGING),
    "hang_up_while_consult_rings": (hang_up_while_consult_rings(), "simulated", ()),
    "second_consult": (second_consult(), "simulated", ()),
    "outbound_call": (outbound_call(), "simulated", ()),
    "phone_consult": (phone_consult(), "simulated", ()),
    "before_init": (before_init(), "simulated", ()),
    "duplicates_and_malformed": (duplicates_and_malformed(), "simulated", ()),
    "pending_duplicate": (pending_duplicate(), "scripted", ()),
    "refused_then_repeated": (refused_then_repeated(), "simulated", ()),
    "refused_switch_lines": (refused_switch_lines(), "simulated", ()),
    "consult_while_one_rings": (consult_while_one_rings(False), "simulated", ()),
    "consult_while_one_rings_reinit": (consult_while_one_rings(True), "simulated", ()),
    "consult_again_after_busy": (consult_again_after_busy(), "simulated", ()),
    "created_after_an_ended_reinit": (created_after_an_ended_reinit(), "simulated", ()),
    "dispose_while_accept_executes": (dispose_while_accept_executes(), "scripted", ()),
}

FULL = record(full_call())


# --------------------------------------------------------------------------
# The engine's traces are clean.


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_engine_traces_are_clean(name: str) -> None:
    lines, switch_kind, policy = SCENARIOS[name]
    trace = record(lines, switch_kind, policy)
    clean: Found = []
    assert clean == check(trace, policy)


def test_shipped_full_call_trace_is_clean() -> None:
    stdin = (ROOT / "adapters" / "scenarios" / "full-call.jsonl").read_text().splitlines()
    trace = record(stdin, login=False)  # the file logs the agent in itself
    clean: Found = []
    assert clean == check(trace)


def test_response_before_the_events_its_request_caused_is_clean() -> None:
    """D-ASYNC, D-SERIAL: the order of a response and its request's events
    is not relied on: accept's response moved before interaction.started,
    the consult's response before the held event it caused."""
    trace, _ = moved(FULL, answer(FULL, "r4"), event(FULL, "conversation.talking", P))
    trace, _ = moved(trace, answer(trace, "r5"), event(trace, "conversation.held", P))
    clean: Found = []
    assert clean == check(trace)


# --------------------------------------------------------------------------
# Responses: S-REQ-1, S-REQ-2, S-REQ-2a.


def test_dropped_response() -> None:
    """S-REQ-1: the re-init query r8 is never answered."""
    trace = list(FULL)
    del trace[answer(FULL, "r8")]
    assert [(line(asked(FULL, "r8")), "S-REQ-1")] == check(trace)


def test_duplicated_response() -> None:
    """S-REQ-1: accept answered twice."""
    index = answer(FULL, "r4")
    trace = [*FULL[: index + 1], copy.deepcopy(FULL[index]), *FULL[index + 1 :]]
    assert [(line(index + 1), "S-REQ-1")] == check(trace)


def test_trace_ends_with_a_request_unanswered() -> None:
    """S-REQ-1: the end of the trace is the end of the run."""
    index = asked(FULL, "r18")
    assert [(line(index), "S-REQ-1")] == check(FULL[: index + 1])


def test_changed_request_id() -> None:
    """S-REQ-2: a response whose requestId matches no awaited request; the
    query it should have answered stays unanswered (S-REQ-1)."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r8")
    headers_at(trace, index)["requestId"] = "r8-changed"
    assert [(line(asked(FULL, "r8")), "S-REQ-1"), (line(index), "S-REQ-2")] == check(trace)


def test_changed_response_target() -> None:
    """S-REQ-2: the target is not echoed."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r12")
    headers_at(trace, index)["target"] = f"{IT}.elsewhere"
    assert [(line(asked(FULL, "r12")), "S-REQ-1"), (line(index), "S-REQ-2")] == check(trace)


def test_consulttransfer_response_named_reject() -> None:
    """S-REQ-2a: the seed's slip."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r16")
    headers_at(trace, index)["name"] = "interaction.request.reject"
    assert [(line(index), "S-REQ-2a")] == check(trace)


def test_failure_without_error_message() -> None:
    """S-REQ-2: the refused alternate of the busy consult loses its errorMessage."""
    trace = record(busy_consult())
    index = answer(trace, "r10")
    headers = headers_at(trace, index)
    refused = "FAILURE"
    assert refused == headers["result"]
    del headers["errorMessage"]
    assert [(line(index), "S-REQ-2")] == check(trace)


# --------------------------------------------------------------------------
# Events: S-EVT-0, S-LIFE-2, D-EVT-2, D-LIFE-4.


def test_event_with_a_request_id() -> None:
    """S-EVT-0."""
    trace = copy.deepcopy(FULL)
    index = event(trace, "interaction.started")
    headers_at(trace, index)["requestId"] = "r99"
    assert [(line(index), "S-EVT-0")] == check(trace)


def test_event_before_the_init_response() -> None:
    """S-LIFE-2: datachanged moved before the interaction's init response."""
    trace, at = moved(FULL, event(FULL, "interaction.datachanged"), answer(FULL, "r1"))
    assert [(line(at), "S-LIFE-2")] == check(trace)


def test_event_after_dispose() -> None:
    """D-LIFE-4: a disposed destination sends no events."""
    trace = [*FULL, copy.deepcopy(FULL[event(FULL, "interaction.datachanged")])]
    assert [(len(trace), "D-LIFE-4")] == check(trace)


def test_interaction_events_reordered() -> None:
    """D-EVT-2: interaction.ended moved before interaction.started: ENDED ->
    STARTED is no move of the interaction machine."""
    base = record(accepted_then_hung_up())
    trace, _ = moved(base, event(base, "interaction.ended"), event(base, "interaction.started"))
    assert [(line(event(trace, "interaction.started")), "D-EVT-2")] == check(trace)


# --------------------------------------------------------------------------
# Init snapshots: S-INIT-1..5, D-INIT-7, D-CONV-ID.


def test_init_data_value_is_a_number() -> None:
    """S-INIT-1."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r1")
    body_at(trace, index)["interaction-data"]["ani"] = 5551000
    assert [(line(index), "S-INIT-1")] == check(trace)


def test_init_data_nested_deeper_than_8_levels() -> None:
    """D-DATA: interaction data nests at most 8 levels (the data object is level 1)."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r1")
    deep: dict[str, Any] = {"leaf": "x"}
    for _ in range(7):  # with the data object, 9 levels
        deep = {"k": deep}
    body_at(trace, index)["interaction-data"]["deep"] = deep
    assert [(line(index), "D-DATA")] == check(trace)
    deep["k"] = "x"  # 8 levels: allowed
    assert [] == check(trace)


def test_init_data_with_more_keys_than_max_data_keys() -> None:
    """D-DATA, D-BOUND: keys counted at every level against max_data_keys."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r1")
    held = body_at(trace, index)["interaction-data"]
    held["account"] = {"id": "42", "tier": "gold"}
    total = len(held) + 2
    assert [] == check(trace, [f"max_data_keys={total}"])
    assert [(line(index), "D-DATA")] == check(trace, [f"max_data_keys={total - 1}"])


def test_init_without_conversations() -> None:
    """S-INIT-2."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r12")
    del body_at(trace, index)["conversations"]
    assert [(line(index), "S-INIT-2")] == check(trace)


def test_alerting_init_without_primary() -> None:
    """S-INIT-3."""
    trace = record(reinit_while_alerting())
    index = answer(trace, "r4")
    alerting = "ALERTING"
    assert alerting == body_at(trace, index)["interaction-state"]
    del body_at(trace, index)["conversations"]["primary"]
    assert [(line(index), "S-INIT-3")] == check(trace)


def test_alerting_init_with_a_consult() -> None:
    """S-INIT-4."""
    trace = record(reinit_while_alerting())
    index = answer(trace, "r4")
    body_at(trace, index)["conversations"]["consult"] = {"id": "c9"}
    assert [(line(index), "S-INIT-4")] == check(trace)


def test_ended_init_with_a_conversation() -> None:
    """S-INIT-5."""
    trace = record(rejected())
    index = answer(trace, "r5")
    ended: dict[str, Any] = {"interaction-state": "ENDED", "conversations": {}}
    assert ended == {k: body_at(trace, index)[k] for k in ended}
    body_at(trace, index)["conversations"]["primary"] = {"id": "c1"}
    assert [(line(index), "S-INIT-5")] == check(trace)


def test_init_lists_a_consult_that_ended() -> None:
    """D-INIT-7: after the conference the consult leg ENDED."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r12")
    body_at(trace, index)["conversations"]["consult"] = {"id": "sim-1"}
    assert [(line(index), "D-INIT-7")] == check(trace)


def test_conversation_init_with_another_nativeid() -> None:
    """D-CONV-ID: createconversation registered b1 for c1."""
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r3")
    body_at(trace, index)["nativeid"] = "c2"
    assert [(line(index), "D-CONV-ID")] == check(trace)


# --------------------------------------------------------------------------
# Preconditions: a refusal of the engine turned into a SUCCESS.


def test_consult_succeeds_while_alerting() -> None:
    """S-CONS-1."""
    trace, index = flipped(
        record([*inbound_setup(), request(CONSULT, IT, "r4", destination="200")]), "r4", nativeid="x1"
    )
    assert [(line(index), "S-CONS-1")] == check(trace)


def test_second_consult_succeeds_while_one_is_active() -> None:
    """D-CONS-2."""
    trace, index = flipped(record(second_consult()), "r7b", nativeid="sim-9")
    assert [(line(index), "D-CONS-2")] == check(trace)


@pytest.mark.parametrize("reinit", [False, True], ids=["at-once", "after-reinit"])
def test_second_consult_succeeds_while_the_first_rings(reinit: bool) -> None:
    """D-CONS-2: the first consult's leg sim-1 still rings (no conversation
    of it exists yet, so no conversation event says so; its consult response
    named it, the re-init lists it, and the trace shows no switch event that
    ends it), yet a second consult is answered SUCCESS."""
    base = record(consult_while_one_rings(reinit))
    clean: Found = []
    assert clean == check(base)
    trace, index = flipped(base, "r7", nativeid="sim-2")
    assert [(line(index), "D-CONS-2")] == check(trace)


def test_createconversation_succeeds_for_an_unknown_nativeid() -> None:
    """D-CC-2."""
    base = record([*inbound_setup(), request(CREATE, IT, "r4", id="b9", nativeid="ghost")])
    trace, index = flipped(base, "r4")
    assert [(line(index), "D-CC-2")] == check(trace)


def test_createconversation_after_an_ended_reinit_is_clean() -> None:
    """D-CC-3: a re-init keeps the init phase open for the legs an earlier
    init listed; the engine creates c1, and the checker agrees."""
    trace = record(created_after_an_ended_reinit())
    index = answer(trace, "r4")
    succeeded = "SUCCESS"
    assert succeeded == headers_at(trace, index)["result"]
    clean: Found = []
    assert clean == check(trace)


def test_createconversation_succeeds_for_a_registered_nativeid() -> None:
    """D-CC-3: p1 is already conversation b2."""
    trace, index = flipped(record(phone_consult()), "r6")
    assert [(line(index), "D-CC-3")] == check(trace)


def test_alternate_succeeds_without_a_consult() -> None:
    """D-ALT-1: the busy consult leg ENDED."""
    trace, index = flipped(record(busy_consult()), "r10")
    assert [(line(index), "D-ALT-1")] == check(trace)


def test_conference_succeeds_without_a_connected_consult() -> None:
    """D-CONF-1: the busy consult leg ENDED."""
    trace, index = flipped(record([*busy_consult()[:-1], request(CONFERENCE, IT, "r12")]), "r12")
    assert [(line(index), "D-CONF-1")] == check(trace)


def test_transfer_while_consult_rings_needs_the_policy() -> None:
    """D-XFER-1: legal only under transfer_while_consult_ringing."""
    trace = record(ringing_consult(), policy=RINGING)
    assert [(line(answer(trace, "r8")), "D-XFER-1")] == check(trace)
    clean: Found = []
    assert clean == check(trace, RINGING)


def test_accept_succeeds_after_the_call_ended() -> None:
    """D-GENERIC: accept needs ALERTING."""
    trace, index = flipped(record(rejected()), "r6")
    assert [(line(index), "D-GENERIC")] == check(trace)


def test_conversation_request_judged_by_the_conversation_state() -> None:
    """D-CONV: hold of the primary while it is HELD."""
    trace, index = flipped(record([*full_call()[:8], request(HOLD, P, "r8")]), "r8")
    assert [(line(index), "D-CONV")] == check(trace)


def test_request_judged_when_it_starts_executing() -> None:
    """D-SERIAL: reject arrived while the interaction was ALERTING but
    started after accept's response (STARTED): its SUCCESS is illegal."""
    trace, index = flipped(record(serial(), "scripted"), "r5")
    assert [(line(index), "D-GENERIC")] == check(trace)


def test_queued_request_answered_before_the_request_ahead() -> None:
    """D-SERIAL: consult r6 arrived while accept r4 was pending (ALERTING:
    consult needs STARTED, which only accept leaves). Its SUCCESS moved
    before accept's response (after interaction.started, which accept's own
    change sent): it cannot have started before accept was answered."""
    base = record(serial(), "scripted")
    clean: Found = []
    assert clean == check(base)
    trace, at = moved(base, answer(base, "r6"), answer(base, "r4"))
    assert event(trace, "interaction.started") < at
    assert [(line(at), "D-SERIAL")] == check(trace)


def test_request_before_init_succeeds() -> None:
    """D-LIFE-5."""
    trace, index = flipped(record(before_init()), "r1")
    assert [(line(index), "D-LIFE-5")] == check(trace)


def test_duplicate_request_id_succeeds() -> None:
    """D-DUP."""
    trace, index = flipped(record(duplicates_and_malformed()), "r4", nth=1)
    assert [(line(index), "D-DUP")] == check(trace)


def without_rules(trace: Trace) -> Trace:
    """``trace`` as the bridge records it: the wire carries no rule IDs."""
    return [{k: v for k, v in entry.items() if k != "rule"} for entry in trace]


def test_request_id_refused_then_repeated_succeeds() -> None:
    """D-DUP: complete r4 was answered FAILURE (D-GENERIC: ALERTING); its
    repeat, in ENDED, must be refused as duplicate, yet is answered SUCCESS.
    Also without the rule IDs of the trace lines (a bridge's trace): the
    first FAILURE answers the first message, so it is no refusal."""
    base = record(refused_then_repeated())
    refusal = headers_at(base, answer(base, "r4", 1))
    assert "duplicate" in refusal["errorMessage"]
    clean: Found = []
    assert clean == check(base)
    assert clean == check(without_rules(base))
    trace, index = flipped(base, "r4", nth=1)
    assert [(line(index), "D-DUP")] == check(trace)
    assert [(line(index), "D-DUP")] == check(without_rules(trace))


def test_request_lost_with_the_connection_and_sent_again() -> None:
    """D-RECONNECT, D-DUP: alternate r9 is lost with a dropped connection
    (the client never got it); the bridge sends it again on the next one,
    and the client executes it once: not a repeat, and nothing unanswered."""
    index = asked(FULL, "r9")
    lost = copy.deepcopy(FULL[index])
    trace = [{"connection": 1}, *FULL[:index], lost, {"connection": 2}, *FULL[index:]]
    clean: Found = []
    assert clean == check(trace)
    assert clean == check(without_rules(trace))


def test_repeat_judged_again() -> None:
    """D-DUP: at most one response per requestId is not the D-DUP refusal;
    the repeat of r4 is answered as judged by its own rule (D-GENERIC)."""
    trace = copy.deepcopy(record(refused_then_repeated()))
    index = answer(trace, "r4", 1)
    trace[index]["rule"] = "D-GENERIC"
    assert [(line(index), "D-DUP")] == check(trace)


def test_malformed_request_succeeds() -> None:
    """D-BAD: nativeid is a number."""
    trace, index = flipped(record(duplicates_and_malformed()), "r7")
    assert [(line(index), "D-BAD")] == check(trace)


def test_leg_never_announced_is_not_created() -> None:
    """D-CC-2, D-CC-4: p1, dialed on the phone before init, ended before it:
    no event or snapshot named it, so its createconversation must be refused
    (the checker reports D-CC-2 on an engine that lets it succeed)."""
    lines: list[Line] = [
        offered("c1"),
        switch("connected", "c1"),
        dialing("p1", "400"),
        switch("ended", "p1"),
        query(INIT, IT, "r1"),
        request(CREATE, IT, "r2", id="b2", nativeid="p1"),
    ]
    clean: Found = []
    assert clean == check(record(lines))


# --------------------------------------------------------------------------
# The Watcher API and unreadable traces.


def test_watcher_fed_message_by_message() -> None:
    """The reference bridge's use: one message at a time, then finish."""
    watcher = Watcher()
    found: list[Violation] = []
    for number, entry in enumerate(FULL[: asked(FULL, "r18") + 1], start=1):
        if entry.get("from") == "bridge":
            found += watcher.from_bridge(entry["message"], number)
        elif entry.get("to") == "bridge":
            found += watcher.from_client(entry["message"], number)
        else:
            found += watcher.switch(entry, number)
    nothing: list[Violation] = []
    assert nothing == found
    last = line(asked(FULL, "r18"))
    expected = [
        Violation(
            last,
            Refusal(
                "S-REQ-1",
                f"interaction.request.dispose (requestId r18, line {last}) to {IT} was never answered "
                f"(the trace ends at line {last})",
            ),
        )
    ]
    assert expected == watcher.finish(last)
    assert nothing == watcher.finish(last)


def test_run_still_going() -> None:
    """A trace of a run that goes on: what awaits a response is no violation."""
    lines = serialize(FULL[: asked(FULL, "r18") + 1])
    nothing: list[Violation] = []
    assert nothing == check_lines(lines, end_of_run=False)


def test_connection_lost_forgets_what_was_pending() -> None:
    """A dropped connection: the pending accept will not be answered on it."""
    watcher = Watcher()
    for number, entry in enumerate(FULL[: asked(FULL, "r4") + 1], start=1):
        if entry.get("from") == "bridge":
            watcher.from_bridge(entry["message"], number)
        elif entry.get("to") == "bridge":
            watcher.from_client(entry["message"], number)
    watcher.connection_lost()
    nothing: list[Violation] = []
    assert nothing == watcher.finish(asked(FULL, "r4") + 1)


def test_replaced_target_rule() -> None:
    """D-TARGET is replaceable: the watcher addresses destinations as the engine does."""
    buffer = io.StringIO()
    driver = Driver(targets=SlashTargets(), trace=buffer)
    it, conv = f"{CH}/c1", f"{CH}/c1/b1"
    lines: list[Line] = [
        offered("c1"),
        query(INIT, it, "r1"),
        request(CREATE, it, "r2", id="b1", nativeid="c1"),
        query(CINIT, conv, "r3"),
        request(ACCEPT, it, "r4"),
    ]
    feed_lines(driver.runner, lines)
    trace = buffer.getvalue().splitlines()
    nothing: list[Violation] = []
    assert nothing == check_lines(trace, targets=driver.engine.targets)
    answered = 1 + next(n for n, text in enumerate(trace) if '"r1"' in text and "cti.response" in text)
    expected = [(answered, "D-TARGET")]
    assert expected == [(v.line, v.rule) for v in check_lines(trace)][:1]


@pytest.mark.parametrize(("text", "number"), [("{}\n[1, 2]\n", 2), ('{"to": "bridge"}\nnot json\n', 2)])
def test_unreadable_trace(text: str, number: int) -> None:
    with pytest.raises(UnreadableTrace) as caught:
        check_lines(text.splitlines())
    assert number == caught.value.line


# --------------------------------------------------------------------------
# telephony-fsm check.


def write(path: Path, trace: Trace) -> Path:
    path.write_text("".join(text + "\n" for text in serialize(trace)), encoding="utf-8")
    return path


def test_check_command_clean_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean_exit = 0
    assert clean_exit == main([str(write(tmp_path / "t.jsonl", FULL))])
    silent = ("", "")
    assert silent == tuple(capsys.readouterr())


def test_check_command_prints_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = copy.deepcopy(FULL)
    index = answer(trace, "r16")
    headers_at(trace, index)["name"] = "interaction.request.reject"
    violations_exit = 1
    assert violations_exit == main([str(write(tmp_path / "t.jsonl", trace))])
    out = capsys.readouterr().out
    expected = (
        f"{line(index)}  S-REQ-2a  the response to interaction.request.consulttransfer "
        f"(requestId r16, line {line(asked(trace, 'r16'))}) is named interaction.request.reject, "
        "not interaction.request.consulttransfer\n"
    )
    assert expected == out


def test_check_command_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "t.jsonl", record(ringing_consult(), policy=RINGING))
    clean_exit, violations_exit, usage_error = 0, 1, 2
    assert violations_exit == main([str(path)])
    assert clean_exit == main([str(path), "--policy", "transfer_while_consult_ringing=true"])
    assert usage_error == main([str(path), "--policy", "no_such_policy=1"])
    assert "no_such_policy" in capsys.readouterr().err


def test_check_command_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unreadable = 2
    assert unreadable == main([str(tmp_path / "missing.jsonl")])
    assert "missing.jsonl" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(serialize(FULL)[0] + "\n{not json\n", encoding="utf-8")
    assert unreadable == main([str(broken)])
    captured = capsys.readouterr()
    expected = ("", True)
    assert expected == (captured.out, "line 2" in captured.err)


# --------------------------------------------------------------------------
# The package's structure.


def test_the_checker_modules_import_only_those_below_them() -> None:
    """fsm.checker: model, rules, state, events, watcher, trace; each imports
    only modules before it in that order (no circle, calls go down)."""
    order = ["model", "rules", "state", "tree", "events", "watcher", "trace"]
    package = Path(__file__).resolve().parent.parent / "fsm" / "checker"
    assert sorted([*order, "__init__"]) == sorted(p.stem for p in package.glob("*.py"))
    for index, name in enumerate(order):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {
            node.module.removeprefix("fsm.checker.")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fsm.checker")
        }
        assert imported <= set(order[:index]), f"fsm.checker.{name} imports {sorted(imported)}"


def test_f_tch_1_a_dial_answered_before_its_interaction_was_announced() -> None:
    """F-TCH-1, D-TCH-1, D-ORDER: a dial's SUCCESS follows the announcement of
    its new interaction; moved before it, the checker reports F-TCH-1."""
    buffer = io.StringIO()
    driver = Driver(trace=buffer)
    driver.message("channel.request.dial", CH, {"destination": "ring300"})
    trace = [json.loads(line) for line in buffer.getvalue().splitlines()]
    clean: Found = []
    assert clean == check(trace)
    created = find(trace, lambda e: (_headers(e, "to", "bridge") or {}).get("name") == "interaction.created")
    dialed = find(trace, lambda e: (_headers(e, "to", "bridge") or {}).get("name") == "channel.request.dial")
    reordered, _ = moved(trace, dialed, created)
    assert ["F-TCH-1"] == [rule for _, rule in check(reordered) if rule == "F-TCH-1"]

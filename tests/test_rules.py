"""One or more tests per rule of spec/protocol.md (and D-NEW of harness.md),
each through the real engine, switch driver and runner."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from adapters.simulated import SimulatedSwitch
from fsm.engine import Targets, ToBridge
from fsm.snapshot import snapshot
from tests.driver import (
    CH,
    DEVICE,
    Driver,
    body,
    cmd_id,
    commands,
    error_message,
    errors,
    event_names,
    events,
    messages,
    ok,
    responses,
    result,
    state,
)

T = f"{CH}.c1"


def test_d_new_offered_call_announced_on_channel() -> None:
    """D-NEW: interaction.created on the channel target, id = the call id."""
    d = Driver()
    out = d.switch("offered", "c1")
    expected = [
        {
            "header": {"type": "cti.event", "name": "interaction.created", "target": CH},
            "body": {"interactionid": "c1", "type": "telephony"},
        }
    ]
    assert expected == messages(out)


def test_s_req_1_exactly_one_response_per_request_over_a_full_call() -> None:
    """S-REQ-1: every query and request is answered exactly once, including a
    duplicate id (its own refusal) and requests answered later by the switch."""
    d = Driver()
    d.switch("offered")
    out = d.msg("interaction.query.init")
    out += d.create("b1", "c1")
    out += d.req("accept")
    out += d.req("consult", destination="200")
    out += d.create("b2", "sim-1")
    out += d.req("alternate")
    out += d.req("consultconference")
    out += d.conv("release")
    out += d.req("complete")
    out += d.req("complete", rid="r3")  # duplicate of createconversation's id
    seen = Counter(r["header"]["requestId"] for r in responses(out))
    expected = {f"r{n}": 1 for n in range(1, 10)} | {"r3": 2}
    assert expected == dict(seen)


def test_s_req_2_response_echoes_headers_and_failure_explains() -> None:
    """S-REQ-2: name, target and requestId echoed; FAILURE has a readable errorMessage."""
    d = Driver()
    d.switch("offered")
    d.init()
    out = d.req("consult", rid="{A-1}", destination="200")
    headers = responses(out)[0]["header"]
    expected = {
        "type": "cti.response",
        "name": "interaction.request.consult",
        "target": T,
        "requestId": "{A-1}",
        "result": "FAILURE",
    }
    assert expected == {k: v for k, v in headers.items() if k != "errorMessage"}
    assert "consult refused: the interaction is ALERTING" in headers["errorMessage"]
    assert "Traceback" not in headers["errorMessage"]


def test_s_req_2a_consulttransfer_response_named_after_the_request() -> None:
    """S-REQ-2a: the consulttransfer response is named consulttransfer, not reject."""
    d = Driver()
    d.consulting_call()
    out = d.req("consulttransfer")
    assert [r["header"]["name"] for r in responses(out)] == ["interaction.request.consulttransfer"]


def test_s_evt_0_events_carry_no_request_id() -> None:
    """S-EVT-0: type cti.event, a name and a target, never a requestId."""
    d = Driver()
    d.talking_call()
    out = d.req("consult", destination="200") + d.switch("ended", "c1")
    for message in events(out) + events(d.switch("offered", "c9")):
        assert message["header"]["type"] == "cti.event"
        assert {"type", "name", "target"} == set(message["header"])


def test_s_life_1_conversation_destination_exists_only_after_creation() -> None:
    """S-LIFE-1: set up (createconversation), then init, then tear down."""
    d = Driver()
    d.switch("offered")
    d.init()
    before = d.msg("conversation.query.init", f"{T}.b1")
    assert "FAILURE" == result(before)
    assert "D-TARGET" == d.rule(before)
    assert ok(d.create("b1", "c1"))
    assert d.conv_init("b1")["conversation-state"] == "ALERTING"
    assert ok(d.msg("conversation.request.dispose", f"{T}.b1"))
    after = d.msg("conversation.query.init", f"{T}.b1")
    assert "FAILURE" == result(after)
    assert "D-LIFE-4" == d.rule(after)


def test_s_life_2_no_event_before_init_answered() -> None:
    """S-LIFE-2: no interaction or conversation event before its init query is answered."""
    d = Driver()
    d.switch("offered")
    assert event_names(d.switch("connected")) == []  # interaction not initialized
    d.init()
    assert ok(d.create("b1", "c1"))
    assert event_names(d.req("setdata", k="v")) == ["interaction.datachanged"]
    assert event_names(d.switch("held")) == []  # conversation b1 not initialized yet
    d.conv_init("b1")
    assert event_names(d.switch("retrieved")) == ["conversation.talking"]


def test_d_life_3_pre_init_changes_folded_into_snapshot() -> None:
    """D-LIFE-3: changes before init appear in the snapshot and never as events."""
    d = Driver()
    d.switch("offered")
    d.switch("connected")
    d.switch("held")
    snap = d.init()
    assert snap["interaction-state"] == "STARTED"
    d.create("b1", "c1")
    assert d.conv_init("b1")["conversation-state"] == "HELD"
    assert event_names(d.feed({"from": "clock", "advance": 1})) == []


def test_d_life_5_request_before_init_refused_and_reinit_allowed() -> None:
    """D-LIFE-5: a request before init is refused; a repeated init is answered
    with the current snapshot and changes nothing."""
    d = Driver()
    d.switch("offered")
    out = d.req("accept")
    assert "FAILURE" == result(out)
    assert "D-LIFE-5" == d.rule(out)
    assert commands(out) == []
    first = d.init()
    state = snapshot(d.engine)
    assert first == d.init()
    after = snapshot(d.engine)
    for snap in (state, after):
        for interaction in snap["interactions"]:
            interaction["request_ids"] = {}
    assert state == after


def test_d_life_4_dispose_forgets_without_hanging_up() -> None:
    """D-LIFE-4: dispose answers SUCCESS, issues no switch command, later
    messages get "destination disposed", later switch events are ignored."""
    d = Driver()
    d.talking_call()
    out = d.req("dispose")
    assert ok(out)
    assert commands(out) == []
    later = d.msg("interaction.query.init")
    assert "FAILURE" == result(later)
    assert "D-LIFE-4" == d.rule(later)
    assert "disposed" in error_message(later)
    again = d.req("dispose")
    assert result(again) == "FAILURE"
    ignored = d.switch("ended", "c1")
    assert [] == ignored  # D-SWITCH: ignored, no output at all


def test_d_life_4_dispose_before_init_is_allowed() -> None:
    """D-LIFE-4: dispose is valid in any state, before init too."""
    d = Driver()
    d.switch("offered")
    assert ok(d.req("dispose"))


def test_s_init_1_keys_and_nested_data() -> None:
    """S-INIT-1: interaction-state, interaction-data (strings or nested objects), conversations."""
    d = Driver()
    d.switch("offered", ani="5551000", data={"account": {"id": "42", "tier": "gold"}})
    snap = d.init()
    assert {"interaction-state", "interaction-data", "conversations"} == set(snap)
    expected = {"ani": "5551000", "account": {"id": "42", "tier": "gold"}}
    assert expected == snap["interaction-data"]


def test_d_data_switch_data_that_breaks_it_is_trimmed_and_the_call_accepted() -> None:
    """D-DATA, S-INIT-1: a value that is neither a string nor an object, and
    an object nested deeper than 8 levels, are dropped with one error output
    naming them; the call is accepted with the rest (not a D-SWITCH refusal)."""
    deep: dict[str, object] = {"leaf": "x"}
    for _ in range(300):  # a few hundred levels, well under the frame limit
        deep = {"k": deep}
    d = Driver()
    out = d.switch("offered", data={"n": 5, "ok": "v", "deep": deep, "flag": [1]})
    assert ["interaction.created"] == [m["header"]["name"] for m in messages(out)]
    [error] = errors(out)
    assert error.startswith("D-DATA: offered c1: dropped data data.n, data.deep.k.k.k.k.k.k.k, data.flag")
    kept: dict[str, object] = {}
    for _ in range(6):  # data is level 1, "deep" level 2: objects down to level 8 stay
        kept = {"k": kept}
    assert {"ok": "v", "deep": kept} == d.init()["interaction-data"]


def test_d_data_switch_data_beyond_max_data_keys_is_cut_and_the_call_accepted() -> None:
    """D-DATA, D-BOUND: data from the switch holds at most max_data_keys keys,
    counted at every level with the ani; the keys past the bound are dropped
    in their order, one error output names the first 20 and counts the rest,
    and the call is accepted with what fits."""
    d = Driver(max_data_keys=5)
    data = {"a": "1", "nest": {"b": "2", "c": "3", "d": "4"}, **{f"k{n}": "v" for n in range(30)}}
    out = d.switch("offered", ani="5551000", data=data)
    assert ["interaction.created"] == [m["header"]["name"] for m in messages(out)]
    [error] = errors(out)
    shown = ", ".join(["data.nest.d", *(f"data.k{n}" for n in range(19))])
    assert f"D-DATA: offered c1: dropped data {shown} and 11 more" == error
    expected = {"ani": "5551000", "a": "1", "nest": {"b": "2", "c": "3"}}
    assert expected == d.init()["interaction-data"]


def test_d_data_switch_data_within_max_data_keys_is_taken_whole() -> None:
    """D-DATA: data at the bound exactly is kept whole, with no error."""
    d = Driver(max_data_keys=4)
    out = d.switch("offered", ani="5551000", data={"a": "1", "nest": {"b": "2"}})
    assert [] == errors(out)
    assert {"ani": "5551000", "a": "1", "nest": {"b": "2"}} == d.init()["interaction-data"]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], {"primary": {"id": "c1"}}),
        ([("connected", "c1")], {"primary": {"id": "c1"}}),
        ([("ended", "c1")], {}),
    ],
)
def test_s_init_2_3_5_conversations_by_state(steps: list[tuple[str, str]], expected: object) -> None:
    """S-INIT-2 (always present), S-INIT-3 (primary in ALERTING/DIALING/STARTED),
    S-INIT-5 (empty when ENDED)."""
    d = Driver()
    d.switch("offered")
    for kind, call in steps:
        d.switch(kind, call)
    assert expected == d.init()["conversations"]


def test_s_init_3_primary_listed_while_dialing() -> None:
    """S-INIT-3: an outbound call from the phone is DIALING with its primary."""
    d = Driver()
    d.switch("dialing", "c1", destination="5552000")
    snap = d.init()
    assert (snap["interaction-state"], snap["conversations"]) == ("DIALING", {"primary": {"id": "c1"}})


def test_s_init_4_d_init_7_consult_listed_only_while_live() -> None:
    """S-INIT-4, D-INIT-7: consult listed in STARTED while the leg is not ENDED."""
    d = Driver()
    d.talking_call()
    d.req("consult", destination="ring-200")
    assert d.init()["conversations"] == {"primary": {"id": "c1"}, "consult": {"id": "sim-1"}}
    d.switch("connected", "sim-1")
    d.switch("held", "sim-1")
    assert "consult" in d.init()["conversations"]
    d.switch("ended", "sim-1")
    assert d.init()["conversations"] == {"primary": {"id": "c1"}}


def test_s_init_5_completed_has_no_conversations() -> None:
    """S-INIT-5: COMPLETED lists no conversation."""
    d = Driver()
    d.talking_call()
    d.switch("ended", "c1")
    assert ok(d.req("complete"))
    snap = d.init()
    assert (snap["interaction-state"], snap["conversations"]) == ("COMPLETED", {})


def test_d_conv_id_init_ids_are_native_ids() -> None:
    """D-CONV-ID: init lists nativeids, also after createconversation with another bridge id."""
    d = Driver()
    d.consulting_call()
    assert d.init()["conversations"] == {"primary": {"id": "c1"}, "consult": {"id": "sim-1"}}
    assert d.conv_init("b2")["nativeid"] == "sim-1"


def test_s_init_6_engine_sends_interaction_events_at_once() -> None:
    """S-INIT-6: the engine does not queue interaction events while the listed
    conversations are not yet created; the bridge queues them."""
    d = Driver()
    d.switch("offered")
    d.init()  # lists primary c1, not yet created
    assert event_names(d.switch("connected")) == ["interaction.started"]


def test_s_cc_1_createconversation_only_in_init_phase_or_after_consult() -> None:
    """S-CC-1: after the init phase, a known leg not named by a consult cannot be created."""
    d = Driver()
    d.talking_call()  # init phase over: c1 created as b1
    d.switch("ended", "c1")
    out = d.create("b9", "c1")
    assert result(out) == "FAILURE"  # c1 is registered as b1: D-CC-3
    assert d.rule(out) == "D-CC-3"


def test_s_cc_1_phase_closed_refuses_uncreated_leg() -> None:
    """S-CC-1: a leg listed in init but the phase reopened only by re-init."""
    d = Driver()
    d.switch("offered")
    d.init()
    assert ok(d.create("b1", "c1"))
    d.switch("connected")
    d.req("consult", destination="200")
    assert ok(d.create("b2", "sim-1"))
    assert ok(d.req("consultconference"))
    # a second consult leg named by consult can be created; a third party never named cannot
    out = d.create("b3", "c1x")
    assert "FAILURE" == result(out)
    assert "D-CC-2" == d.rule(out)


def test_s_cc_1_refusal_outside_phase() -> None:
    """S-CC-1: a leg the client knows but never listed nor named (a phone
    consult that came and went before the init) cannot be created."""
    d = Driver()
    d.switch("offered")
    d.switch("connected")
    d.switch("dialing", "k1", destination="200")  # a consult made on the phone, before init
    d.switch("ended", "k1")
    assert {"primary": {"id": "c1"}} == d.init()["conversations"]
    out = d.create("b1", "k1")
    assert "FAILURE" == result(out)
    assert "S-CC-1" == d.rule(out)


def test_d_cc_3_a_re_init_keeps_the_phase_open_for_legs_an_earlier_init_listed() -> None:
    """D-CC-3: the first init listed c1; c1 ends; the re-init lists nothing,
    but c1 can still be created (an ENDED leg: SUCCESS, its init shows ENDED)."""
    d = Driver()
    d.switch("offered")
    d.init()  # lists c1: the init phase is open for it
    d.switch("ended", "c1")
    assert d.init()["conversations"] == {}  # ENDED: nothing listed
    assert ok(d.create("b1", "c1"))
    assert "ENDED" == d.conv_init("b1")["conversation-state"]


def test_d_cc_2_unknown_nativeid_refused() -> None:
    """D-CC-2: createconversation for a nativeid the client does not know."""
    d = Driver()
    d.switch("offered")
    d.init()
    out = d.create("b1", "nope")
    assert "FAILURE" == result(out)
    assert "D-CC-2" == d.rule(out)


def test_d_cc_3_reregistration_and_conflicts() -> None:
    """D-CC-3: the same id+nativeid again is SUCCESS; a conflicting one is FAILURE;
    an ENDED leg listed in init can still be created."""
    d = Driver()
    d.talking_call()
    assert ok(d.create("b1", "c1"))
    conflict = d.create("b7", "c1")
    assert "FAILURE" == result(conflict)
    assert "D-CC-3" == d.rule(conflict)
    d.req("consult", destination="busy-1")  # named, then fails at once: ENDED
    assert ok(d.create("b2", "sim-1"))
    assert d.conv_init("b2")["conversation-state"] == "ENDED"
    clash = d.create("b1", "sim-1")
    assert "FAILURE" == result(clash)
    assert "D-CC-3" == d.rule(clash)


def test_d_cc_4_create_after_interaction_consult_event() -> None:
    """D-CC-4: createconversation may follow the interaction.consult event."""
    d = Driver()
    d.talking_call()
    d.switch("held")
    out = d.switch("dialing", "p2", destination="300")
    assert [(e["header"]["name"], e["body"]) for e in events(out) if "body" in e] == [
        ("interaction.consult", {"nativeid": "p2"})
    ]
    assert ok(d.create("b2", "p2"))


def test_s_evt_1_consult_made_on_the_phone() -> None:
    """S-EVT-1: a new leg dialing while STARTED with no consult pending is an
    outside consult: interaction.consult with its nativeid."""
    d = Driver()
    d.talking_call()
    assert event_names(d.switch("held") + d.switch("dialing", "p2")) == [
        "conversation.held",
        "interaction.consult",
    ]


def test_s_cons_1_consult_needs_started_and_holds_primary() -> None:
    """S-CONS-1: refused in ALERTING; in STARTED the primary is held and the
    response carries the new leg's nativeid."""
    d = Driver()
    d.switch("offered")
    d.init()
    refused = d.req("consult", destination="200")
    assert "FAILURE" == result(refused)
    assert "S-CONS-1" == d.rule(refused)
    d.create("b1", "c1")
    d.conv_init()
    d.req("accept")
    out = d.req("consult", destination="200")
    assert commands(out) == [{"id": cmd_id(2), "op": "consult", "call": "c1", "destination": "200"}]
    assert "conversation.held" in event_names(out)
    assert responses(out)[0]["body"] == {"nativeid": "sim-1"}


def test_d_cons_2_one_consult_at_a_time_and_destination_needed() -> None:
    """D-CONS-2: a second consult, or an empty destination, is refused."""
    d = Driver()
    d.consulting_call()
    again = d.req("consult", destination="300")
    assert "FAILURE" == result(again)
    assert "D-CONS-2" == d.rule(again)
    e = Driver()
    e.talking_call()
    empty = e.req("consult", destination="  ")
    assert "FAILURE" == result(empty)
    assert "D-CONS-2" == e.rule(empty)


def test_d_cons_3_consult_conversation_events_flow_after_its_init() -> None:
    """D-CONS-3: response (nativeid) -> createconversation -> init -> events."""
    d = Driver()
    d.talking_call()
    out = d.req("consult", destination="ring-200")
    assert not any(e["header"]["target"].endswith(".b2") for e in events(out))
    assert ok(d.create("b2", "sim-1"))
    assert d.conv_init("b2")["conversation-state"] == "ALERTING"
    assert event_names(d.switch("connected", "sim-1")) == ["conversation.talking"]


def test_s_xfer_1_d_xfer_1_transfer_ends_both_legs() -> None:
    """S-XFER-1, D-XFER-1: transfer names both legs; on success both end and
    the interaction is ENDED."""
    d = Driver()
    d.consulting_call()
    out = d.req("consulttransfer")
    assert commands(out) == [{"id": cmd_id(3), "op": "transfer", "call": "c1", "consult": "sim-1"}]
    assert ok(out)
    assert "interaction.ended" in event_names(out)
    assert d.init()["interaction-state"] == "ENDED"


def test_d_xfer_1_refused_without_connected_consult() -> None:
    """D-XFER-1: refused with no consult, and while the consult rings unless the policy allows."""
    d = Driver()
    d.talking_call()
    out = d.req("consulttransfer")
    assert "FAILURE" == result(out)
    assert "D-XFER-1" == d.rule(out)
    d.req("consult", destination="ring-1")
    ringing = d.req("consulttransfer")
    assert "FAILURE" == result(ringing)
    assert "transfer_while_consult_ringing" in error_message(ringing)
    p = Driver(transfer_while_consult_ringing=True)
    p.talking_call()
    p.req("consult", destination="ring-1")
    assert ok(p.req("consulttransfer"))


def test_s_conf_1_d_conf_1_conference_folds_consult_into_primary() -> None:
    """S-CONF-1, D-CONF-1: the consult leg ends (its last event), the primary is
    TALKING, and the interaction is back to no consult."""
    d = Driver()
    d.consulting_call()
    out = d.req("consultconference")
    assert ok(out)
    assert event_names(out) == ["conversation.talking", "conversation.ended"]
    assert events(out)[-1]["header"]["name"] == "conversation.ended"
    assert d.init()["conversations"] == {"primary": {"id": "c1"}}
    assert ok(d.req("consult", destination="300"))  # a new consult is possible again


def test_d_conf_1_refused_without_consult() -> None:
    """D-CONF-1: conference needs a connected consult."""
    d = Driver()
    d.talking_call()
    out = d.req("consultconference")
    assert "FAILURE" == result(out)
    assert "D-CONF-1" == d.rule(out)


def test_s_alt_1_active_leg_is_last_talking() -> None:
    """S-ALT-1: alternate holds the last TALKING leg and retrieves the other."""
    d = Driver()
    d.consulting_call()  # consult connected last: it is active
    first = d.req("alternate")
    assert commands(first) == [{"id": cmd_id(3), "op": "alternate", "call": "sim-1", "other": "c1"}]
    assert ok(first)
    second = d.req("alternate")
    assert commands(second) == [{"id": cmd_id(4), "op": "alternate", "call": "c1", "other": "sim-1"}]


def test_d_alt_1_alternate_needs_connected_consult() -> None:
    """D-ALT-1: refused with no consult or a ringing one."""
    d = Driver()
    d.talking_call()
    out = d.req("alternate")
    assert "FAILURE" == result(out)
    assert "D-ALT-1" == d.rule(out)
    d.req("consult", destination="ring-1")
    assert result(d.req("alternate")) == "FAILURE"


def test_d_evt_2_one_event_per_interaction_state_change() -> None:
    """D-EVT-2: events named after the new state, one per change."""
    d = Driver()
    d.switch("offered")
    d.init()
    names = event_names(d.switch("connected") + d.switch("ended"))
    names += event_names(d.req("complete"))
    assert names == ["interaction.started", "interaction.ended", "interaction.completed"]


def test_d_evt_3_datachanged_carries_changed_keys() -> None:
    """D-EVT-3: interaction.datachanged with the changed keys only."""
    d = Driver()
    d.switch("offered", ani="1")
    d.init()
    out = d.req("setdata", ani="1", note="vip")
    assert [e["body"] for e in events(out)] == [{"interaction-data": {"note": "vip"}}]  # D-BODY
    assert events(d.req("setdata", note="vip")) == []


def test_d_primary_loss_consult_becomes_primary() -> None:
    """D-PRIMARY-LOSS: primary ends while the consult is connected: STARTED,
    consult listed as primary; while ringing: DIALING then STARTED."""
    d = Driver()
    d.consulting_call()
    assert [n for n in event_names(d.switch("ended", "c1")) if n.startswith("interaction.")] == []
    snap = d.init()
    assert (snap["interaction-state"], snap["conversations"]) == ("STARTED", {"primary": {"id": "sim-1"}})
    assert d.conv_init("b2")["role"] == "primary"
    r = Driver()
    r.talking_call()
    r.req("consult", destination="ring-1")
    assert event_names(r.switch("ended", "c1")) == ["interaction.dialing", "conversation.ended"]  # D-ORDER
    assert event_names(r.switch("connected", "sim-1")) == ["interaction.started"]


def test_d_primary_loss_no_leg_left_ends() -> None:
    """D-PRIMARY-LOSS: no leg left -> ENDED."""
    d = Driver()
    d.talking_call()
    assert "interaction.ended" in event_names(d.switch("ended", "c1"))


def test_d_consult_end_primary_stays_held_unless_policy() -> None:
    """D-CONSULT-END: a failed consult leaves the primary HELD; the policy retrieves it."""
    d = Driver()
    d.talking_call()
    out = d.req("consult", destination="busy-1")
    assert ok(out)
    assert [c["op"] for c in commands(out)] == ["consult"]
    assert d.conv_init("b1")["conversation-state"] == "HELD"
    p = Driver(reconnect_on_consult_end=True)
    p.talking_call()
    out = p.req("consult", destination="busy-1")
    assert [c["op"] for c in commands(out)] == ["consult", "retrieve"]
    assert p.conv_init("b1")["conversation-state"] == "TALKING"


def test_d_async_timeout_then_late_leg_released() -> None:
    """D-ASYNC: no answer from the switch -> FAILURE after request_timeout of
    engine clock, not before; a leg named afterwards is released."""
    d = Driver(scripted=True, request_timeout=5)
    d.switch("offered")
    d.init()
    d.create("b1", "c1")
    accept = d.req("accept")
    assert responses(accept) == []
    d.switch("result", "", command=cmd_id(1), ok=True)
    d.switch("connected")
    out = d.req("consult", destination="200")
    assert responses(out) == []
    assert responses(d.feed({"from": "clock", "advance": 4.9})) == []
    late = d.feed({"from": "clock", "advance": 0.2})
    assert "FAILURE" == result(late)
    assert "D-ASYNC" == d.rule(late)
    released = d.switch("dialing", "x9")
    assert commands(released) == [{"id": cmd_id(3), "op": "release", "call": "x9"}]


def test_d_async_switch_refusal_fails_the_request() -> None:
    """D-ASYNC: a result with ok=false answers FAILURE with the switch's reason."""
    d = Driver(scripted=True)
    d.switch("offered")
    d.init()
    d.req("accept")
    out = d.switch("result", "", command=cmd_id(1), ok=False, reason="no such call")
    assert "FAILURE" == result(out)
    assert "no such call" in error_message(out)


def test_d_serial_second_request_waits_for_the_first() -> None:
    """D-SERIAL: a request arriving while one is pending waits, then is judged
    against the state the first left; queries are answered at once."""
    d = Driver(scripted=True)
    d.switch("offered")
    d.init()
    assert responses(d.req("accept")) == []
    waiting = d.req("reject")
    assert responses(waiting) == []
    assert body(d.msg("interaction.query.init"))["interaction-state"] == "ALERTING"
    out = d.switch("connected")
    assert [r["header"]["result"] for r in responses(out)] == ["SUCCESS", "FAILURE"]
    assert "the interaction is STARTED" in error_message(out)


def test_d_serial_a_waiting_request_keeps_the_properties_it_was_sent_with() -> None:
    """D-SERIAL: a request that waits its turn runs with the properties it
    arrived with, whether it came as bytes or as an object its sender still
    holds and changes afterwards."""
    engine = Driver().engine  # logged in; fed directly below
    engine.receive_switch({"kind": "offered", "call": "c1", "device": DEVICE})
    target = f"{CH}.c1"

    def message(name: str, rid: str, **properties: str) -> dict[str, Any]:
        kind = "cti.query" if ".query." in name else "cti.request"
        return {
            "header": {"type": kind, "name": name, "target": target, "requestId": rid},
            **({"body": properties} if properties else {}),
        }

    engine.receive_bridge(message("interaction.query.init", "r1"))
    engine.receive_bridge(message("interaction.request.accept", "r2"))  # executing until connected
    held_by_sender = message("interaction.request.setdata", "r3", tier="gold")
    as_bytes = json.dumps(message("interaction.request.setdata", "r4", queue="sales")).encode()
    assert [] == engine.receive_bridge(held_by_sender) + engine.receive_bridge(as_bytes)  # both wait
    held_by_sender["body"]["tier"] = "changed by the sender"
    out = engine.receive_switch({"kind": "connected", "call": "c1"})
    changes = [
        o.message.body for o in out if isinstance(o, ToBridge) and o.message.name.endswith("datachanged")
    ]
    assert [{"interaction-data": {"tier": "gold"}}, {"interaction-data": {"queue": "sales"}}] == changes


def test_d_dup_duplicate_request_id_never_executed_twice() -> None:
    """D-DUP: a requestId seen before on the destination is refused and not executed."""
    d = Driver()
    d.talking_call()
    first = d.req("consult", rid="X", destination="200")
    assert ok(first)
    dup = d.req("consultconference", rid="X")
    assert "FAILURE" == result(dup)
    assert "D-DUP" == d.rule(dup)
    assert commands(dup) == []


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"from":"bridge","message":{"header":{"type":"cti.request"}}}', "no requestId"),
        ('{"from":"bridge","message":"hello"}', "message is not JSON"),
        ('{"from":"bridge","message":[1]}', "JSON object"),
    ],
)
def test_d_bad_unanswerable_input_is_a_protocol_error(line: str, fragment: str) -> None:
    """D-BAD: malformed input without a requestId is a protocol error; nothing changes."""
    d = Driver()
    d.switch("offered")
    before = state(d.engine)
    out = d.raw(line)
    assert len(out) == 1
    assert out[0]["protocol_error"]["rule"] == "D-BAD"
    assert fragment in out[0]["protocol_error"]["message"]
    assert before == state(d.engine)


@pytest.mark.parametrize(
    ("header", "body", "fragment"),
    [
        ({"type": "cti.request", "name": "interaction.request.nope"}, None, "unknown message name"),
        ({"type": "cti.event", "name": "interaction.request.accept"}, None, "header.type"),
        ({"type": "cti.query", "name": "interaction.request.accept"}, None, "is a cti.request"),
        ({"type": "cti.request", "name": 7}, None, "header.name: expected a string"),
        (
            {"type": "cti.request", "name": "interaction.request.consult"},
            {"destination": 5},
            "body.destination: expected a string, got the number 5",
        ),
        ({"type": "cti.request", "name": "interaction.request.consult"}, {}, "body.destination: is missing"),
        (
            {"type": "cti.request", "name": "interaction.request.consult"},
            [1],
            "expected an object, got an array",
        ),
        (
            {"type": "cti.request", "name": "interaction.request.setdata"},
            "k=v",
            "expected an object, got a string",
        ),
    ],
)
def test_d_bad_answerable_input_gets_failure_naming_the_defect(
    header: dict[str, object], body: object, fragment: str
) -> None:
    """D-BAD: with a requestId, a FAILURE naming the defect; no state change."""
    d = Driver()
    d.talking_call()
    before = state(d.engine)
    message: dict[str, object] = {"header": {"target": T, "requestId": "bad-1", **header}}
    if body is not None:
        message["body"] = body
    out = d.feed({"from": "bridge", "message": message})
    assert result(out) == "FAILURE"
    assert fragment in error_message(out)
    assert commands(out) == []
    assert before == state(d.engine)


def test_d_bad_switch_event_with_wrong_type_changes_nothing() -> None:
    """D-BAD: a switch event with a missing or mistyped field is an error output."""
    d = Driver()
    d.switch("offered")
    before = state(d.engine)
    out = d.feed({"from": "switch", "event": {"kind": "connected", "call": 5}})
    expected = ["malformed switch event connected: call: expected a string, got the number 5"]
    assert expected == errors(out)
    assert before == state(d.engine)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"kind": ["held"], "call": "c1"}, "switch event: 'kind' is missing or not a string"),
        ({"kind": {"a": 1}, "call": "c1"}, "switch event: 'kind' is missing or not a string"),
        ({"kind": 7, "call": "c1"}, "switch event: 'kind' is missing or not a string"),
        ({"kind": "held", "call": ""}, "switch event held: 'call' is empty"),
        ({"kind": "held", "cal": "c1"}, "switch event held: missing required field call"),
        ({"kind": "hold", "call": "c1"}, "switch event: unknown kind 'hold'"),
    ],
)
def test_d_bad_two_field_switch_events_are_refused_by_name(event: dict[str, Any], expected: str) -> None:
    """D-BAD: the quick path for a kind and its call refuses anything else
    as the full reader does, naming the defect; nothing changes."""
    d = Driver()
    d.switch("offered")
    before = state(d.engine)
    out = d.feed({"from": "switch", "event": event})
    assert 1 == len(errors(out))
    assert errors(out)[0].startswith(expected)
    assert before == state(d.engine)


def test_d_bound_pending_requests_and_message_size() -> None:
    """D-BOUND: too many pending requests, and an oversized message, are refused clearly."""
    d = Driver(scripted=True, max_pending_requests=2)
    d.switch("offered")
    d.init()
    d.req("accept")
    d.req("reject")
    out = d.req("setdata", k="v")
    assert "FAILURE" == result(out)
    assert "D-BOUND" == d.rule(out)
    assert "max_pending_requests" in error_message(out)
    s = Driver(max_frame_size=200)
    s.switch("offered")
    big = s.req("setdata", k="v" * 300)
    assert "line of" in errors(big)[0] or "exceeds" in str(big)


def test_d_bound_engine_refuses_oversized_bytes() -> None:
    """D-BOUND: raw bytes beyond max_frame_size are refused before parsing."""
    d = Driver(max_frame_size=64, login=False)  # the login's messages are longer
    out = d.engine.receive_bridge(b"{" + b" " * 100 + b"}")
    assert len(out) == 1
    assert out[0].rule == "D-BOUND"  # type: ignore[union-attr]


def test_d_target_unknown_target_refused_and_rule_replaceable() -> None:
    """D-TARGET: an unknown target is FAILURE; the addressing rule can be replaced."""
    d = Driver()
    d.switch("offered")
    out = d.msg("interaction.query.init", f"{CH}.zzz")
    assert "FAILURE" == result(out)
    assert "D-TARGET" == d.rule(out)

    class Slash(Targets):
        def interaction(self, channel: str, interaction_id: str) -> str:
            return f"{channel}/{interaction_id}"

    s = Driver(targets=Slash())
    s.switch("offered")
    assert s.init(f"{CH}/c1")["interaction-state"] == "ALERTING"


def test_d_wire_codec_is_tested_in_test_framing() -> None:
    """D-WIRE: the framing codec is the subject of tests/test_framing.py; here a
    round trip of an engine message through it."""
    from adapters.framing import FrameDecoder, decode_json, encode_json
    from fsm.messages import event, to_wire

    wire = to_wire(event("interaction.started", T))
    frames = FrameDecoder().feed(encode_json(wire))
    assert [wire] == [decode_json(f) for f in frames]


def test_s_alt_1_held_active_leg_hands_over_to_the_talking_one() -> None:
    """S-ALT-1: when the active leg is put on hold while the other talks, the
    talking leg is the active one, so alternate holds it and completes."""
    d = Driver()
    d.consulting_call()  # consult connected last: active
    d.conv("retrieve", "b1")  # primary talking too: primary is now the last TALKING
    d.conv("hold", "b2")
    d.conv("retrieve", "b2")  # consult the last TALKING again
    d.conv("hold", "b2")  # ... and held while the primary talks
    out = d.req("alternate")
    assert [{"id": cmd_id(7), "op": "alternate", "call": "c1", "other": "sim-1"}] == commands(out)
    assert ok(out)


def test_s_alt_1_both_held_the_leg_that_talked_last_is_active() -> None:
    """S-ALT-1: with both legs held, the active leg is the one that was
    TALKING last, not the one that became TALKING last: the primary is
    retrieved and held again while the consult talks, then the consult is
    held; alternate holds the consult and retrieves the primary (D-ASYNC:
    SUCCESS once the switch reports the primary retrieved)."""
    d = Driver()
    d.consulting_call()  # consult connected last: active
    d.switch("retrieved", "c1")  # both talk; the primary became TALKING last
    d.switch("held", "c1")  # ... and is held while the consult still talks
    d.switch("held", "sim-1")  # both held: the consult was TALKING last
    out = d.req("alternate")
    assert [{"id": cmd_id(3), "op": "alternate", "call": "sim-1", "other": "c1"}] == commands(out)
    assert ok(out)
    assert ["conversation.talking"] == event_names(out)
    assert isinstance(d.switch_driver, SimulatedSwitch)
    assert {"c1": "TALKING", "sim-1": "HELD"} == d.switch_driver.calls


def test_d_bad_empty_request_id_cannot_be_answered() -> None:
    """D-BAD: an empty requestId is no usable requestId: a protocol error, never executed."""
    d = Driver()
    d.switch("offered")
    d.init()
    before = state(d.engine)
    out = d.msg("interaction.request.setdata", rid="", properties={"k": "v"})
    assert 1 == len(out)
    assert "D-BAD" == out[0]["protocol_error"]["rule"]
    assert before == state(d.engine)

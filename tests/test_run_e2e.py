"""End-to-end tests of ``telephony-fsm run`` (spec/harness.md) as a subprocess.

Each test feeds one run all its input lines and checks, per input, the exact
responses (result, echoed name/target/requestId, errorMessage on FAILURE),
events and switch commands it caused (``scenario.expect``: nothing else may
be output). Assertions are written ``expected == actual``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.driver import CH, cmd_id, commands, responses
from tests.scenario import (
    ACCEPT,
    ALTERNATE,
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
    K2,
    REJECT,
    RELEASE,
    SETDATA,
    TRANSFER,
    Failure,
    Group,
    Line,
    P,
    assert_answered_once,
    busy_consult,
    clock,
    cmd,
    ctarget,
    dialing,
    expect,
    full_call,
    inbound_setup,
    itarget,
    offered,
    primary_loss,
    query,
    request,
    result,
    run_cli,
    run_cli_process,
    scripted_setup,
    scripted_timeout,
    serial,
    success,
    switch,
)

pytestmark = pytest.mark.e2e

SCRIPTED = ("--switch", "scripted")


def init_body(state: str, data: dict[str, Any], **conversations: str) -> dict[str, Any]:
    """An interaction.query.init body (S-INIT-1): conversations role -> CTI id."""
    return {
        "interaction-state": state,
        "interaction-data": data,
        "conversations": {role: {"id": call} for role, call in conversations.items()},
    }


def conv_body(state: str, nativeid: str, role: str) -> dict[str, str]:
    """A conversation.query.init body."""
    return {"conversation-state": state, "nativeid": nativeid, "role": role}


CUSTOMER = {"ani": "5551000"}
CREATED_C1 = ("interaction.created", CH, {"interactionid": "c1", "type": "telephony"})


def expect_setup(groups: list[Group], state: str = "ALERTING", data: dict[str, Any] | None = None) -> None:
    """D-NEW, S-INIT-1..3, S-CC-1, D-CONV-ID: the four groups of ``inbound_setup``."""
    offer, init, create, cinit = groups[:4]
    expect(offer, events=[CREATED_C1])
    body = init_body(state, CUSTOMER if data is None else data, primary="c1")
    expect(init, responses=[success(INIT, IT, "r1", body=body)])
    expect(create, responses=[success(CREATE, IT, "r2")])
    expect(cinit, responses=[success(CINIT, P, "r3", body=conv_body(state, "c1", "primary"))])


def index_of(group: Group, predicate: Any) -> int:
    for index, entry in enumerate(group):
        if predicate(entry):
            return index
    raise AssertionError(f"no such output in {group}")


def is_command(op: str) -> Any:
    return lambda e: e.get("to") == "switch" and e["command"]["op"] == op


def is_message(name: str, rid: str | None = None) -> Any:
    def predicate(entry: dict[str, Any]) -> bool:
        if entry.get("to") != "bridge":
            return False
        headers = entry["message"]["header"]
        return bool(headers["name"] == name and (rid is None or headers.get("requestId") == rid))

    return predicate


# --------------------------------------------------------------------------
# Basic calls.


def test_inbound_call_accepted_completed_and_disposed() -> None:
    """D-NEW, S-INIT-1, S-INIT-2, S-INIT-3, S-CC-1, D-CONV-ID, S-LIFE-2, S-REQ-2,
    D-GENERIC, D-EVT-2, D-EVT-3, D-LIFE-4: offered -> interaction.created ->
    init -> createconversation -> conversation init -> accept -> customer
    hangs up -> complete -> dispose; afterwards the destinations are gone."""
    data = {"ani": "5551000", "account": {"id": "42", "tier": "gold"}}
    lines: list[Line] = [
        offered("c1", ani="5551000", data={"account": {"id": "42", "tier": "gold"}}),
        *inbound_setup()[1:],
        request(ACCEPT, IT, "r4"),
        request(SETDATA, IT, "r5", note="vip", ani="5551000"),
        switch("ended", "c1", cause="hangup"),
        request(COMPLETE, IT, "r6", wrapup="sale"),
        query(DATA, IT, "r7"),
        request(DISPOSE, IT, "r8"),
        query(INIT, IT, "r9"),
        query(CINIT, P, "r10"),
        request(DISPOSE, IT, "r11"),
        switch("ended", "c1"),
    ]
    groups = run_cli(lines)
    expect_setup(groups, data=data)
    accept, setdata, hangup, complete, data_q, dispose, init2, cinit2, dispose2, late = groups[4:]
    expect(
        accept,
        responses=[success(ACCEPT, IT, "r4")],
        events=[("interaction.started", IT), ("conversation.talking", P)],
        commands=[cmd(cmd_id(1), "answer", "c1")],
    )
    # harness.md: a command is written before the events it causes.
    assert index_of(accept, is_command("answer")) < index_of(accept, is_message("conversation.talking"))
    # D-EVT-3: only the changed key is reported.
    expect(
        setdata,
        responses=[success(SETDATA, IT, "r5")],
        events=[("interaction.datachanged", IT, {"interaction-data": {"note": "vip"}})],
    )
    expect(hangup, events=[("interaction.ended", IT), ("conversation.ended", P, {"cause": "hangup"})])
    expect(
        complete,
        responses=[success(COMPLETE, IT, "r6")],
        events=[
            ("interaction.datachanged", IT, {"interaction-data": {"wrapup": "sale"}}),
            ("interaction.completed", IT),
        ],
    )
    final_data = {**data, "note": "vip", "wrapup": "sale"}
    expect(data_q, responses=[success(DATA, IT, "r7", body={"interaction-data": final_data})])
    expect(dispose, responses=[success(DISPOSE, IT, "r8")])
    expect(init2, responses=[Failure(INIT, IT, "r9", "disposed")])
    expect(cinit2, responses=[Failure(CINIT, P, "r10", "disposed")])
    expect(dispose2, responses=[Failure(DISPOSE, IT, "r11", "disposed")])
    expect(late)  # D-SWITCH, D-LIFE-4: a disposed interaction's call is ignored, with no output
    assert_answered_once(lines, groups)


def test_rejected_call() -> None:
    """D-GENERIC, D-EVT-2, S-INIT-5, S-REQ-2: reject ends the call; accept is
    then refused; complete -> COMPLETED; init lists no conversation."""
    lines: list[Line] = [
        *inbound_setup(),
        request(REJECT, IT, "r4"),
        query(INIT, IT, "r5"),
        request(ACCEPT, IT, "r6"),
        request(COMPLETE, IT, "r7"),
        query(INIT, IT, "r8"),
        request(SETDATA, IT, "r9", note="late"),
    ]
    groups = run_cli(lines)
    expect_setup(groups)
    reject, init, accept, complete, init2, setdata = groups[4:]
    expect(
        reject,
        responses=[success(REJECT, IT, "r4")],
        events=[("interaction.ended", IT), ("conversation.ended", P, {"cause": "rejected"})],
        commands=[cmd(cmd_id(1), "reject", "c1")],
    )
    expect(init, responses=[success(INIT, IT, "r5", body=init_body("ENDED", CUSTOMER))])
    expect(accept, responses=[Failure(ACCEPT, IT, "r6", "accept refused", "ENDED", "ALERTING")])
    expect(
        complete,
        responses=[success(COMPLETE, IT, "r7")],
        events=[("interaction.completed", IT)],
    )
    expect(init2, responses=[success(INIT, IT, "r8", body=init_body("COMPLETED", CUSTOMER))])
    expect(setdata, responses=[Failure(SETDATA, IT, "r9", "COMPLETED")])
    assert_answered_once(lines, groups)


def test_outbound_call_dialed_on_the_phone() -> None:
    """D-NEW, S-INIT-3, S-CONS-1, D-EVT-2, S-INIT-5: a `dialing` for a new call
    with no STARTED interaction starts a DIALING interaction named after the
    call; it becomes STARTED when the far party answers."""
    it, conv = itarget("o1"), ctarget("o1", "b1")
    data = {"destination": "5552000"}
    lines: list[Line] = [
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
    dial, init, consult, create, cinit, alerting, connected, init2, ended, init3 = run_cli(lines)
    expect(dial, events=[("interaction.created", CH, {"interactionid": "o1", "type": "telephony"})])
    expect(init, responses=[success(INIT, it, "r1", body=init_body("DIALING", data, primary="o1"))])
    expect(consult, responses=[Failure(CONSULT, it, "r2", "consult refused", "DIALING", "STARTED")])
    expect(create, responses=[success(CREATE, it, "r3")])
    expect(cinit, responses=[success(CINIT, conv, "r4", body=conv_body("DIALING", "o1", "primary"))])
    expect(alerting, events=[("conversation.alerting", conv)])
    expect(connected, events=[("interaction.started", it), ("conversation.talking", conv)])
    expect(init2, responses=[success(INIT, it, "r5", body=init_body("STARTED", data, primary="o1"))])
    expect(ended, events=[("interaction.ended", it), ("conversation.ended", conv, {"cause": "hangup"})])
    expect(init3, responses=[success(INIT, it, "r6", body=init_body("ENDED", data))])


# --------------------------------------------------------------------------
# Consults.


def test_full_call_consult_alternate_conference_consult_transfer() -> None:
    """S-CONS-1, D-CONS-3, S-CC-1, D-CONV-ID, S-INIT-4, D-INIT-7, S-ALT-1,
    D-ALT-1, S-CONF-1, D-CONF-1, S-XFER-1, D-XFER-1, S-REQ-2a, D-EVT-2,
    D-EVT-3, D-LIFE-4, S-REQ-1: the demo call end to end."""
    lines = full_call()
    groups = run_cli(lines)
    expect_setup(groups)
    (
        accept,
        consult1,
        create1,
        cinit1,
        init_both,
        alt1,
        alt2,
        conference,
        init_after_conf,
        consult2,
        create2,
        cinit2,
        transfer,
        complete,
        dispose,
    ) = groups[4:]
    expect(
        accept,
        responses=[success(ACCEPT, IT, "r4")],
        events=[("interaction.started", IT), ("conversation.talking", P)],
        commands=[cmd(cmd_id(1), "answer", "c1")],
    )
    # S-CONS-1: hold the primary, call 200; SUCCESS names the new leg.
    expect(
        consult1,
        responses=[success(CONSULT, IT, "r5", properties={"nativeid": "sim-1"})],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(2), "consult", "c1", destination="200")],
    )
    expect(create1, responses=[success(CREATE, IT, "r6")])
    expect(cinit1, responses=[success(CINIT, K1, "r7", body=conv_body("TALKING", "sim-1", "consult"))])
    body = init_body("STARTED", CUSTOMER, primary="c1", consult="sim-1")
    expect(init_both, responses=[success(INIT, IT, "r8", body=body)])
    # S-ALT-1: the consult leg is active, so it is held and the primary retrieved.
    expect(
        alt1,
        responses=[success(ALTERNATE, IT, "r9")],
        events=[("conversation.held", K1), ("conversation.talking", P)],
        commands=[cmd(cmd_id(3), "alternate", "sim-1", other="c1")],
    )
    expect(
        alt2,
        responses=[success(ALTERNATE, IT, "r10")],
        events=[("conversation.held", P), ("conversation.talking", K1)],
        commands=[cmd(cmd_id(4), "alternate", "c1", other="sim-1")],
    )
    expect(
        conference,
        responses=[success(CONFERENCE, IT, "r11")],
        events=[("conversation.talking", P), ("conversation.ended", K1, {"cause": "conferenced"})],
        commands=[cmd(cmd_id(5), "conference", "c1", consult="sim-1")],
    )
    body = init_body("STARTED", CUSTOMER, primary="c1")
    expect(init_after_conf, responses=[success(INIT, IT, "r12", body=body)])
    expect(
        consult2,
        responses=[success(CONSULT, IT, "r13", properties={"nativeid": "sim-2"})],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(6), "consult", "c1", destination="300")],
    )
    expect(create2, responses=[success(CREATE, IT, "r14")])
    expect(cinit2, responses=[success(CINIT, K2, "r15", body=conv_body("TALKING", "sim-2", "consult"))])
    # S-REQ-2a: the response is named after the request.
    expect(
        transfer,
        responses=[success(TRANSFER, IT, "r16")],
        events=[
            ("conversation.ended", K2, {"cause": "transferred"}),
            ("interaction.ended", IT),
            ("conversation.ended", P, {"cause": "transferred"}),
        ],
        commands=[cmd(cmd_id(7), "transfer", "c1", consult="sim-2")],
    )
    expect(
        complete,
        responses=[success(COMPLETE, IT, "r17")],
        events=[
            ("interaction.datachanged", IT, {"interaction-data": {"wrapup": "sale"}}),
            ("interaction.completed", IT),
        ],
    )
    expect(dispose, responses=[success(DISPOSE, IT, "r18")])
    assert_answered_once(lines, groups)


def test_consult_to_busy_number_leaves_primary_held() -> None:
    """D-ASYNC, D-CONSULT-END, D-CC-3, D-INIT-7, D-ALT-1: consult to busy-1 is
    SUCCESS with its nativeid (the switch named the leg), then the leg fails;
    the primary stays HELD, no retrieve is issued, the interaction is back to
    no consult and a new consult is allowed."""
    groups = run_cli(busy_consult())
    expect_setup(groups)
    _, consult, create, cinit, init, cinit_primary, alternate, consult2 = groups[4:]
    expect(
        consult,
        responses=[success(CONSULT, IT, "r5", properties={"nativeid": "sim-1"})],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(2), "consult", "c1", destination="busy-1")],
    )
    # D-CC-3: a known leg that already ENDED can still be created.
    expect(create, responses=[success(CREATE, IT, "r6")])
    expect(cinit, responses=[success(CINIT, K1, "r7", body=conv_body("ENDED", "sim-1", "consult"))])
    expect(init, responses=[success(INIT, IT, "r8", body=init_body("STARTED", CUSTOMER, primary="c1"))])
    expect(cinit_primary, responses=[success(CINIT, P, "r9", body=conv_body("HELD", "c1", "primary"))])
    expect(alternate, responses=[Failure(ALTERNATE, IT, "r10", "alternate refused", "consult")])
    expect(
        consult2,
        responses=[success(CONSULT, IT, "r11", properties={"nativeid": "sim-2"})],
        commands=[cmd(cmd_id(3), "consult", "c1", destination="200")],
    )


def test_consult_to_busy_number_with_reconnect_policy_retrieves_primary() -> None:
    """D-CONSULT-END (policy reconnect_on_consult_end=true): the failed consult
    leg makes the engine retrieve the held primary."""
    groups = run_cli(busy_consult(), "--policy", "reconnect_on_consult_end=true")
    expect_setup(groups)
    _, consult, create, cinit, init, cinit_primary, alternate, consult2 = groups[4:]
    expect(
        consult,
        responses=[success(CONSULT, IT, "r5", properties={"nativeid": "sim-1"})],
        events=[("conversation.held", P), ("conversation.talking", P)],
        commands=[
            cmd(cmd_id(2), "consult", "c1", destination="busy-1"),
            cmd(cmd_id(3), "retrieve", "c1"),
        ],
    )
    expect(create, responses=[success(CREATE, IT, "r6")])
    expect(cinit, responses=[success(CINIT, K1, "r7", body=conv_body("ENDED", "sim-1", "consult"))])
    expect(init, responses=[success(INIT, IT, "r8", body=init_body("STARTED", CUSTOMER, primary="c1"))])
    expect(cinit_primary, responses=[success(CINIT, P, "r9", body=conv_body("TALKING", "c1", "primary"))])
    expect(alternate, responses=[Failure(ALTERNATE, IT, "r10", "alternate refused")])
    expect(
        consult2,
        responses=[success(CONSULT, IT, "r11", properties={"nativeid": "sim-2"})],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(4), "consult", "c1", destination="200")],
    )


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


def test_consulttransfer_refused_while_consult_rings() -> None:
    """D-XFER-1, D-INIT-7, S-XFER-1: consulttransfer while the consult party
    still rings is FAILURE and changes nothing; once the party answers it
    succeeds."""
    lines = [
        *ringing_consult(),
        switch("connected", "sim-1"),
        request(TRANSFER, IT, "r10"),
        query(INIT, IT, "r11"),
    ]
    groups = run_cli(lines)
    expect_setup(groups)
    _, consult, create, cinit, transfer, init, answered, transfer2, init2 = groups[4:]
    expect(
        consult,
        responses=[success(CONSULT, IT, "r5", properties={"nativeid": "sim-1"})],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(2), "consult", "c1", destination="ring-1")],
    )
    expect(create, responses=[success(CREATE, IT, "r6")])
    expect(cinit, responses=[success(CINIT, K1, "r7", body=conv_body("ALERTING", "sim-1", "consult"))])
    expect(
        transfer,
        responses=[Failure(TRANSFER, IT, "r8", "ringing", "transfer_while_consult_ringing")],
    )
    body = init_body("STARTED", CUSTOMER, primary="c1", consult="sim-1")
    expect(init, responses=[success(INIT, IT, "r9", body=body)])
    expect(answered, events=[("conversation.talking", K1)])
    expect(
        transfer2,
        responses=[success(TRANSFER, IT, "r10")],
        events=[
            ("conversation.ended", K1, {"cause": "transferred"}),
            ("interaction.ended", IT),
            ("conversation.ended", P, {"cause": "transferred"}),
        ],
        commands=[cmd(cmd_id(3), "transfer", "c1", consult="sim-1")],
    )
    expect(init2, responses=[success(INIT, IT, "r11", body=init_body("ENDED", CUSTOMER))])


def test_consulttransfer_while_consult_rings_allowed_by_policy() -> None:
    """D-XFER-1 (policy transfer_while_consult_ringing=true), S-INIT-5."""
    groups = run_cli(ringing_consult(), "--policy", "transfer_while_consult_ringing=true")
    expect_setup(groups)
    transfer, init = groups[8:]
    expect(
        transfer,
        responses=[success(TRANSFER, IT, "r8")],
        events=[
            ("conversation.ended", K1, {"cause": "transferred"}),
            ("interaction.ended", IT),
            ("conversation.ended", P, {"cause": "transferred"}),
        ],
        commands=[cmd(cmd_id(3), "transfer", "c1", consult="sim-1")],
    )
    expect(init, responses=[success(INIT, IT, "r9", body=init_body("ENDED", CUSTOMER))])


def test_customer_hangs_up_during_consult() -> None:
    """D-PRIMARY-LOSS, D-CONV-ID, S-INIT-3, D-ALT-1, D-EVT-2: the connected
    consult leg becomes the primary; the interaction stays STARTED (no
    interaction event); re-init lists it as primary and its conversation init
    says role primary; releasing it ends the interaction."""
    lines = primary_loss()
    groups = run_cli(lines)
    expect_setup(groups)
    _, consult, create, cinit, hangup, init, cinit2, alternate, release, complete = groups[4:]
    expect(
        consult,
        responses=[success(CONSULT, IT, "r5", properties={"nativeid": "sim-1"})],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(2), "consult", "c1", destination="200")],
    )
    expect(create, responses=[success(CREATE, IT, "r6")])
    expect(cinit, responses=[success(CINIT, K1, "r7", body=conv_body("TALKING", "sim-1", "consult"))])
    expect(hangup, events=[("conversation.ended", P, {"cause": "hangup"})])
    expect(init, responses=[success(INIT, IT, "r8", body=init_body("STARTED", CUSTOMER, primary="sim-1"))])
    expect(cinit2, responses=[success(CINIT, K1, "r9", body=conv_body("TALKING", "sim-1", "primary"))])
    expect(alternate, responses=[Failure(ALTERNATE, IT, "r10", "alternate refused")])
    expect(
        release,
        responses=[success(RELEASE, K1, "r11")],
        events=[("interaction.ended", IT), ("conversation.ended", K1, {"cause": "released"})],
        commands=[cmd(cmd_id(3), "release", "sim-1")],
    )
    expect(complete, responses=[success(COMPLETE, IT, "r12")], events=[("interaction.completed", IT)])
    assert_answered_once(lines, groups)


def test_customer_hangs_up_while_consult_rings() -> None:
    """D-PRIMARY-LOSS: a ringing consult leg becomes the primary, the
    interaction goes to DIALING, then to STARTED when the leg connects."""
    lines = [
        *ringing_consult()[:8],
        switch("ended", "c1"),
        query(INIT, IT, "r8"),
        switch("connected", "sim-1"),
        query(INIT, IT, "r9"),
        query(CINIT, K1, "r10"),
    ]
    hangup, init, connected, init2, cinit = run_cli(lines)[8:]
    expect(hangup, events=[("interaction.dialing", IT), ("conversation.ended", P, {"cause": ""})])
    expect(init, responses=[success(INIT, IT, "r8", body=init_body("DIALING", CUSTOMER, primary="sim-1"))])
    expect(connected, events=[("interaction.started", IT), ("conversation.talking", K1)])
    expect(init2, responses=[success(INIT, IT, "r9", body=init_body("STARTED", CUSTOMER, primary="sim-1"))])
    expect(cinit, responses=[success(CINIT, K1, "r10", body=conv_body("TALKING", "sim-1", "primary"))])


def test_consult_made_on_the_phone() -> None:
    """S-EVT-1, D-CC-4, D-CC-2, D-CC-3, S-INIT-4, S-XFER-1: a `dialing` for a new
    call while STARTED (no consult pending) is a consult made on the phone:
    interaction.consult with its nativeid; createconversation for it succeeds,
    for an unknown nativeid or a second id it fails."""
    lines: list[Line] = [
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
    groups = run_cli(lines)
    expect_setup(groups)
    _, dial, create, create_other_id, create_unknown, recreate, cinit, alerting, connected, init, xfer = (
        groups[4:]
    )
    expect(dial, events=[("interaction.consult", IT, {"nativeid": "p1"})])
    expect(create, responses=[success(CREATE, IT, "r5")])
    expect(create_other_id, responses=[Failure(CREATE, IT, "r6", "already registered")])
    expect(create_unknown, responses=[Failure(CREATE, IT, "r7", "nosuchcall")])
    # D-CC-3: re-registration with the same id and nativeid is SUCCESS.
    expect(recreate, responses=[success(CREATE, IT, "r8")])
    expect(cinit, responses=[success(CINIT, K1, "r9", body=conv_body("DIALING", "p1", "consult"))])
    expect(alerting, events=[("conversation.alerting", K1)])
    expect(connected, events=[("conversation.talking", K1)])
    body = init_body("STARTED", CUSTOMER, primary="c1", consult="p1")
    expect(init, responses=[success(INIT, IT, "r10", body=body)])
    expect(
        xfer,
        responses=[success(TRANSFER, IT, "r11")],
        events=[
            ("conversation.ended", K1, {"cause": "transferred"}),
            ("interaction.ended", IT),
            ("conversation.ended", P, {"cause": "transferred"}),
        ],
        commands=[cmd(cmd_id(2), "transfer", "c1", consult="p1")],
    )


# --------------------------------------------------------------------------
# Initialization.


def test_changes_before_init_are_folded_into_the_snapshot() -> None:
    """D-LIFE-3, S-LIFE-2, D-LIFE-5: offered, connected and held before the init
    query send no events; init shows STARTED, the conversation init HELD; a
    change between createconversation and the conversation's init sends no
    conversation event; afterwards events flow; a repeated init changes
    nothing."""
    lines: list[Line] = [
        offered("c1", ani="5551000"),
        switch("connected", "c1"),
        switch("held", "c1"),
        query(INIT, IT, "r1"),
        request(CREATE, IT, "r2", id="b1", nativeid="c1"),
        switch("retrieved", "c1"),
        query(CINIT, P, "r3"),
        switch("held", "c1"),
        query(INIT, IT, "r4"),
        query(CINIT, P, "r5"),
    ]
    offer, connected, held, init, create, retrieved, cinit, held2, init2, cinit2 = run_cli(lines)
    expect(offer, events=[CREATED_C1])
    expect(connected)
    expect(held)
    started = init_body("STARTED", CUSTOMER, primary="c1")
    expect(init, responses=[success(INIT, IT, "r1", body=started)])
    expect(create, responses=[success(CREATE, IT, "r2")])
    expect(retrieved)
    expect(cinit, responses=[success(CINIT, P, "r3", body=conv_body("TALKING", "c1", "primary"))])
    expect(held2, events=[("conversation.held", P)])
    expect(init2, responses=[success(INIT, IT, "r4", body=started)])
    expect(cinit2, responses=[success(CINIT, P, "r5", body=conv_body("HELD", "c1", "primary"))])


def test_answered_between_interaction_init_and_conversation_init() -> None:
    """S-LIFE-2, D-LIFE-3, D-EVT-2: the interaction is initialized, its
    conversation only created: connecting sends interaction.started but no
    conversation event; the conversation init shows TALKING."""
    lines: list[Line] = [*inbound_setup()[:3], switch("connected", "c1"), query(CINIT, P, "r3")]
    connected, cinit = run_cli(lines)[3:]
    expect(connected, events=[("interaction.started", IT)])
    expect(cinit, responses=[success(CINIT, P, "r3", body=conv_body("TALKING", "c1", "primary"))])


def test_phone_consult_before_init_is_in_the_snapshot() -> None:
    """D-LIFE-3, S-LIFE-2, S-INIT-4, D-CC-3: a consult dialed on the phone
    before init sends no interaction.consult; init lists it and it can be
    created during the initialization phase."""
    lines: list[Line] = [
        offered("c1"),
        switch("connected", "c1"),
        dialing("p1", "400"),
        query(INIT, IT, "r1"),
        request(CREATE, IT, "r2", id="b1", nativeid="c1"),
        request(CREATE, IT, "r3", id="b2", nativeid="p1"),
        query(CINIT, K1, "r4"),
        switch("connected", "p1"),
    ]
    _, connected, dial, init, create, create2, cinit, answered = run_cli(lines)
    expect(connected)
    expect(dial)
    expect(
        init, responses=[success(INIT, IT, "r1", body=init_body("STARTED", {}, primary="c1", consult="p1"))]
    )
    expect(create, responses=[success(CREATE, IT, "r2")])
    expect(create2, responses=[success(CREATE, IT, "r3")])
    expect(cinit, responses=[success(CINIT, K1, "r4", body=conv_body("DIALING", "p1", "consult"))])
    expect(answered, events=[("conversation.talking", K1)])


def test_requests_before_init_are_refused() -> None:
    """D-LIFE-5, D-LIFE-4, S-REQ-2: requests before the destination's init
    query are FAILURE and change nothing; dispose is allowed before init."""
    it2 = itarget("c2")
    lines: list[Line] = [
        offered("c1", ani="5551000"),
        request(ACCEPT, IT, "r1"),
        request(SETDATA, IT, "r2", note="x"),
        query(DATA, IT, "r3"),
        query(INIT, IT, "r4"),
        request(CREATE, IT, "r5", id="b1", nativeid="c1"),
        request(HOLD, P, "r6"),
        request("conversation.request.answer", P, "r7"),
        query(CINIT, P, "r8"),
        request(ACCEPT, IT, "r9"),
        offered("c2"),
        request(DISPOSE, it2, "r1"),
        query(INIT, it2, "r2"),
    ]
    groups = run_cli(lines)
    _, accept, setdata, data, init, create, hold, answer, cinit, accept2, offer2, dispose2, init2 = groups
    expect(accept, responses=[Failure(ACCEPT, IT, "r1", "not initialized")])
    expect(setdata, responses=[Failure(SETDATA, IT, "r2", "not initialized")])
    expect(data, responses=[Failure(DATA, IT, "r3", "not initialized")])
    expect(init, responses=[success(INIT, IT, "r4", body=init_body("ALERTING", CUSTOMER, primary="c1"))])
    expect(create, responses=[success(CREATE, IT, "r5")])
    expect(hold, responses=[Failure(HOLD, P, "r6", "not initialized")])
    expect(answer, responses=[Failure("conversation.request.answer", P, "r7", "not initialized")])
    expect(cinit, responses=[success(CINIT, P, "r8", body=conv_body("ALERTING", "c1", "primary"))])
    expect(
        accept2,
        responses=[success(ACCEPT, IT, "r9")],
        events=[("interaction.started", IT), ("conversation.talking", P)],
        commands=[cmd(cmd_id(1), "answer", "c1")],
    )
    expect(offer2, events=[("interaction.created", CH, {"interactionid": "c2", "type": "telephony"})])
    expect(dispose2, responses=[success(DISPOSE, it2, "r1")])
    expect(init2, responses=[Failure(INIT, it2, "r2", "disposed")])
    assert_answered_once(lines, groups)


# --------------------------------------------------------------------------
# Duplicates and malformed input.


def test_duplicate_request_ids() -> None:
    """D-DUP, S-REQ-1: a requestId seen before on that destination is FAILURE
    and is not executed (no data change, no command); the same id on another
    destination is a new request."""
    lines: list[Line] = [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(SETDATA, IT, "r4", note="dup"),
        query(INIT, IT, "r1"),
        request(HOLD, P, "r3"),
        request(HOLD, P, "r4"),
        query(DATA, IT, "r5"),
    ]
    groups = run_cli(lines)
    setdata, init, hold_dup, hold, data = groups[5:]
    expect(setdata, responses=[Failure(SETDATA, IT, "r4", "duplicate requestId")])
    expect(init, responses=[Failure(INIT, IT, "r1", "duplicate requestId")])
    expect(hold_dup, responses=[Failure(HOLD, P, "r3", "duplicate requestId")])
    expect(
        hold,
        responses=[success(HOLD, P, "r4")],
        events=[("conversation.held", P)],
        commands=[cmd(cmd_id(2), "hold", "c1")],
    )
    expect(data, responses=[success(DATA, IT, "r5", body={"interaction-data": CUSTOMER})])
    assert_answered_once(lines, groups)


def test_duplicate_of_a_pending_request_leaves_the_original_alone() -> None:
    """D-DUP, S-REQ-1, D-ASYNC: while accept waits for the switch, a repeat of
    its requestId is refused at once and issues no command; the original
    still gets its single SUCCESS when the call connects."""
    lines: list[Line] = [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(ACCEPT, IT, "r4"),
        switch("connected", "c1"),
        result(cmd_id(1)),
    ]
    groups = run_cli(lines, *SCRIPTED)
    accept, dup, connected, ack = groups[4:]
    expect(accept, commands=[cmd(cmd_id(1), "answer", "c1")])
    expect(dup, responses=[Failure(ACCEPT, IT, "r4", "duplicate requestId")])
    expect(
        connected,
        responses=[success(ACCEPT, IT, "r4")],
        events=[("interaction.started", IT), ("conversation.talking", P)],
    )
    expect(ack)
    assert_answered_once(lines, groups)


def test_malformed_lines() -> None:
    """D-BAD, D-TARGET, S-REQ-2: unusable lines are `error`; a bridge message
    without requestId is a `protocol_error`; with a requestId a defect is a
    FAILURE naming it; nothing changes state and the runner goes on."""
    no_rid = {
        "from": "bridge",
        "message": {"header": {"type": "cti.request", "name": ACCEPT, "target": IT}},
    }
    numeric_rid = {
        "from": "bridge",
        "message": {"header": {"type": "cti.query", "name": INIT, "target": IT, "requestId": 5}},
    }
    lines: list[Line] = [
        "this is not json",
        "[1, 2]",
        {"from": "elsewhere"},
        {"from": "bridge"},
        offered("c1", ani="5551000"),
        no_rid,
        numeric_rid,
        query(INIT, IT, "r1"),
        request(CREATE, IT, "r2", id="b1", nativeid=7),
        request(CREATE, IT, "r3", id="b1"),
        request("interaction.request.bogus", IT, "r4"),
        request(ACCEPT, f"{CH}.nope", "r5"),
        request(HOLD, IT, "r6"),
        {
            "from": "bridge",
            "message": {
                "header": {"type": "cti.request", "name": ACCEPT, "target": IT, "requestId": "r7"},
                "body": "x",
            },
        },
        {"from": "switch", "event": {"kind": "connected"}},
        {"from": "clock", "advance": "soon"},
        {"seq": "s-17", "from": "clock", "advance": 1},
        query(INIT, IT, "r8"),
        request(CREATE, IT, "r9", id="b1", nativeid="c1"),
    ]
    groups = run_cli(lines)
    expect(groups[0], errors=["not JSON"])
    expect(groups[1], errors=["JSON object"])
    expect(groups[2], errors=["elsewhere"])
    expect(groups[3], errors=["message"])
    expect(groups[5], protocol_errors=["requestId"])
    expect(groups[6], protocol_errors=["requestId"])
    assert groups[5][0]["protocol_error"]["rule"] == "D-BAD"
    expect(groups[7], responses=[success(INIT, IT, "r1", body=init_body("ALERTING", CUSTOMER, primary="c1"))])
    expect(groups[8], responses=[Failure(CREATE, IT, "r2", "nativeid", "string")])
    expect(groups[9], responses=[Failure(CREATE, IT, "r3", "nativeid", "missing")])
    expect(groups[10], responses=[Failure("interaction.request.bogus", IT, "r4", "unknown", "bogus")])
    expect(groups[11], responses=[Failure(ACCEPT, f"{CH}.nope", "r5", "nope")])
    expect(groups[12], responses=[Failure(HOLD, IT, "r6", "not a conversation")])
    expect(groups[13], responses=[Failure(ACCEPT, IT, "r7", "body", "expected an object")])
    expect(groups[14], errors=["call"])
    expect(groups[15], errors=["advance"])
    expect(groups[16])
    # Nothing above changed state: still ALERTING, and b1/c1 not yet created.
    expect(
        groups[17], responses=[success(INIT, IT, "r8", body=init_body("ALERTING", CUSTOMER, primary="c1"))]
    )
    expect(groups[18], responses=[success(CREATE, IT, "r9")])


# --------------------------------------------------------------------------
# The scripted switch: timeouts and serial execution.


def test_scripted_consult_times_out_and_a_late_leg_is_released() -> None:
    """D-ASYNC, S-REQ-1: a consult the switch does not name within
    request_timeout (30 s) is FAILURE exactly at the deadline; the interaction
    is back to no consult; a leg named afterwards by the command's result is
    released; its later events are ignored; a new consult works."""
    lines = scripted_timeout()
    groups = run_cli(lines, *SCRIPTED)
    expect_setup(groups)
    accept, connected, ack = groups[4:7]
    expect(accept, commands=[cmd(cmd_id(1), "answer", "c1")])
    expect(
        connected,
        responses=[success(ACCEPT, IT, "r4")],
        events=[("interaction.started", IT), ("conversation.talking", P)],
    )
    expect(ack)
    consult, held, tick, deadline, init, late, late_end, consult2, named = groups[7:]
    expect(consult, commands=[cmd(cmd_id(2), "consult", "c1", destination="200")])
    expect(held, events=[("conversation.held", P)])
    expect(tick)
    expect(deadline, responses=[Failure(CONSULT, IT, "r5", "30 seconds")])
    expect(init, responses=[success(INIT, IT, "r6", body=init_body("STARTED", CUSTOMER, primary="c1"))])
    expect(late, commands=[cmd(cmd_id(3), "release", "x9")])
    expect(late_end)  # D-ASYNC: the released leg's later events are ignored, with no output
    expect(consult2, commands=[cmd(cmd_id(4), "consult", "c1", destination="201")])
    expect(named, responses=[success(CONSULT, IT, "r7", properties={"nativeid": "x10"})])
    assert_answered_once(lines, groups)


def test_scripted_consult_leg_dialing_after_timeout_is_released() -> None:
    """D-ASYNC: after a consult timed out, the first new leg that then appears
    (`dialing`) is that consult's late leg: released, no interaction.consult."""
    lines: list[Line] = [
        *scripted_setup(),
        request(CONSULT, IT, "r5", destination="200"),
        clock(31),
        dialing("x9", "200"),
    ]
    timeout, dial = run_cli(lines, *SCRIPTED)[8:]
    expect(timeout, responses=[Failure(CONSULT, IT, "r5", "consult refused")])
    expect(dial, commands=[cmd(cmd_id(3), "release", "x9")])


def test_scripted_consult_refused_by_the_switch() -> None:
    """D-ASYNC, S-CONS-1: a consult the switch refuses before naming a leg is
    FAILURE with the switch's reason; a new consult may follow."""
    lines: list[Line] = [
        *scripted_setup(),
        request(CONSULT, IT, "r5", destination="200"),
        result(cmd_id(2), ok=False, reason="no trunk"),
        request(CONSULT, IT, "r6", destination="201"),
        result(cmd_id(3), call="x1"),
    ]
    refused, consult2, named = run_cli(lines, *SCRIPTED)[8:]
    expect(refused, responses=[Failure(CONSULT, IT, "r5", "no trunk")])
    expect(consult2, commands=[cmd(cmd_id(3), "consult", "c1", destination="201")])
    expect(named, responses=[success(CONSULT, IT, "r6", properties={"nativeid": "x1"})])


def test_requests_wait_for_the_pending_one() -> None:
    """D-SERIAL, D-ASYNC, S-REQ-1: while accept waits for the switch, reject,
    consult and hold wait (no output); a data query is answered at once.
    When the call connects, accept is answered first, then reject is judged
    against the state accept left (STARTED: FAILURE), then consult starts
    (its D-ASYNC timer starts then: no timeout 30 s after it arrived). Hold
    of the primary, which was ALERTING when it arrived, is judged when it
    starts, after the consult is answered."""
    lines = serial()
    groups = run_cli(lines, *SCRIPTED)
    expect_setup(groups)
    accept, reject, consult, hold, data, tick, connected, ack, tick2, named, late, tick3, held = groups[4:]
    expect(accept, commands=[cmd(cmd_id(1), "answer", "c1")])
    expect(reject)
    expect(consult)
    expect(hold)
    expect(data, responses=[success(DATA, IT, "r8", body={"interaction-data": CUSTOMER})])
    expect(tick)
    expect(
        connected,
        responses=[success(ACCEPT, IT, "r4"), Failure(REJECT, IT, "r5", "reject refused", "ALERTING")],
        events=[("interaction.started", IT), ("conversation.talking", P)],
        commands=[cmd(cmd_id(2), "consult", "c1", destination="200")],
    )
    # In arrival order: accept's response, then reject's, then consult's command.
    order = [
        index_of(connected, is_message(ACCEPT, "r4")),
        index_of(connected, is_message(REJECT, "r5")),
        index_of(connected, is_command("consult")),
    ]
    assert sorted(order) == order
    expect(ack)
    expect(tick2)
    expect(
        named,
        responses=[success(CONSULT, IT, "r6", properties={"nativeid": "x1"})],
        commands=[cmd(cmd_id(3), "hold", "c1")],
    )
    assert index_of(named, is_message(CONSULT)) < index_of(named, is_command("hold"))
    expect(late)
    expect(tick3)
    expect(held, responses=[success(HOLD, P, "r7")], events=[("conversation.held", P)])
    assert_answered_once(lines, groups)


# --------------------------------------------------------------------------
# Command line.


@pytest.mark.parametrize(
    ("setting", "word"),
    [
        ("no_such_policy=1", "no_such_policy"),
        ("request_timeout=soon", "request_timeout"),
        ("request_timeout=0", "request_timeout"),
        ("request_timeout=nan", "request_timeout"),
        ("transfer_while_consult_ringing=maybe", "transfer_while_consult_ringing"),
        ("reconnect_on_consult_end", "NAME=VALUE"),
        ("max_legs=1.5", "max_legs"),
    ],
)
def test_bad_policy_is_a_usage_error(setting: str, word: str) -> None:
    """D-BOUND (harness.md `run --policy`): an unknown name or a bad value
    exits 2 with a message on stderr, and processes no input."""
    proc = run_cli_process([offered("c1")], "--policy", setting)
    usage_error = 2
    assert usage_error == proc.returncode
    assert word in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def accept_and_consult() -> list[Line]:
    return [*inbound_setup(), request(ACCEPT, IT, "r4"), request(CONSULT, IT, "r5", destination="200")]


def trace_of(lines: list[Line], tmp_path: Path) -> tuple[list[Group], list[dict[str, Any]]]:
    path = tmp_path / "trace.jsonl"
    groups = run_cli(lines, "--trace", str(path))
    trace = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]
    return groups, after_login(trace)


def after_login(trace: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trace after the login (tests.scenario.login_lines): from the line
    after the last login message's response."""
    last = max(
        n
        for n, entry in enumerate(trace)
        if entry.get("to") == "bridge"
        and str(entry["message"]["header"].get("requestId", "")).startswith("login-")
    )
    return trace[last + 1 :]


def test_trace_holds_inputs_outputs_and_simulated_switch_events(tmp_path: Path) -> None:
    """harness.md "Traces", D-NEW: the trace is the inputs and outputs in
    order (done lines left out) plus the switch events the simulated switch
    generated, as {"from": "switch", "event": ...} lines."""
    lines: list[Line] = [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="200"),
    ]
    groups, trace = trace_of(lines, tmp_path)
    expected = []
    for line, group in zip(lines, groups, strict=True):
        assert isinstance(line, dict)
        expected += [line, *group]
    generated = []
    cursor = 0
    for entry in trace:
        if cursor < len(expected) and entry == expected[cursor]:
            cursor += 1
        else:
            generated.append(entry)
    assert len(expected) == cursor, f"trace lacks {expected[cursor:]}"
    wanted = [
        {"from": "switch", "event": {"kind": "connected", "call": "c1"}},
        {"from": "switch", "event": {"kind": "held", "call": "c1"}},
        {
            "from": "switch",
            "event": {"kind": "dialing", "call": "sim-1", "device": "1001", "destination": "200"},
        },
        {"from": "switch", "event": {"kind": "alerting", "call": "sim-1"}},
        {"from": "switch", "event": {"kind": "connected", "call": "sim-1"}},
    ]
    assert wanted == generated
    assert all("done" not in entry for entry in trace)


def test_trace_writes_simulated_events_after_the_command_that_caused_them(tmp_path: Path) -> None:
    """harness.md "Traces" (no rule ID; `check` relies on it for every rule):
    inputs and outputs in the order they happened,
    simulated switch events where the engine consumes them. The answer
    command is issued before the switch reports `connected`, so the trace
    must show the command first (and the consult command before `held`)."""
    lines: list[Line] = [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="200"),
    ]
    _, trace = trace_of(lines, tmp_path)
    answer = trace.index({"to": "switch", "command": cmd(cmd_id(1), "answer", "c1")})
    connected = trace.index({"from": "switch", "event": {"kind": "connected", "call": "c1"}})
    consult = trace.index({"to": "switch", "command": cmd(cmd_id(2), "consult", "c1", destination="200")})
    held = trace.index({"from": "switch", "event": {"kind": "held", "call": "c1"}})
    assert (answer < connected, consult < held) == (True, True)


def test_run_output_lists_every_command_before_its_events() -> None:
    """H-SIM-1, harness.md "Switch commands", S-XFER-1, S-CONS-1: on stdout, in simulated mode, each
    command comes before the events it causes (the consult command before
    the held primary; the transfer before the ended legs)."""
    groups = run_cli(full_call())
    consult, transfer = groups[5], groups[16]
    assert index_of(consult, is_command("consult")) < index_of(consult, is_message("conversation.held"))
    assert index_of(transfer, is_command("transfer")) < index_of(transfer, is_message("conversation.ended"))
    assert commands(consult) != []
    assert len(responses(transfer)) == 1

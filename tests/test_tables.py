"""The transition tables, the request catalog and the engine that enforces them.

1. Structure of every machine of ``fsm.machines.MACHINES`` (python-statemachine
   style checks; the shared `transitions` machines equal their tables).
2. Every (state, request) pair of the interaction and conversation machines,
   tried on a real engine brought into that state by switch events and
   bridge messages (h2 style): a request the table allows is not refused for
   its state; one it refuses is answered FAILURE with the edge's rule and
   changes nothing but the requestIds seen (D-DUP).
3. The named request guards of ``fsm.catalog.GUARDS``, each passing once and
   refusing once with its rule, through the engine.

Assertions are written ``expected == actual``.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
import pytest

from fsm import machines as m
from fsm.catalog import (
    CATALOG,
    COMMAND_LEGS,
    DEVICE_DONE_WHEN,
    DONE_WHEN,
    GUARDS,
    QUERY_ANSWERS,
    RESPONSE_BODIES,
    TREE_ANSWERS,
    TREE_GUARDS,
    GuardContext,
    NoProperties,
    RequestSpec,
)
from fsm.engine import Engine, ToBridge, describe, read_properties
from fsm.errors import Refusal
from fsm.execution import EFFECTS
from fsm.firing import ACTIONS
from fsm.machines import (
    CHANNEL,
    CONTROL,
    CONVERSATION,
    CONVERSATION_STATES,
    COUPLING_CONDITIONS,
    EDGE_GUARDS,
    INTERACTION,
    INTERACTION_STATES,
    LEG_COUPLING,
    LIFECYCLE,
    MACHINES,
    Edge,
    StateMachine,
    structure_problems,
    top,
)
from fsm.messages import FAILURE, SUCCESS
from fsm.model import Conversation
from fsm.policy import Policy
from fsm.snapshot import snapshot
from tests.driver import CH, DEVICE, SESSION, Driver
from tests.scenes import (
    CONSULT_CALL,
    CONSULT_ID,
    CONSULT_NUMBER,
    INBOUND_CALL,
    PRIMARY_ID,
    Scene,
    Sent,
    conversation_in,
    interaction_in,
    place_consult,
    played,
    request_ids_of,
    start_inbound,
)

# --------------------------------------------------------------------------
# 1. Structure.

STARTS = {
    "interaction": (m.ALERTING, m.DIALING),
    "conversation": (m.ALERTING, m.DIALING),
    "destination": (m.ABSENT, m.SETUP),
    "control": (m.C_STARTING, m.C_STARTED),
    "channel": (m.INACTIVE,),
}
FINALS = {
    "interaction": (m.COMPLETED,),
    "conversation": (m.ENDED,),
    "destination": (m.DISPOSED,),
    "control": (),  # every status request is answered, stopped or not (D-CTRL-1)
    "channel": (m.DISPOSED,),
}
MACHINE_IDS = [machine.name for machine in MACHINES]


def test_machines_are_the_five_kinds() -> None:
    """S-LIFE-1, D-CTRL-1, D-CH-1: the interaction, conversation, lifecycle,
    control and channel machines."""
    expected = [INTERACTION, CONVERSATION, LIFECYCLE, CONTROL, CHANNEL]
    assert expected == list(MACHINES)
    assert sorted(STARTS) == sorted(MACHINE_IDS)


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_structure_has_no_problems(machine: StateMachine) -> None:
    """Every state reachable from the starts, every edge between known states (S-LIFE-1)."""
    expected: list[str] = []
    assert expected == structure_problems(machine, STARTS[machine.name])


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_structure_problems_can_report(machine: StateMachine) -> None:
    """The checker itself finds an unreachable state when started from the final one only."""
    finals = FINALS[machine.name]
    problems = structure_problems(machine, finals)
    assert problems, f"{machine.name}: starting at {finals} should leave states unreachable"


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_nothing_leaves_a_final_state(machine: StateMachine) -> None:
    """Final states: COMPLETED (D-GENERIC), ENDED (D-CONV), DISPOSED (D-LIFE-4); no edge leaves them."""
    expected = FINALS[machine.name]
    assert expected == machine.finals
    leaving = [e for e in machine.edges if e.source in expected]
    none: list[Edge] = []
    assert none == leaving


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_every_edge_guard_exists(machine: StateMachine) -> None:
    """D-XFER-1: a guard named on an edge is a known edge guard."""
    expected: list[Edge] = []
    assert expected == [e for e in machine.edges if e.guard is not None and e.guard not in EDGE_GUARDS]


def test_every_edge_guard_is_used() -> None:
    """No edge guard is dead code (D-XFER-1 is the only one)."""
    used = {e.guard for machine in MACHINES for e in machine.edges if e.guard is not None}
    assert set(EDGE_GUARDS) == used


def _machine_of(spec: RequestSpec) -> StateMachine:
    if spec.machine == "lifecycle":
        return LIFECYCLE
    if spec.destination == "cti":
        return CONTROL
    if spec.destination in ("session", "channel"):
        return CHANNEL  # the device's machine (D-CH-1)
    return INTERACTION if spec.destination == "interaction" else CONVERSATION


#: the kinds of destination above the interactions (their guards, answers
#: and completions are tables of their own in the catalog)
TREE = ("cti", "session", "channelgroup", "channel")


@pytest.mark.parametrize("spec", list(CATALOG.values()), ids=list(CATALOG))
def test_catalog_trigger_exists_in_its_machine(spec: RequestSpec) -> None:
    """Every request fires a trigger of its own machine; queries fire none (D-SERIAL)."""
    if spec.kind == "cti.query":
        assert spec.trigger is None
        return
    assert spec.trigger is not None
    machine = _machine_of(spec)
    assert spec.trigger in machine.triggers
    origins = {e.origin for e in machine.edges if e.trigger == spec.trigger}
    expected = {"lifecycle"} if spec.machine == "lifecycle" else {"request"}
    assert expected == origins


@pytest.mark.parametrize("spec", list(CATALOG.values()), ids=list(CATALOG))
def test_catalog_guards_exist(spec: RequestSpec) -> None:
    """Each request guard the catalog names is a known guard with a rule ID."""
    guards = TREE_GUARDS if spec.destination in TREE else GUARDS
    expected: list[str] = []
    assert expected == [name for name in spec.guards if name not in guards]
    assert all(guards[name].rule for name in spec.guards)


@pytest.mark.parametrize("spec", list(CATALOG.values()), ids=list(CATALOG))
def test_catalog_completion_and_body_exist(spec: RequestSpec) -> None:
    """The completion (``done``), response body (``body``), query answer
    (``answer``) and lifecycle trigger (``then``) a catalog row names
    resolve; a completion belongs to a request that asks the switch."""
    tree = spec.destination in TREE
    assert spec.done is None or spec.done in (DEVICE_DONE_WHEN if tree else DONE_WHEN), spec.done
    assert spec.body is None or spec.body in RESPONSE_BODIES, spec.body
    assert spec.done is None or spec.op is not None, "a completion without a switch operation"
    # a query: what it answers, and the lifecycle trigger it fires
    assert (spec.kind == "cti.query") == (spec.answer is not None), spec.answer
    assert spec.answer is None or spec.answer in (TREE_ANSWERS if tree else QUERY_ANSWERS), spec.answer
    assert spec.then is None or spec.then in LIFECYCLE.triggers, spec.then


def test_request_and_switch_edges_are_separate_tables() -> None:
    """Each machine's request edges and switch edges are tables of their own,
    fired only by what their name says: a request table's triggers are the
    catalog's, a switch table's are not."""
    triggers = {spec.trigger for spec in CATALOG.values() if spec.machine == "state"}
    for table, origin in (
        (m.INTERACTION_REQUEST_EDGES, "request"),
        (m.CONVERSATION_REQUEST_EDGES, "request"),
        (m.INTERACTION_SWITCH_EDGES, "switch"),
        (m.CONVERSATION_SWITCH_EDGES, "switch"),
    ):
        assert {origin} == {e.origin for e in table}
        assert (origin == "request") == all(e.trigger in triggers for e in table)
    assert m.INTERACTION_EDGES == m.INTERACTION_REQUEST_EDGES + m.INTERACTION_SWITCH_EDGES
    assert m.CONVERSATION_EDGES == m.CONVERSATION_REQUEST_EDGES + m.CONVERSATION_SWITCH_EDGES


@pytest.mark.parametrize("spec", [s for s in CATALOG.values() if s.op is not None], ids=lambda s: s.name)
def test_catalog_command_legs_and_arguments_exist(spec: RequestSpec) -> None:
    """The legs a command acts on resolve, and its arguments are properties
    of the request (what the command carries comes from the catalog)."""
    assert spec.legs in COMMAND_LEGS, spec.legs
    assert spec.destination == "conversation" or spec.legs != "conversation"
    fields = {a.name for a in attrs.fields(spec.properties)} if attrs.has(spec.properties) else set()
    assert set(spec.arguments) <= fields, spec.arguments


def test_leg_coupling_fires_switch_triggers_of_the_interaction_table() -> None:
    """D-EVT-2, S-ALT-1, D-PRIMARY-LOSS, D-CONSULT-END: every row of the
    coupling table names a switch trigger of the interaction table with that
    trigger's rule, and a known condition; a conditional row comes before
    the unconditional one of the same leg and state, so that it can match."""
    switch_rules = {e.trigger: e.rule for e in INTERACTION.edges if e.origin == "switch"}
    for row in LEG_COUPLING:
        assert (row.trigger, row.rule) == (row.trigger, switch_rules[row.trigger])
        assert row.when is None or row.when in COUPLING_CONDITIONS
        assert row.role in ("primary", "consult")
        assert row.leg_state in CONVERSATION_STATES
    seen_unconditional: set[tuple[str, str]] = set()
    for row in LEG_COUPLING:
        key = (row.role, row.leg_state)
        assert key not in seen_unconditional, f"{row} can never match"
        if row.when is None:
            seen_unconditional.add(key)


def test_every_effect_is_a_request_of_the_catalog() -> None:
    """The requests executed by a method of their own (fsm.execution.EFFECTS)
    are requests of the catalog, and only those that take data or create a
    conversation."""
    assert all(name in CATALOG and CATALOG[name].kind == "cti.request" for name in EFFECTS)
    expected = {"setdata", "complete", "createconversation"}
    assert expected == {CATALOG[name].short for name in EFFECTS}


def test_every_named_action_resolves() -> None:
    """Each action the interaction table names is a function of fsm.firing,
    and each one there is named by a row."""
    named = {e.action for e in INTERACTION.edges if e.action is not None}
    assert named == set(ACTIONS)
    assert not any(e.action for machine in (CONVERSATION, LIFECYCLE) for e in machine.edges)


#: The rule each request's edges cite, read off spec/protocol.md.
REQUEST_RULES = {
    "accept": "D-GENERIC",
    "reject": "D-GENERIC",
    "complete": "D-GENERIC",
    "setdata": "D-GENERIC",
    "createconversation": "S-CC-1",
    "consult": "S-CONS-1",
    "consulttransfer": "D-XFER-1",
    "consultconference": "D-CONF-1",
    "alternate": "D-ALT-1",
    "answer": "D-CONV",
    "release": "D-CONV",
    "hold": "D-CONV",
    "retrieve": "D-CONV",
    "blindtransfer": "D-CONV",
    "blindconference": "D-CONV",
    "senddtmf": "D-CONV",
}


@pytest.mark.parametrize("trigger", list(REQUEST_RULES))
def test_request_edges_cite_the_spec_rule(trigger: str) -> None:
    """Each request's edges cite the rule of its "valid when" column."""
    machine = INTERACTION if trigger in INTERACTION.triggers else CONVERSATION
    rules = {e.rule for e in machine.edges if e.trigger == trigger}
    assert {REQUEST_RULES[trigger]} == rules


def _table_rows(machine: StateMachine) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    return sorted(
        ((e.trigger, e.source, e.dest, (e.guard,) if e.guard else ()) for e in machine.edges),
        key=repr,
    )


def _transitions_rows(machine: StateMachine) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    rows = []
    for trigger, ev in machine.machine.events.items():
        for source, transitions in ev.transitions.items():
            for t in transitions:
                assert source == t.source
                guards = tuple(str(getattr(c.func, "__name__", c.func)) for c in t.conditions)
                rows.append((trigger, t.source, t.dest, guards))
    return sorted(rows, key=repr)


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_transitions_machine_equals_its_table(machine: StateMachine) -> None:
    """The shared `transitions` machine holds exactly the table's edges, no auto
    transitions, and the table's states (design.md: the transitions are data)."""
    assert _table_rows(machine) == _transitions_rows(machine)
    assert list(machine.states) == list(machine.machine.states)
    assert machine.initial == machine.machine.initial


def _drive_a_whole_call() -> Engine:
    """Offered, answered, consult, alternate, conference, hang up, complete, dispose."""
    scene = interaction_in(m.S_PRIMARY)
    driver = scene.driver
    sent = driver.message("interaction.request.consultconference", scene.target)
    [command] = sent.commands()
    assert "consult" in command, command
    outputs = driver.switch("ended", command["consult"], cause="conferenced")
    expected = SUCCESS
    assert expected == sent.later(outputs).result, outputs
    driver.switch("ended", INBOUND_CALL)
    driver.succeed("interaction.request.complete", scene.target, {"disposition": "sale"})
    driver.succeed("interaction.request.dispose", scene.target)
    assert not scene.engine.interactions
    return scene.engine


def test_models_are_never_registered() -> None:
    """design.md: models are driven without add_model; the shared machines hold none."""
    _drive_a_whole_call()
    expected: list[object] = []
    for machine in MACHINES:
        assert expected == list(machine.machine.models), machine.name


# --------------------------------------------------------------------------
# 2. Every (state, request) pair.

INTERACTION_REQUESTS = [
    spec
    for spec in CATALOG.values()
    if spec.destination == "interaction" and spec.machine == "state" and spec.trigger is not None
]
CONVERSATION_REQUESTS = [
    spec
    for spec in CATALOG.values()
    if spec.destination == "conversation" and spec.machine == "state" and spec.trigger is not None
]


def test_requests_under_test_are_the_catalogs() -> None:
    """The pairs below cover every request with a state trigger, none forgotten."""
    expected_interaction = [
        "accept",
        "reject",
        "complete",
        "setdata",
        "createconversation",
        "consult",
        "consulttransfer",
        "consultconference",
        "alternate",
    ]
    expected_conversation = [
        "answer",
        "release",
        "hold",
        "retrieve",
        "blindtransfer",
        "blindconference",
        "senddtmf",
    ]
    assert expected_interaction == [s.short for s in INTERACTION_REQUESTS]
    assert expected_conversation == [s.short for s in CONVERSATION_REQUESTS]


FIXED_PROPERTIES = {
    "complete": {"disposition": "sale"},
    "setdata": {"note": "vip"},
    "consult": {"destination": CONSULT_NUMBER},
    "blindtransfer": {"destination": "3000"},
    "blindconference": {"destination": "3000"},
    "senddtmf": {"digits": "12#*AD"},
}


def valid_properties(spec: RequestSpec, scene: Scene) -> dict[str, str]:
    """Properties that pass the request's own guards; createconversation
    re-registers the primary conversation (D-CC-3: SUCCESS, changes nothing)."""
    if spec.short == "createconversation":
        return {"id": PRIMARY_ID, "nativeid": scene.primary_call}
    return dict(FIXED_PROPERTIES.get(spec.short, {}))


def guard_reasons(
    spec: RequestSpec, scene: Scene, conversation: Conversation | None, properties: dict[str, str]
) -> list[str]:
    """What the request's own guards say, judged on the live engine (read only)."""
    context = GuardContext(
        scene.interaction, conversation, read_properties(spec, properties), scene.engine.policy
    )
    reasons = [GUARDS[name].check(context) for name in spec.guards]
    return [r for r in reasons if r is not None]


def check_refused(sent: Sent, rule: str) -> None:
    """FAILURE citing ``rule``, and no switch command (S-REQ-2)."""
    expected: tuple[str, str, list[object]] = (FAILURE, rule, [])
    assert expected == (sent.result, sent.refusal_rule(), sent.commands()), sent.outputs


def expected_rule(machine: StateMachine, spec: RequestSpec, state: str, refusal: Refusal) -> str:
    """The edge's rule, or the catalog's substate rule when the top-level state
    is one the request needs (consult in STARTED.ringing: D-CONS-2)."""
    assert spec.trigger is not None
    needed = {top(s) for s in machine.sources(spec.trigger)}
    if refusal.guard is None and spec.substate_rule is not None and top(state) in needed:
        return spec.substate_rule
    return refusal.rule


def without_request_id(snap: dict[str, Any], target: str, request_id: str) -> dict[str, Any]:
    """``snap`` with ``request_id`` taken out of ``target``'s requestIds (it must be there: D-DUP)."""
    snap = copy.deepcopy(snap)
    ids = request_ids_of(snap, target)
    assert request_id in ids, f"{request_id} was not recorded for {target}"
    del ids[request_id]
    return snap


def check_pair(
    scene: Scene,
    machine: StateMachine,
    state: str,
    spec: RequestSpec,
    target: str,
    conversation: Conversation | None,
) -> None:
    """Send ``spec`` in ``state`` and hold the engine to the table's verdict."""
    assert spec.trigger is not None
    properties = valid_properties(spec, scene)
    verdict = machine.check(state, spec.trigger, scene.engine.policy)
    before = snapshot(scene.engine)
    issued_before = scene.engine.commands_issued
    reasons = guard_reasons(spec, scene, conversation, properties)

    sent = scene.driver.message(spec.name, target, properties)
    response = sent.response()

    if isinstance(verdict, Edge):
        no_reasons: list[str] = []
        assert no_reasons == reasons, "the test's properties should pass the request's guards"
        failure = None if response is None else response["header"].get("errorMessage")
        assert failure is None, f"{spec.short} in {state} is allowed by {verdict}, but: {failure}"
        ops = [] if spec.op is None else [spec.op]
        assert ops == [c["op"] for c in sent.commands()]
        if response is None:
            # pending on its switch command (D-ASYNC)
            assert spec.op is not None, sent.outputs
            executing = scene.interaction.executing
            assert executing is not None
            assert sent.request_id == executing.request.request_id
        else:
            expected = SUCCESS
            assert expected == response["header"]["result"]
        return

    check_refused(sent, expected_rule(machine, spec, state, verdict))
    assert response is not None
    error = response["header"].get("errorMessage")
    assert error, "a FAILURE carries an errorMessage (S-REQ-2)"
    assert error.startswith(f"{spec.short} refused: ")
    if verdict.guard is None:
        assert describe(state) in error, error
    assert issued_before == scene.engine.commands_issued
    assert before == without_request_id(snapshot(scene.engine), target, sent.request_id)


INTERACTION_PAIRS = [
    pytest.param(state, spec, id=f"{state}-{spec.short}")
    for state in INTERACTION_STATES
    if state != m.S_REQUESTED
    for spec in INTERACTION_REQUESTS
]
CONVERSATION_PAIRS = [
    pytest.param(state, spec, id=f"{state}-{spec.short}")
    for state in CONVERSATION_STATES
    for spec in CONVERSATION_REQUESTS
]


@pytest.mark.parametrize(("state", "spec"), INTERACTION_PAIRS)
def test_interaction_request_in_state(state: str, spec: RequestSpec) -> None:
    """S-CONS-1, D-CONS-2, D-XFER-1, D-CONF-1, D-ALT-1, S-CC-1, D-GENERIC: the
    interaction table decides; a refusal is FAILURE with its rule and changes
    nothing (S-REQ-2, D-DUP)."""
    scene = interaction_in(state)
    check_pair(scene, INTERACTION, state, spec, scene.target, None)


@pytest.mark.parametrize("spec", INTERACTION_REQUESTS, ids=[s.short for s in INTERACTION_REQUESTS])
def test_interaction_request_in_started_requested_waits(spec: RequestSpec) -> None:
    """D-SERIAL: STARTED.requested exists only while the consult that made it
    executes, so a request sent then waits its turn: no response, no switch
    command; only its requestId and its place in the queue are recorded. When
    the switch refuses the consult, the request is judged against STARTED.none."""
    scene = interaction_in(m.S_REQUESTED)
    before = snapshot(scene.engine)
    properties = valid_properties(spec, scene)
    sent = scene.driver.message(spec.name, scene.target, properties)
    nothing: list[object] = []
    assert nothing == sent.outputs
    after = without_request_id(snapshot(scene.engine), scene.target, sent.request_id)
    [queued] = after["interactions"][0]["waiting"]
    expected_queued = {"name": spec.name, "target": scene.target, "request_id": sent.request_id}
    assert expected_queued == {k: queued[k] for k in expected_queued}
    after["interactions"][0]["waiting"] = []
    assert before == after

    executing = scene.interaction.executing
    assert executing is not None
    assert executing.command is not None
    outputs = scene.driver.feed(
        {"from": "switch", "event": {"kind": "result", "command": executing.command, "ok": False}}
    )
    later = sent.later(outputs)
    assert spec.trigger is not None
    verdict = INTERACTION.check(m.S_NONE, spec.trigger)
    if isinstance(verdict, Refusal):
        check_refused(later, expected_rule(INTERACTION, spec, m.S_NONE, verdict))
    else:
        assert later.result in (None, SUCCESS), outputs


@pytest.mark.parametrize(("state", "spec"), CONVERSATION_PAIRS)
def test_conversation_request_in_state(state: str, spec: RequestSpec) -> None:
    """D-CONV: the conversation table decides; a refusal is FAILURE with its
    rule and changes nothing (S-REQ-2, D-DUP)."""
    scene = conversation_in(state)
    leg = scene.leg(scene.primary_call)
    check_pair(scene, CONVERSATION, state, spec, scene.primary_target, leg)


@pytest.mark.parametrize(
    ("state", "rule"),
    [
        (m.ALERTING, "S-CONS-1"),
        (m.DIALING, "S-CONS-1"),
        (m.S_RINGING, "D-CONS-2"),
        (m.S_PRIMARY, "D-CONS-2"),
        (m.S_CONSULT, "D-CONS-2"),
        (m.ENDED, "S-CONS-1"),
        (m.COMPLETED, "S-CONS-1"),
    ],
)
def test_consult_refusal_rule(state: str, rule: str) -> None:
    """S-CONS-1 outside STARTED; D-CONS-2 in STARTED with a consult active."""
    scene = interaction_in(state)
    sent = scene.driver.message("interaction.request.consult", scene.target, {"destination": "2000"})
    check_refused(sent, rule)


def test_consulttransfer_while_ringing_refused_by_default() -> None:
    """D-XFER-1: policy transfer_while_consult_ringing off: refused, nothing changes."""
    scene = interaction_in(m.S_RINGING)
    before = snapshot(scene.engine)
    sent = scene.driver.message("interaction.request.consulttransfer", scene.target)
    check_refused(sent, "D-XFER-1")
    response = sent.response()
    assert response is not None
    assert "transfer_while_consult_ringing" in (response["header"].get("errorMessage") or "")
    assert before == without_request_id(snapshot(scene.engine), scene.target, sent.request_id)


def test_consulttransfer_while_ringing_allowed_by_policy() -> None:
    """D-XFER-1: with transfer_while_consult_ringing on, consulttransfer goes to the
    switch while the consult rings; both legs end and the interaction is ENDED."""
    scene = interaction_in(m.S_RINGING, Policy(transfer_while_consult_ringing=True))
    sent = scene.driver.message("interaction.request.consulttransfer", scene.target)
    assert sent.response() is None
    [command] = sent.commands()
    expected = ("transfer", INBOUND_CALL, CONSULT_CALL)
    assert expected == (command["op"], command["call"], command.get("consult"))
    scene.driver.switch("ended", CONSULT_CALL, cause="transferred")
    outputs = scene.driver.switch("ended", INBOUND_CALL, cause="transferred")
    expected_end = (SUCCESS, m.ENDED)
    assert expected_end == (sent.later(outputs).result, scene.interaction.state)


# --------------------------------------------------------------------------
# 3. The named request guards, through the engine.


def test_guard_names_and_rules() -> None:
    """Each guard cites its rule (D-CONS-2, D-BOUND, D-CONV, D-DATA, D-CC-2, D-CC-3, D-LIFE-4, S-CC-1,
    D-LIFE-5)."""
    expected = {
        "destination_given": "D-CONS-2",
        "leg_room": "D-BOUND",
        "blind_destination_given": "D-CONV",
        "digits_valid": "D-CONV",
        "data_room": "D-DATA",
        "conversation_id_valid": "D-CC-2",
        "nativeid_known": "D-CC-2",
        "registration_consistent": "D-CC-3",
        "conversation_not_disposed": "D-LIFE-4",
        "creation_allowed": "S-CC-1",
        "initialized": "D-LIFE-5",
    }
    assert expected == {name: guard.rule for name, guard in GUARDS.items()}


def test_initialized_refuses() -> None:
    """D-LIFE-5: interaction.query.data before the interaction's init query
    is FAILURE and changes nothing."""
    driver = played()
    driver.switch("offered", INBOUND_CALL, ani="5551000")
    target = Scene(driver, INBOUND_CALL, INBOUND_CALL).target
    before = snapshot(driver.engine)
    sent = driver.message("interaction.query.data", target)
    check_refused(sent, "D-LIFE-5")
    assert before == without_request_id(snapshot(driver.engine), target, sent.request_id)


def test_initialized_passes() -> None:
    """D-LIFE-5: after its init, interaction.query.data answers the data."""
    scene = interaction_in(m.S_NONE)
    sent = scene.driver.message("interaction.query.data", scene.target)
    response = sent.response()
    assert SUCCESS == sent.result
    assert response is not None
    assert {"interaction-data": scene.interaction.data} == response["body"]


@pytest.mark.parametrize("destination", ["", "   "])
def test_destination_given_refuses(destination: str) -> None:
    """D-CONS-2: consult with an empty destination is FAILURE and changes nothing."""
    scene = interaction_in(m.S_NONE)
    before = snapshot(scene.engine)
    sent = scene.driver.message("interaction.request.consult", scene.target, {"destination": destination})
    check_refused(sent, "D-CONS-2")
    assert before == without_request_id(snapshot(scene.engine), scene.target, sent.request_id)


def test_destination_given_passes() -> None:
    """D-CONS-2, S-CONS-1: consult with a number goes to the switch with that number."""
    scene = interaction_in(m.S_NONE)
    sent = scene.driver.message("interaction.request.consult", scene.target, {"destination": "2000"})
    assert sent.response() is None
    [command] = sent.commands()
    expected = ("consult", INBOUND_CALL, "2000")
    assert expected == (command["op"], command["call"], command.get("destination"))


def test_leg_room_refuses() -> None:
    """D-BOUND: consult when the interaction already has max_legs legs."""
    scene = interaction_in(m.S_NONE, Policy(max_legs=1))
    sent = scene.driver.message("interaction.request.consult", scene.target, {"destination": "2000"})
    check_refused(sent, "D-BOUND")


def test_leg_room_passes() -> None:
    """D-BOUND: one leg below the limit, consult goes to the switch."""
    scene = interaction_in(m.S_NONE, Policy(max_legs=2))
    sent = scene.driver.message("interaction.request.consult", scene.target, {"destination": "2000"})
    expected = (None, ["consult"])
    assert expected == (sent.result, [c["op"] for c in sent.commands()])


def data_room_scene(state: str, room: int) -> Scene:
    """An interaction in ``state`` whose data has room for ``room`` more keys."""
    held = len(interaction_in(state).interaction.data)
    scene = interaction_in(state, Policy(max_data_keys=held + room))
    assert held == len(scene.interaction.data)
    return scene


@pytest.mark.parametrize(("state", "name"), [(m.S_NONE, "setdata"), (m.ENDED, "complete")])
def test_data_room_refuses(state: str, name: str) -> None:
    """D-DATA, D-BOUND: a setdata or complete that would add more keys than
    max_data_keys leaves room for is FAILURE and changes nothing."""
    scene = data_room_scene(state, 1)
    before = snapshot(scene.engine)
    sent = scene.driver.message(f"interaction.request.{name}", scene.target, {"k1": "a", "k2": "b"})
    check_refused(sent, "D-DATA")
    response = sent.response()
    assert response is not None
    assert "max_data_keys" in (response["header"].get("errorMessage") or "")
    assert before == without_request_id(snapshot(scene.engine), scene.target, sent.request_id)


@pytest.mark.parametrize(("state", "name"), [(m.S_NONE, "setdata"), (m.ENDED, "complete")])
def test_data_room_passes(state: str, name: str) -> None:
    """D-DATA: keys up to the bound are taken, and a key the data already
    holds takes no room."""
    scene = data_room_scene(state, 1)
    known = next(iter(scene.interaction.data))
    sent = scene.driver.message(f"interaction.request.{name}", scene.target, {"k1": "a", known: "new"})
    assert SUCCESS == sent.result
    assert ("a", "new") == (scene.interaction.data["k1"], scene.interaction.data[known])


@pytest.mark.parametrize("name", ["blindtransfer", "blindconference"])
def test_blind_destination_given_refuses(name: str) -> None:
    """D-CONV: a blind transfer or conference needs a destination."""
    scene = conversation_in(m.TALKING)
    sent = scene.driver.message(f"conversation.request.{name}", scene.primary_target, {"destination": " "})
    check_refused(sent, "D-CONV")


@pytest.mark.parametrize("name", ["blindtransfer", "blindconference"])
def test_blind_destination_given_passes(name: str) -> None:
    """D-CONV: with a destination the operation goes to the switch."""
    scene = conversation_in(m.TALKING)
    sent = scene.driver.message(f"conversation.request.{name}", scene.primary_target, {"destination": "3000"})
    [command] = sent.commands()
    expected = (name, INBOUND_CALL, "3000")
    assert expected == (command["op"], command["call"], command.get("destination"))


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "e", "a"])
def test_digits_valid_refuses(digits: str) -> None:
    """D-CONV: DTMF digits are one or more of 0-9, *, #, A-D."""
    scene = conversation_in(m.TALKING)
    sent = scene.driver.message("conversation.request.senddtmf", scene.primary_target, {"digits": digits})
    check_refused(sent, "D-CONV")


def test_digits_valid_passes() -> None:
    """D-CONV: every DTMF symbol is accepted and sent to the switch; SUCCESS at once."""
    scene = conversation_in(m.TALKING)
    digits = "0123456789*#ABCD"
    sent = scene.driver.succeed("conversation.request.senddtmf", scene.primary_target, {"digits": digits})
    [command] = sent.commands()
    expected = ("senddtmf", INBOUND_CALL, digits)
    assert expected == (command["op"], command["call"], command.get("digits"))


def test_nativeid_known_refuses() -> None:
    """D-CC-2: an unknown nativeid is FAILURE and changes nothing."""
    scene = interaction_in(m.S_NONE)
    before = snapshot(scene.engine)
    properties = {"id": "conv-x", "nativeid": "nobody"}
    sent = scene.driver.message("interaction.request.createconversation", scene.target, properties)
    check_refused(sent, "D-CC-2")
    assert before == without_request_id(snapshot(scene.engine), scene.target, sent.request_id)


def test_nativeid_known_passes() -> None:
    """D-CC-2, S-CC-1: a nativeid of the init snapshot is created during the init phase."""
    driver = played()
    scene = start_inbound(driver, answer=True, create=False)
    properties = {"id": PRIMARY_ID, "nativeid": INBOUND_CALL}
    driver.succeed("interaction.request.createconversation", scene.target, properties)
    leg = scene.leg(INBOUND_CALL)
    expected = (PRIMARY_ID, m.SETUP)
    assert expected == (leg.bridge_id, leg.lifecycle)


@pytest.mark.parametrize(
    ("bridge_id", "nativeid"),
    [(PRIMARY_ID, CONSULT_CALL), ("conv-other", INBOUND_CALL)],
    ids=["id-taken-by-other-nativeid", "nativeid-taken-by-other-id"],
)
def test_registration_consistent_refuses(bridge_id: str, nativeid: str) -> None:
    """D-CC-3: a registered id with another nativeid, or a registered nativeid
    with another id, is FAILURE and changes nothing."""
    driver = played()
    scene = start_inbound(driver, answer=True)
    driver.message("interaction.request.consult", scene.target, {"destination": "2000"})
    driver.switch("held", INBOUND_CALL)
    driver.switch("dialing", CONSULT_CALL)
    assert scene.interaction.state == m.S_RINGING, "set-up"
    before = snapshot(scene.engine)
    properties = {"id": bridge_id, "nativeid": nativeid}
    sent = driver.message("interaction.request.createconversation", scene.target, properties)
    check_refused(sent, "D-CC-3")
    assert before == without_request_id(snapshot(scene.engine), scene.target, sent.request_id)


def test_registration_consistent_passes() -> None:
    """D-CC-3: re-registration (same id, same nativeid) is SUCCESS and changes nothing."""
    scene = interaction_in(m.S_RINGING)
    before = snapshot(scene.engine)
    properties = {"id": CONSULT_ID, "nativeid": CONSULT_CALL}
    sent = scene.driver.succeed("interaction.request.createconversation", scene.target, properties)
    no_events: list[object] = []
    assert no_events == sent.events()
    assert before == without_request_id(snapshot(scene.engine), scene.target, sent.request_id)


def test_conversation_not_disposed_refuses() -> None:
    """D-LIFE-4: a disposed conversation is not created again."""
    scene = interaction_in(m.S_NONE)
    scene.driver.succeed("conversation.request.dispose", scene.primary_target)
    properties = {"id": PRIMARY_ID, "nativeid": INBOUND_CALL}
    sent = scene.driver.message("interaction.request.createconversation", scene.target, properties)
    check_refused(sent, "D-LIFE-4")
    assert scene.primary_target not in scene.engine.destinations


def test_conversation_not_disposed_passes() -> None:
    """D-LIFE-4: the same re-registration without the dispose is SUCCESS."""
    scene = interaction_in(m.S_NONE)
    properties = {"id": PRIMARY_ID, "nativeid": INBOUND_CALL}
    scene.driver.succeed("interaction.request.createconversation", scene.target, properties)
    assert scene.primary_target in scene.engine.destinations


def test_creation_allowed_refuses() -> None:
    """S-CC-1, D-CC-3: a leg that ended before init is not listed (S-INIT-5), so the
    init phase has nothing to create and no consult named it: FAILURE."""
    driver = played()
    driver.switch("offered", INBOUND_CALL)
    driver.switch("ended", INBOUND_CALL)
    target = driver.engine.targets.interaction(CH, INBOUND_CALL)
    init = driver.succeed("interaction.query.init", target).response()
    assert init is not None
    no_conversations: dict[str, object] = {}
    assert no_conversations == init["body"]["conversations"]
    properties = {"id": PRIMARY_ID, "nativeid": INBOUND_CALL}
    sent = driver.message("interaction.request.createconversation", target, properties)
    check_refused(sent, "S-CC-1")


def test_creation_allowed_passes_after_consult() -> None:
    """S-CC-1: createconversation after a successful consult, for its nativeid."""
    driver = played()
    scene = start_inbound(driver, answer=True)
    place_consult(scene)  # createconversation for the consult's nativeid: SUCCESS
    leg = scene.leg(CONSULT_CALL)
    expected = (CONSULT_ID, m.INITIALIZED)
    assert expected == (leg.bridge_id, leg.lifecycle)


# --------------------------------------------------------------------------
# The channel and control machines: every (state, request) pair on a real engine.


def channel_in(state: str) -> Driver:
    """A logged-in agent whose device is in ``state`` (D-CH-1), reached as
    the switch and the bridge would."""
    driver = Driver()

    def agent(state: str) -> dict[str, Any]:
        return {"from": "switch", "event": {"kind": "agent", "device": DEVICE, "state": state}}

    steps = {
        m.READY: [],
        m.NOTREADY: [("request", "notready")],
        m.INACTIVE: [("request", "deactivate")],
        m.UNAVAILABLE: [("agent", "taken")],
        m.DISPOSED: [("agent", "removed")],
    }
    for how, what in steps[state]:
        if how == "request":
            assert SUCCESS == driver.message(f"channel.request.{what}", CH).result
        else:
            driver.feed(agent(what))
    assert state == driver.engine.devices_by_end_point[DEVICE].state
    return driver


CHANNEL_REQUESTS = [
    s for s in CATALOG.values() if s.kind == "cti.request" and s.destination in ("channel", "session")
]
CHANNEL_PAIRS = [
    pytest.param(state, spec, id=f"{state}-{spec.short}")
    for state in m.CHANNEL_STATES
    for spec in CHANNEL_REQUESTS
    if spec.machine == "state"
]


@pytest.mark.parametrize(("state", "spec"), CHANNEL_PAIRS)
def test_channel_request_in_state(state: str, spec: RequestSpec) -> None:
    """D-CH-1, D-SESS-1, D-SESS-2, D-TCH-1: the channel table decides: an edge
    is SUCCESS (its command, or none on an ``at_once`` edge); a refusal is
    FAILURE with the table's rule, no command and nothing changed."""
    driver = channel_in(state)
    assert spec.trigger is not None
    verdict = CHANNEL.check(state, spec.trigger)
    target = SESSION if spec.destination == "session" else CH
    properties = {"destination": "ring300"} if spec.short == "dial" else None
    before = snapshot(driver.engine)
    sent = driver.message(spec.name, target, properties)
    if isinstance(verdict, Edge):
        assert SUCCESS == sent.result, sent.outputs
        ops = [] if verdict.action == "at_once" else [spec.op]
        assert ops == [c["op"] for c in sent.commands()]
        return
    assert "FAILURE" == sent.result
    assert verdict.rule == sent.refusal_rule()
    assert [] == sent.commands()
    after = snapshot(driver.engine)
    for dest in (*after["sessions"], *after["channels"]):
        dest["request_ids"].pop(sent.request_id, None)
    assert before == after


@pytest.mark.parametrize("state", m.CONTROL_STATES)
def test_control_request_in_state(state: str) -> None:
    """D-CTRL-1, D-CTRL-2: the status request and login validation are
    answered SUCCESS in every status of the control machine."""
    driver = Driver(login=False)
    engine = driver.engine
    if state == m.C_STARTING:
        engine = Driver(login=False).engine
        engine.state.control.state = m.C_STARTING  # what Engine(link_up=False) starts in
    elif state == m.C_CTI_LOST:
        driver.feed({"from": "switch", "event": {"kind": "link", "up": False}})
    elif state in (m.C_STOPPING, m.C_STOPPED):
        CONTROL.fire(engine.control, "stop")
        if state == m.C_STOPPED:
            CONTROL.fire(engine.control, "stopped")
    driver.engine = engine
    assert state == engine.control.state
    for spec in (s for s in CATALOG.values() if s.destination == "cti" and s.kind == "cti.request"):
        assert spec.trigger is not None
        assert isinstance(CONTROL.check(state, spec.trigger), Edge)
        props = {"agent": "agent-1"} if spec.properties is not NoProperties else None
        headers = {"type": spec.kind, "name": spec.name, "target": "proc-1.CONTROL", "requestId": spec.name}
        out = engine.receive_bridge({"header": headers, "body": props or {}})
        answers = [
            o.message.header.result for o in out if isinstance(o, ToBridge) and o.message.header.result
        ]
        assert [SUCCESS] == answers


def test_engine_starts_starting_without_its_link() -> None:
    """D-CTRL-1: without the switch link at start the status is starting; the link brings it to started."""
    from fsm.engine import Engine as StartingEngine

    engine = StartingEngine(link_up=False)
    assert m.C_STARTING == engine.control.state
    engine.receive_switch({"kind": "link", "up": True})
    assert m.C_STARTED == engine.control.state

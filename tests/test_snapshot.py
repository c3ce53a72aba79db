"""Snapshot and restore mid-scenario (fsm.snapshot; design.md "State can be
saved and restored").

For each scenario, at every step k: the engine's snapshot (through
``json.dumps``/``json.loads``) and a copy of the simulated switch's state
are restored into a fresh engine and switch; the rest of the scenario fed to
the restored pair must produce exactly what the original produced from step
k on, and both must end in the same state. The rule IDs of the scenarios
(S-REQ-1, D-ASYNC, D-SERIAL, D-CONSULT-END, D-PRIMARY-LOSS, ...) are those
the restored engine must keep obeying.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import cattrs
import pytest

from adapters.runner import Runner
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from fsm.engine import ToBridge
from fsm.snapshot import restore, snapshot
from tests.driver import cmd_id, responses
from tests.scenario import (
    CONSULT,
    DATA,
    INIT,
    IT,
    SETDATA,
    Group,
    Line,
    busy_consult,
    clock,
    dialing,
    feed_lines,
    full_call,
    make_runner,
    primary_loss,
    query,
    request,
    run_cli,
    run_inprocess,
    scripted_setup,
    scripted_timeout,
    serial,
    switch,
)

#: converts the simulated switch's plain attrs state
_switch_converter = cattrs.Converter()

Saved = tuple[dict[str, Any], dict[str, Any] | None]


def _json(value: Any) -> Any:
    result: Any = json.loads(json.dumps(value))
    return result


def save(runner: Runner) -> Saved:
    """The engine's snapshot and the simulated switch's state, as JSON data."""
    engine_state: dict[str, Any] = _json(snapshot(runner.engine))
    switch_state: dict[str, Any] | None = None
    if isinstance(runner.switch, SimulatedSwitch):
        switch_state = _json(_switch_converter.unstructure(runner.switch))
    return engine_state, switch_state


def load(saved: Saved) -> Runner:
    """A fresh engine and switch holding ``saved``."""
    engine_state, switch_state = saved
    engine = restore(engine_state)
    if switch_state is None:
        return Runner(engine, ScriptedSwitch())
    return Runner(engine, _switch_converter.structure(switch_state, SimulatedSwitch))


def scripted_primary_loss_while_requested() -> list[Line]:
    """D-PRIMARY-LOSS, D-ASYNC (scripted): the customer hangs up while the
    consult waits for its leg: consult FAILURE; the leg named later is
    released."""
    return [
        *scripted_setup(),
        request(CONSULT, IT, "r5", destination="200"),
        switch("ended", "c1", cause="hangup"),
        dialing("x9", "200"),
        clock(60),
    ]


#: (id, lines, switch, policy settings)
SCENARIOS: list[tuple[str, list[Line], str, list[str]]] = [
    ("full-call", full_call(), "simulated", []),
    ("busy-consult", busy_consult(), "simulated", []),
    ("busy-consult-reconnect", busy_consult(), "simulated", ["reconnect_on_consult_end=true"]),
    ("primary-loss", primary_loss(), "simulated", []),
    ("scripted-timeout", scripted_timeout(), "scripted", []),
    ("serial", serial(), "scripted", []),
    ("scripted-primary-loss", scripted_primary_loss_while_requested(), "scripted", []),
]
IDS = [s[0] for s in SCENARIOS]
ARGS = [s[1:] for s in SCENARIOS]


def _policy_args(policy: Sequence[str]) -> list[str]:
    return [arg for setting in policy for arg in ("--policy", setting)]


@pytest.mark.parametrize(("lines", "kind", "policy"), ARGS, ids=IDS)
def test_restore_at_every_step_continues_identically(lines: list[Line], kind: str, policy: list[str]) -> None:
    """S-REQ-1, D-ASYNC, D-SERIAL, D-CONSULT-END, D-PRIMARY-LOSS, D-DUP: a
    snapshot taken between any two inputs, restored into a fresh engine and
    switch, continues exactly as the original did (same outputs per input,
    same final state); restoring a snapshot and snapshotting again gives it
    back unchanged."""
    original = make_runner(kind, policy)
    saved: list[Saved] = []
    groups: list[Group] = []
    for k, line in enumerate(lines):
        saved.append(save(original))
        groups += feed_lines(original, [line], start=k + 1)
    final = save(original)
    saved.append(final)
    # Taking snapshots changed nothing: a run without them is the same.
    assert run_inprocess(lines, kind, policy) == groups
    for k, state in enumerate(saved):
        restored = load(state)
        assert state == save(restored), f"snapshot of the engine restored at step {k} differs"
        rest = feed_lines(restored, lines[k:], start=k + 1)
        for offset, (want, got) in enumerate(zip(groups[k:], rest, strict=True)):
            assert want == got, f"restored at step {k}: input {k + offset + 1} differs"
        assert final == save(restored), f"restored at step {k}: final state differs"


def test_restored_engine_keeps_pending_request_and_deadline() -> None:
    """D-ASYNC, D-SERIAL, S-REQ-1: a snapshot taken while a consult waits for
    the switch and another request waits behind it: the restored engine
    times the consult out at its original deadline, then runs the waiting
    request."""
    lines: list[Line] = [
        *scripted_setup(),
        request(CONSULT, IT, "r5", destination="200"),
        request(CONSULT, IT, "r6", destination="201"),
        clock(29),
    ]
    original = make_runner("scripted")
    feed_lines(original, lines)
    restored = load(save(original))
    rest: list[Line] = [clock(0.5), clock(0.5)]
    expected = feed_lines(original, rest, start=len(lines) + 1)
    actual = feed_lines(restored, rest, start=len(lines) + 1)
    assert expected == actual
    nothing: list[dict[str, Any]] = []
    assert nothing == actual[0]
    timed_out = [(m["header"]["requestId"], m["header"]["result"]) for m in responses(actual[1])]
    expected_response = [("r5", "FAILURE")]
    assert expected_response == timed_out
    second = [e["command"] for e in actual[1] if e.get("to") == "switch"]
    expected_command = [{"id": cmd_id(3), "op": "consult", "call": "c1", "destination": "201"}]
    assert expected_command == second


@pytest.mark.parametrize(("lines", "kind", "policy"), ARGS, ids=IDS)
def test_inprocess_runner_matches_the_command(lines: list[Line], kind: str, policy: list[str]) -> None:
    """harness.md `run`: ``Runner.feed`` in process gives the same outputs, per
    input, as the ``telephony-fsm run`` subprocess (so the snapshot tests
    above exercise what the command does)."""
    args = ["--switch", kind, *_policy_args(policy)]
    assert run_cli(lines, *args) == run_inprocess(lines, kind, policy)


def test_returned_responses_do_not_change_after_later_input() -> None:
    """D-LIFE-3, S-INIT-1, D-EVT-3: an init response is the snapshot of the
    moment it is answered. The sans-IO engine returns it as a (frozen)
    message; a later setdata must not change the body of that returned
    message (nor that of an earlier data query), since an adapter may queue
    or log it before writing it."""
    engine = make_runner().engine
    engine.receive_switch(
        {"kind": "offered", "call": "c1", "device": "1001", "ani": "5551000", "data": {"acct": {"id": "1"}}}
    )
    (init,) = engine.receive_bridge(query(INIT, IT, "r1")["message"])
    (data,) = engine.receive_bridge(query(DATA, IT, "r2")["message"])
    assert isinstance(init, ToBridge) and isinstance(data, ToBridge)
    at_init = _json(init.message.body)
    at_data = _json(data.message.body)
    engine.receive_bridge(request(SETDATA, IT, "r3", note="vip")["message"])
    assert at_init == _json(init.message.body)
    assert at_data == _json(data.message.body)


def test_restored_engine_judges_a_new_outbound_leg_as_the_original_does() -> None:
    """S-EVT-1, D-LEG after restore: with two STARTED interactions without a
    consult leg, a new outbound leg is no phone consult (there must be
    exactly one); it starts a new interaction, in the original and in its
    restored copy alike. With one of them ended, it joins the other."""
    from fsm.engine import Engine as Eng
    from fsm.snapshot import restore as restore_engine
    from fsm.snapshot import snapshot as take

    engine = Eng()
    for event in (
        {"kind": "offered", "call": "c1", "device": "1001"},
        {"kind": "connected", "call": "c1"},
        {"kind": "offered", "call": "c2", "device": "1001"},
        {"kind": "connected", "call": "c2"},
        {"kind": "held", "call": "c1"},
        {"kind": "retrieved", "call": "c1"},  # c1 changed last
    ):
        engine.receive_switch(event)
    copy = restore_engine(json.loads(json.dumps(take(engine))))
    for each in (engine, copy):
        each.receive_switch({"kind": "dialing", "call": "p9", "device": "1001"})
        assert each.interactions["c1"].consult is None
        assert "DIALING" == each.interactions["p9"].state
    copy = restore_engine(json.loads(json.dumps(take(engine))))
    for each in (engine, copy):
        each.receive_switch({"kind": "ended", "call": "c2"})
        each.receive_switch({"kind": "dialing", "call": "p10", "device": "1001"})
        assert "p10" == each.interactions["c1"].consult

"""``fsm.lean``: the `transitions` machine the engine's tables run on.

A lean machine keeps the library's contract where the project relies on it
(``trigger`` returns True or False, ``MachineError`` for a trigger that has
no edge from the model's state, conditions get the trigger's arguments,
an internal transition leaves the state) and refuses, loudly, the parts it
does not run: callbacks of every kind. It holds no models.

Assertions are written ``expected == actual``.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from transitions import MachineError, State

from fsm.lean import EdgeTransition, LeanMachine


@attrs.define(eq=False, slots=True)
class Model:
    state: str = "idle"


def _machine() -> LeanMachine[str]:
    machine: LeanMachine[str] = LeanMachine(states=["idle", "busy", "done"], initial="idle")
    machine.add_transition("start", "idle", "busy", edge="row: start")
    machine.add_transition(
        "finish", "busy", "done", conditions=[lambda context: context == "ok"], edge="row: finish if ok"
    )
    machine.add_transition("finish", "busy", "idle", edge="row: finish otherwise")
    machine.add_transition("note", "busy", None, edge="row: note (internal)")
    return machine


def test_fire_takes_the_first_edge_whose_conditions_pass() -> None:
    machine, model = _machine(), Model()
    assert "row: start" == machine.events["start"].fire_with(model, None).edge  # type: ignore[union-attr]
    assert "busy" == model.state
    taken = machine.events["finish"].fire_with(model, "not ok")
    assert taken is not None
    assert ("row: finish otherwise", "idle") == (taken.edge, model.state)
    machine.events["start"].fire_with(model, None)
    taken = machine.events["finish"].fire(model, "ok")
    assert taken is not None
    assert ("row: finish if ok", "done") == (taken.edge, model.state)


def test_an_internal_edge_leaves_the_state() -> None:
    machine, model = _machine(), Model("busy")
    taken = machine.events["note"].fire_with(model, None)
    assert taken is not None
    assert ("row: note (internal)", "busy") == (taken.edge, model.state)


def test_no_edge_from_the_state_fires_nothing() -> None:
    machine, model = _machine(), Model("done")
    assert machine.events["start"].fire_with(model, None) is None
    assert machine.events["start"].fire(model) is None
    assert "done" == model.state


def test_refused_conditions_change_nothing() -> None:
    machine = LeanMachine[str](states=["a", "b"], initial="a")
    machine.add_transition("go", "a", "b", conditions=[lambda context: False], edge="never")
    model = Model("a")
    assert machine.events["go"].fire_with(model, None) is None
    assert False is machine.events["go"].trigger(model, None)
    assert "a" == model.state


def test_trigger_keeps_the_library_contract() -> None:
    machine, model = _machine(), Model()
    assert True is machine.events["start"].trigger(model)
    assert "busy" == model.state
    with pytest.raises(MachineError):
        machine.events["start"].trigger(model)  # no start edge leaves busy
    assert "busy" == model.state


def test_conditions_get_the_trigger_arguments() -> None:
    seen: list[tuple[Any, ...]] = []

    def condition(*args: Any, **kwargs: Any) -> bool:
        seen.append((args, kwargs))
        return True

    machine = LeanMachine[str](states=["a", "b"], initial="a")
    machine.add_transition("go", "a", "b", conditions=[condition], unless=[lambda *a, **k: False], edge="go")
    machine.events["go"].fire(Model("a"), 1, key="v")
    machine.events["go"].fire_with(Model("a"), "context")
    assert [((1,), {"key": "v"}), (("context",), {})] == seen


def test_transitions_carry_their_row() -> None:
    machine = _machine()
    transitions = machine.events["finish"].transitions["busy"]
    assert all(isinstance(t, EdgeTransition) for t in transitions)
    assert ["row: finish if ok", "row: finish otherwise"] == [t.edge for t in transitions]


def test_the_machine_holds_no_models() -> None:
    machine, model = _machine(), Model()
    machine.events["start"].fire_with(model, None)
    assert [] == machine.models


@pytest.mark.parametrize("callback", ["before", "after", "prepare"])
def test_transition_callbacks_are_refused(callback: str) -> None:
    machine = _machine()
    with pytest.raises(ValueError, match=f"runs no callbacks.*{callback}"):
        machine.add_transition("x", "idle", "busy", edge="x", **{callback: lambda: None})


def test_a_callback_added_to_a_transition_later_is_refused() -> None:
    transition = _machine().events["start"].transitions["idle"][0]
    with pytest.raises(ValueError, match="runs no callbacks"):
        transition.add_callback("after", lambda: None)


def test_a_condition_named_by_string_is_refused() -> None:
    with pytest.raises(ValueError, match="callable conditions"):
        _machine().add_transition("x", "idle", "busy", conditions=["is_ready"], edge="x")


@pytest.mark.parametrize("callback", ["on_enter", "on_exit"])
def test_state_callbacks_are_refused(callback: str) -> None:
    given: dict[str, Any] = {callback: "hello"}
    states: list[Any] = [{"name": "a", **given}, "b"]
    with pytest.raises(ValueError, match=f"runs no callbacks.*{callback}"):
        LeanMachine(states=states, initial="a")
    with pytest.raises(ValueError, match="runs no callbacks"):
        _machine().add_states([State("z", **given)])  # a State made elsewhere
    with pytest.raises(ValueError, match="runs no callbacks"):
        _machine().states["idle"].add_callback(callback.removeprefix("on_"), lambda: None)


@pytest.mark.parametrize(
    "callback", ["before_state_change", "after_state_change", "prepare_event", "on_exception"]
)
def test_machine_callbacks_are_refused(callback: str) -> None:
    machine = _machine()
    with pytest.raises(ValueError, match=f"runs no callbacks.*{callback}"):
        setattr(machine, callback, [lambda: None])

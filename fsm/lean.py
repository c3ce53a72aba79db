"""A `transitions` machine configured to be cheap, through its own extension points.

:class:`LeanMachine` is a ``transitions.Machine`` whose ``event_cls``,
``transition_cls`` and ``state_cls`` are the lean subclasses below. It is
shared by every model it drives and holds none (no ``add_model``); its
machine always resolves and executes the edges: ``events[trigger]``, then
the event's ``transitions[source]``, then each transition's conditions (the
edge guards), then the model's state attribute set to the transition's
``dest``.

What it leaves out is what this project never asks of `transitions`, so
that a fire costs a few dictionary lookups rather than building an
``EventData`` and a ``functools.partial``, walking empty callback lists and
making seven or eight logging calls:

- callbacks: prepare, before and after on transitions, enter and exit on
  states, and the machine-wide ones. The project's edge actions run in the
  engine after the fire. The lean classes refuse every callback when it is
  configured (a ``ValueError``), so that none can be silently skipped.
- queued processing and ``send_event``: conditions are called with the
  trigger's own arguments, as `transitions` does when ``send_event`` is off.

Each :class:`EdgeTransition` carries the table row it was made from
(``edge``), so that a fire answers which row it took.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from transitions import Event, Machine, State, Transition

Row = TypeVar("Row")

#: Machine-wide callback lists of `transitions`; a lean machine has none.
_MACHINE_CALLBACKS = frozenset(
    {
        "prepare_event",
        "before_state_change",
        "after_state_change",
        "finalize_event",
        "on_exception",
        "on_final",
    }
)


def _refuse_callbacks(where: str, **callbacks: object) -> None:
    given = sorted(name for name, value in callbacks.items() if value)
    if given:
        raise ValueError(f"a lean machine runs no callbacks; {where} was given {', '.join(given)}")


class LeanState(State):
    """A state without enter or exit callbacks."""

    def __init__(
        self,
        name: str,
        on_enter: object = None,
        on_exit: object = None,
        ignore_invalid_triggers: bool | None = None,
        final: bool = False,
    ) -> None:
        _refuse_callbacks(f"state {name}", on_enter=on_enter, on_exit=on_exit)
        super().__init__(name, ignore_invalid_triggers=ignore_invalid_triggers, final=final)  # type: ignore[arg-type]

    def add_callback(self, trigger: str, func: object) -> None:
        _refuse_callbacks(f"state {self.name}", **{trigger: func})


class EdgeTransition(Transition, Generic[Row]):
    """A transition that carries its table row and runs no callbacks."""

    def __init__(
        self,
        source: str,
        dest: str | None,
        conditions: Sequence[Callable[..., bool]] | None = None,
        unless: Sequence[Callable[..., bool]] | None = None,
        before: object = None,
        after: object = None,
        prepare: object = None,
        *,
        edge: Row,
    ) -> None:
        _refuse_callbacks(f"transition {source} -> {dest}", before=before, after=after, prepare=prepare)
        super().__init__(source, dest, conditions, unless)  # type: ignore[arg-type]
        for condition in self.conditions:
            if not callable(condition.func):
                raise ValueError(f"a lean machine takes callable conditions, not {condition.func!r}")
        self.edge = edge
        self._checks: tuple[tuple[Callable[..., object], bool], ...] = tuple(
            (c.func, c.target) for c in self.conditions if callable(c.func)
        )

    def run(self, model: object, attribute: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """``execute`` without EventData: check the conditions with the
        trigger's arguments, then set the model's state (an internal
        transition, ``dest`` None, leaves it)."""
        for func, target in self._checks:
            if func(*args, **kwargs) != target:
                return False
        if self.dest is not None:
            setattr(model, attribute, self.dest)
        return True

    def run_with(self, model: object, attribute: str, context: object) -> bool:
        """:meth:`run` for a trigger given one argument, ``context``."""
        for func, target in self._checks:
            if func(context) != target:
                return False
        if self.dest is not None:
            setattr(model, attribute, self.dest)
        return True

    def add_callback(self, trigger: str, func: object) -> None:
        _refuse_callbacks(f"transition {self.source} -> {self.dest}", **{trigger: func})


class EdgeEvent(Event, Generic[Row]):
    """An event whose trigger runs its edge transitions directly."""

    transitions: defaultdict[str, list[EdgeTransition[Row]]]  # type: ignore[assignment]

    def trigger(self, model: object, *args: Any, **kwargs: Any) -> bool:
        """As `transitions` does: False when no transition's conditions
        pass; ``MachineError`` when none leaves the model's state."""
        machine = self.machine
        state = getattr(model, machine.model_attribute)
        if state not in self.transitions:
            return self._is_valid_source(machine.get_state(state))  # raises MachineError
        return self.fire(model, *args, **kwargs) is not None

    def fire(self, model: object, *args: Any, **kwargs: Any) -> EdgeTransition[Row] | None:
        """The transition that ran, or None when none left the model's state."""
        attribute = self.machine.model_attribute
        candidates = self.transitions.get(getattr(model, attribute))
        if candidates is not None:
            for transition in candidates:
                if transition.run(model, attribute, args, kwargs):
                    return transition
        return None

    def fire_with(self, model: object, context: object) -> EdgeTransition[Row] | None:
        """:meth:`fire` for a trigger given one argument, ``context`` (how the
        project's machines fire: the conditions get the guard context). A
        transition without conditions is taken here directly, as
        :meth:`EdgeTransition.run_with` would take it."""
        attribute = self.machine.model_attribute
        candidates = self.transitions.get(getattr(model, attribute))
        if candidates is not None:
            for transition in candidates:
                if not transition._checks:
                    if transition.dest is not None:
                        setattr(model, attribute, transition.dest)
                    return transition
                if transition.run_with(model, attribute, context):
                    return transition
        return None


class LeanMachine(Machine, Generic[Row]):
    """A shared `transitions` machine that drives unregistered models, with
    no auto transitions, no callbacks, no queue and no EventData."""

    state_cls = LeanState
    transition_cls = EdgeTransition
    event_cls = EdgeEvent

    events: dict[str, EdgeEvent[Row]]  # type: ignore[assignment]

    def __init__(self, states: list[str], initial: str, model_attribute: str = "state") -> None:
        super().__init__(
            model=None,
            states=states,
            initial=initial,
            auto_transitions=False,
            send_event=False,
            queued=False,
            model_attribute=model_attribute,
        )

    def __setattr__(self, name: str, value: object) -> None:
        if name in _MACHINE_CALLBACKS:
            _refuse_callbacks("the machine", **{name: value})
        super().__setattr__(name, value)

    def add_states(self, states: Any, *args: Any, **kwargs: Any) -> None:
        super().add_states(states, *args, **kwargs)
        for state in self.states.values():  # a State instance passed in as it is
            _refuse_callbacks(f"state {state.name}", on_enter=state.on_enter, on_exit=state.on_exit)

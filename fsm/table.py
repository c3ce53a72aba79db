"""The mechanism of a state machine: a table of edges and the one shared
`transitions` machine built from it.

``fsm.machines`` holds the tables (states, edges, named guards); this module
holds what makes a table run: :class:`Edge` (one row), :class:`StateMachine`
(checks and fires edges on any model through its `transitions` machine,
``fsm.lean.LeanMachine``, without registering models) and
:func:`structure_problems` (the checks in the manner of python-statemachine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from fsm.errors import LocalProtocolError, Refusal
from fsm.lean import EdgeEvent, LeanMachine

#: A named guard on an edge: (model, context) -> the reason for refusing, or None.
EdgeGuard = Callable[[Any, Any], "str | None"]


@attrs.frozen(kw_only=True)
class Edge:
    """One row of a transition table."""

    source: str
    trigger: str
    dest: str | None
    rule: str
    guard: str | None = None
    action: str | None = None
    #: "request": fired by a bridge request; "switch": by what the switch
    #: reports; "lifecycle": by init queries and dispose; "adapter": by the
    #: adapter process (stopping the client).
    origin: str = "request"


class StateMachine:
    """A table plus the one shared `transitions` machine built from it.

    Every edge is resolved and executed by that machine: :meth:`check` and
    :meth:`fire` look a trigger up in its ``events`` and the model's state in
    the event's ``transitions``; each transition carries its table row."""

    def __init__(
        self,
        name: str,
        states: tuple[str, ...],
        initial: str,
        edges: tuple[Edge, ...],
        attribute: str = "state",
        guards: Mapping[str, EdgeGuard] | None = None,
    ) -> None:
        self.name = name
        #: the named guards its edges may name: guard -> (model, context) -> reason or None
        self.guards: Mapping[str, EdgeGuard] = guards or {}
        self.states = states
        self.initial = initial
        self.edges = edges
        self.attribute = attribute
        self.finals = tuple(s for s in states if not any(e.source == s for e in edges))
        self.triggers = tuple(dict.fromkeys(e.trigger for e in edges))
        self._sources = {t: tuple(e.source for e in edges if e.trigger == t) for t in self.triggers}
        #: trigger -> the rule of its first edge, and the states that allow it, in words
        self._rules = {t: next(e.rule for e in edges if e.trigger == t) for t in self.triggers}
        self._allowed = {t: join_words(dict.fromkeys(sources)) for t, sources in self._sources.items()}
        self.machine: LeanMachine[Edge] = LeanMachine(
            states=list(states), initial=initial, model_attribute=attribute
        )
        for edge in edges:
            if edge.guard is not None and edge.guard not in self.guards:
                raise LocalProtocolError(f"{name}: edge {edge.trigger} names guard {edge.guard!r}, not given")
            conditions: list[str | Callable[..., bool | None]] = (
                [_condition(edge.guard, self.guards[edge.guard])] if edge.guard else []
            )
            self.machine.add_transition(
                edge.trigger, edge.source, edge.dest, conditions=conditions, edge=edge
            )
        self._events: dict[str, EdgeEvent[Edge]] = self.machine.events

    def edges_from(self, state: str, trigger: str) -> tuple[Edge, ...]:
        event = self._events.get(trigger)
        if event is None:
            return ()
        return tuple(t.edge for t in event.transitions.get(state, ()))

    def sources(self, trigger: str) -> tuple[str, ...]:
        return self._sources.get(trigger, ())

    def check(self, state: str, trigger: str, context: Any = None) -> Edge | Refusal:
        """The edge ``trigger`` would take from ``state``, or why it may not.

        A refusal from the table itself names the states that allow the
        trigger; one from a guard gives the guard's reason."""
        event = self._events.get(trigger)
        transitions = event.transitions.get(state) if event is not None else None
        if not transitions:
            rule = self.rule_for(trigger)
            return Refusal(rule, f"the {self.name} is {state}; {trigger} needs {self._allowed[trigger]}")
        refusal: Refusal | None = None
        for transition in transitions:
            edge = transition.edge
            if edge.guard is None:
                return edge
            reason = self.guards[edge.guard](None, context)
            if reason is None:
                return edge
            refusal = Refusal(edge.rule, reason, edge.guard)
        assert refusal is not None
        return refusal

    def rule_for(self, trigger: str) -> str:
        rule = self._rules.get(trigger)
        if rule is None:
            raise LocalProtocolError(f"{self.name} machine has no trigger {trigger!r}")
        return rule

    def fire(self, model: Any, trigger: str, context: Any = None) -> Edge:
        """Fire ``trigger`` on ``model`` through `transitions`. The caller has
        checked it is allowed; a refusal here is a bug and raises."""
        event = self._events.get(trigger)
        transition = event.fire_with(model, context) if event is not None else None
        if transition is None:
            outcome = self.check(getattr(model, self.attribute), trigger, context)
            reason = outcome.reason if isinstance(outcome, Refusal) else "its transition did not run"
            raise LocalProtocolError(f"{self.name} {trigger} fired while refused: {reason}")
        return transition.edge

    def try_fire(self, model: Any, trigger: str, context: Any = None) -> Edge | None:
        """Fire ``trigger`` on ``model`` through `transitions` where it may
        fire; None, and nothing changed, where :meth:`check` would refuse."""
        event = self._events.get(trigger)
        transition = event.fire_with(model, context) if event is not None else None
        return transition.edge if transition is not None else None

    def fire_if_edge(self, model: Any, trigger: str, context: Any = None) -> Edge | None:
        """Fire ``trigger`` where the table has an edge for it from the model's
        state; None (and nothing fired) where it has none."""
        event = self._events.get(trigger)
        if event is None or getattr(model, self.attribute) not in event.transitions:
            return None
        return self.fire(model, trigger, context)


def _condition(guard: str, predicate: EdgeGuard) -> Callable[[Any], bool]:
    """The `transitions` condition of an edge guard. The machine passes the
    trigger's arguments (``send_event`` is off): here the context."""

    def condition(context: Any = None) -> bool:
        return predicate(None, context) is None

    condition.__name__ = guard
    return condition


def join_words(states: Iterable[str]) -> str:
    items = list(states)
    if not items:
        return "no state"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


def structure_problems(machine: StateMachine, starts: Iterable[str]) -> list[str]:
    """Checks in the manner of python-statemachine: every state reachable
    from ``starts``, every edge between known states, nothing leaves a final
    state, every guard known. Returns the problems found (empty when sound)."""
    problems: list[str] = []
    known = set(machine.states)
    for edge in machine.edges:
        for end in (edge.source, edge.dest):
            if end is not None and end not in known:
                problems.append(f"{machine.name}: edge {edge.trigger} names unknown state {end}")
        if edge.guard is not None and edge.guard not in machine.guards:
            problems.append(f"{machine.name}: edge {edge.trigger} names unknown guard {edge.guard}")
    seen = reachable(machine, starts)
    problems += [f"{machine.name}: {s} is unreachable" for s in machine.states if s not in seen]
    return problems


def reachable(machine: StateMachine, starts: Iterable[str]) -> frozenset[str]:
    """Every state the table's edges reach from ``starts`` (``starts`` included)."""
    seen = set(starts)
    frontier = list(seen)
    while frontier:
        state = frontier.pop()
        for edge in machine.edges:
            if edge.source == state and edge.dest is not None and edge.dest not in seen:
                seen.add(edge.dest)
                frontier.append(edge.dest)
    return frozenset(seen)

"""The state machines: declarative tables, and one shared `transitions` machine each.

What may live here (in the spirit of h11's ``_state.py``): the states, the
edges ``(source, trigger, dest, rule, guard, action)`` and the named guards
on edges; nothing that does I/O, reads a clock or builds messages. The
engine, the diagrams and the trace checker all read these tables, so every
edge is written once.

Three machines:

- ``INTERACTION``: ALERTING, DIALING, STARTED with its consult substates,
  ENDED, COMPLETED. ``STARTED.none`` has no consult leg; ``STARTED.requested``
  has a consult asked of the switch and no leg named yet; ``STARTED.ringing``
  has a consult leg that is DIALING or ALERTING; ``STARTED.connected.primary``
  and ``STARTED.connected.consult`` have a connected consult leg, the suffix
  naming the active leg (the last one that was TALKING, S-ALT-1). The
  top-level state (before the first dot) is what the protocol reports.
- ``CONVERSATION``: DIALING, ALERTING, TALKING, HELD, ENDED.
- ``LIFECYCLE``: a destination's setup, initialization and teardown
  (S-LIFE-1), driven on the ``lifecycle`` attribute of both kinds of model.

Edges whose ``dest`` is None are internal: the request is allowed from that
state, and the state then follows what the switch reports.

Models are not registered with the machines (no ``add_model``): an edge is
fired with ``machine.events[trigger].fire(model, context)``, which runs the
transition from the model's state attribute on any object. That keeps
creating and removing a call free of the model-list scan and of per-model
bound methods. The machines are ``fsm.lean.LeanMachine``: `transitions`
configured through its own extension points to skip the work (EventData,
callback lists, logging) that edges without callbacks do not need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs

from fsm.errors import LocalProtocolError, Refusal
from fsm.lean import EdgeEvent, LeanMachine

# --------------------------------------------------------------------------
# States.

ALERTING: Final = "ALERTING"
DIALING: Final = "DIALING"
STARTED: Final = "STARTED"
ENDED: Final = "ENDED"
COMPLETED: Final = "COMPLETED"
TALKING: Final = "TALKING"
HELD: Final = "HELD"

S_NONE: Final = "STARTED.none"
S_REQUESTED: Final = "STARTED.requested"
S_RINGING: Final = "STARTED.ringing"
S_PRIMARY: Final = "STARTED.connected.primary"
S_CONSULT: Final = "STARTED.connected.consult"
S_CONNECTED: Final = (S_PRIMARY, S_CONSULT)

INTERACTION_STATES: Final = (
    ALERTING,
    DIALING,
    S_NONE,
    S_REQUESTED,
    S_RINGING,
    S_PRIMARY,
    S_CONSULT,
    ENDED,
    COMPLETED,
)
CONVERSATION_STATES: Final = (DIALING, ALERTING, TALKING, HELD, ENDED)
LIVE_LEG_STATES: Final = (DIALING, ALERTING, TALKING, HELD)

ABSENT: Final = "ABSENT"
SETUP: Final = "SETUP"
INITIALIZED: Final = "INITIALIZED"
DISPOSED: Final = "DISPOSED"
LIFECYCLE_STATES: Final = (ABSENT, SETUP, INITIALIZED, DISPOSED)


#: interaction state -> its top-level state (what :func:`top` answers), looked up
#: on every state change
TOP_OF: Final = {state: state.partition(".")[0] for state in INTERACTION_STATES}


def top(state: str) -> str:
    """The protocol's name of a state: ``STARTED.ringing`` -> ``STARTED``."""
    return TOP_OF.get(state) or state.partition(".")[0]


# --------------------------------------------------------------------------
# Edges.


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
    #: reports; "lifecycle": by init queries and dispose.
    origin: str = "request"


def _rows(
    origin: str,
    trigger: str,
    sources: Iterable[str],
    dest: str | None,
    rule: str,
    guard: str | None = None,
    action: str | None = None,
) -> list[Edge]:
    return [
        Edge(source=s, trigger=trigger, dest=dest, rule=rule, guard=guard, action=action, origin=origin)
        for s in sources
    ]


def _request(
    trigger: str, sources: Iterable[str], dest: str | None, rule: str, *, guard: str | None = None
) -> list[Edge]:
    """Rows of a request's trigger: one per source state."""
    return _rows("request", trigger, sources, dest, rule, guard=guard)


def _switch(
    trigger: str, sources: Iterable[str], dest: str | None, rule: str, *, action: str | None = None
) -> list[Edge]:
    """Rows of a trigger fired by what the switch reports: one per source state."""
    return _rows("switch", trigger, sources, dest, rule, action=action)


_NOT_COMPLETED = tuple(s for s in INTERACTION_STATES if s != COMPLETED)

#: The interaction machine, fired by requests. Request triggers are named
#: after the request (spec: "Generic interaction destination", then the
#: telephony requests).
INTERACTION_REQUEST_EDGES: Final[tuple[Edge, ...]] = tuple(
    _request("accept", [ALERTING], None, "D-GENERIC")
    + _request("reject", [ALERTING], None, "D-GENERIC")
    + _request("complete", [ENDED], COMPLETED, "D-GENERIC")
    + _request("setdata", _NOT_COMPLETED, None, "D-GENERIC")
    + _request("createconversation", _NOT_COMPLETED, None, "S-CC-1")
    + _request("consult", [S_NONE], S_REQUESTED, "S-CONS-1")
    + _request("consulttransfer", S_CONNECTED, None, "D-XFER-1")
    + _request("consulttransfer", [S_RINGING], None, "D-XFER-1", guard="transfer_while_consult_ringing")
    + _request("consultconference", S_CONNECTED, None, "D-CONF-1")
    + _request("alternate", S_CONNECTED, None, "D-ALT-1")
)

#: The interaction machine, fired by what the switch reports, seen from the
#: interaction: switch triggers are named after what a call leg did (see
#: LEG_COUPLING). A consult executing when the primary ends fails by its
#: completion (catalog: leg_named).
INTERACTION_SWITCH_EDGES: Final[tuple[Edge, ...]] = tuple(
    _switch("primary_connected", [ALERTING, DIALING], S_NONE, "D-EVT-2")
    + _switch("primary_ended", [ALERTING, DIALING, S_NONE], ENDED, "D-PRIMARY-LOSS")
    + _switch("primary_ended", [S_REQUESTED], ENDED, "D-PRIMARY-LOSS")
    + _switch("primary_ended", [S_RINGING], DIALING, "D-PRIMARY-LOSS", action="promote_consult")
    + _switch("primary_ended", S_CONNECTED, S_NONE, "D-PRIMARY-LOSS", action="promote_consult")
    + _switch("consult_named", [S_REQUESTED], S_RINGING, "D-CONS-3")
    + _switch("consult_refused", [S_REQUESTED], S_NONE, "D-ASYNC")
    + _switch("phone_consult", [S_NONE], S_RINGING, "S-EVT-1")
    + _switch("consult_connected", [S_RINGING], S_CONSULT, "S-ALT-1")
    + _switch("consult_ended", [S_RINGING, *S_CONNECTED], S_NONE, "D-CONSULT-END", action="consult_over")
    + _switch("primary_talking", [S_CONSULT], S_PRIMARY, "S-ALT-1")
    + _switch("consult_talking", [S_PRIMARY], S_CONSULT, "S-ALT-1")
)

#: The interaction machine: both tables.
INTERACTION_EDGES: Final[tuple[Edge, ...]] = INTERACTION_REQUEST_EDGES + INTERACTION_SWITCH_EDGES

_LIVE = LIVE_LEG_STATES

#: The conversation machine, fired by requests.
CONVERSATION_REQUEST_EDGES: Final[tuple[Edge, ...]] = tuple(
    _request("answer", [ALERTING], None, "D-CONV")
    + _request("release", _LIVE, None, "D-CONV")
    + _request("hold", [TALKING], None, "D-CONV")
    + _request("retrieve", [HELD], None, "D-CONV")
    + _request("blindtransfer", [TALKING, HELD], None, "D-CONV")
    + _request("blindconference", [TALKING], None, "D-CONV")
    + _request("senddtmf", [TALKING], None, "D-CONV")
)

#: The conversation machine, fired by switch events. A repeated `dialing`
#: confirms a leg already named by a `result`.
CONVERSATION_SWITCH_EDGES: Final[tuple[Edge, ...]] = tuple(
    _switch("dialing", [DIALING], None, "D-ASYNC")
    + _switch("alerting", [DIALING], ALERTING, "D-CONV")
    + _switch("connected", [DIALING, ALERTING], TALKING, "D-CONV")
    + _switch("held", [TALKING], HELD, "D-CONV")
    + _switch("retrieved", [HELD], TALKING, "D-CONV")
    + _switch("ended", _LIVE, ENDED, "D-CONV")
    + _switch("failed", _LIVE, ENDED, "D-CONSULT-END")
)

#: The conversation machine: both tables.
CONVERSATION_EDGES: Final[tuple[Edge, ...]] = CONVERSATION_REQUEST_EDGES + CONVERSATION_SWITCH_EDGES


@attrs.frozen(kw_only=True)
class LegCoupling:
    """One row of the coupling of call legs to their interaction, in the
    spirit of h11's state-triggered transitions: when the interaction's
    ``role`` leg enters ``leg_state`` (and ``when`` holds), the interaction
    fires ``trigger``. The first row that matches wins."""

    role: str
    leg_state: str
    trigger: str
    rule: str
    #: a key of COUPLING_CONDITIONS; None: always
    when: str | None = None


def _couple(role: str, leg_state: str, trigger: str, rule: str, *, when: str | None = None) -> LegCoupling:
    return LegCoupling(role=role, leg_state=leg_state, trigger=trigger, rule=rule, when=when)


#: What a leg's new state means for its interaction (the switch triggers of
#: the interaction table). The active leg (S-ALT-1) is the last one that
#: became TALKING; when it is put on hold while the other one talks, the
#: talking one is the active leg.
LEG_COUPLING: Final[tuple[LegCoupling, ...]] = (
    _couple("primary", TALKING, "primary_connected", "D-EVT-2", when="unanswered"),
    _couple("primary", TALKING, "primary_talking", "S-ALT-1"),
    _couple("primary", HELD, "consult_talking", "S-ALT-1", when="other_talking"),
    _couple("primary", ENDED, "primary_ended", "D-PRIMARY-LOSS"),
    _couple("consult", TALKING, "consult_connected", "S-ALT-1", when="consult_ringing"),
    _couple("consult", TALKING, "consult_talking", "S-ALT-1"),
    _couple("consult", HELD, "primary_talking", "S-ALT-1", when="other_talking"),
    _couple("consult", ENDED, "consult_ended", "D-CONSULT-END"),
)

#: The conditions of LEG_COUPLING: (interaction state, the other leg's state
#: or None when there is no other leg) -> whether the row applies.
COUPLING_CONDITIONS: Final[dict[str, Callable[[str, str | None], bool]]] = {
    "unanswered": lambda state, other: top(state) in (ALERTING, DIALING),
    "consult_ringing": lambda state, other: state == S_RINGING,
    "other_talking": lambda state, other: other == TALKING,
}

#: The destination lifecycle (S-LIFE-1), for interactions and conversations:
#: fired by createconversation, the init queries and dispose.
LIFECYCLE_EDGES: Final[tuple[Edge, ...]] = tuple(
    _rows("lifecycle", "create", [ABSENT], SETUP, "S-CC-1")
    + _rows("lifecycle", "init", [SETUP], INITIALIZED, "S-LIFE-2")
    + _rows("lifecycle", "init", [INITIALIZED], None, "D-LIFE-5")
    + _rows("lifecycle", "dispose", [ABSENT, SETUP, INITIALIZED], DISPOSED, "D-LIFE-4")
)


# --------------------------------------------------------------------------
# Guards on edges: name -> predicate over (model, context) returning the
# reason for refusing, or None.


def _transfer_while_ringing(model: Any, policy: Any) -> str | None:
    if getattr(policy, "transfer_while_consult_ringing", False):
        return None
    return (
        "the consult call is still ringing; consulttransfer needs it connected "
        "(policy transfer_while_consult_ringing is off)"
    )


EDGE_GUARDS: Final[dict[str, Callable[[Any, Any], str | None]]] = {
    "transfer_while_consult_ringing": _transfer_while_ringing,
}


# --------------------------------------------------------------------------
# The machines.


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
    ) -> None:
        self.name = name
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
            conditions: list[str | Callable[..., bool | None]] = (
                [_condition(edge.guard)] if edge.guard else []
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
            reason = EDGE_GUARDS[edge.guard](None, context)
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


def _condition(guard: str) -> Callable[[Any], bool]:
    """The `transitions` condition of an edge guard. The machine passes the
    trigger's arguments (``send_event`` is off): here the context."""
    predicate = EDGE_GUARDS[guard]

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


INTERACTION: Final = StateMachine("interaction", INTERACTION_STATES, ALERTING, INTERACTION_EDGES)
CONVERSATION: Final = StateMachine("conversation", CONVERSATION_STATES, ALERTING, CONVERSATION_EDGES)
LIFECYCLE: Final = StateMachine(
    "destination", LIFECYCLE_STATES, ABSENT, LIFECYCLE_EDGES, attribute="lifecycle"
)
MACHINES: Final = (INTERACTION, CONVERSATION, LIFECYCLE)


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
        if edge.guard is not None and edge.guard not in EDGE_GUARDS:
            problems.append(f"{machine.name}: edge {edge.trigger} names unknown guard {edge.guard}")
    seen = set(starts)
    frontier = list(seen)
    while frontier:
        state = frontier.pop()
        for edge in machine.edges:
            if edge.source == state and edge.dest is not None and edge.dest not in seen:
                seen.add(edge.dest)
                frontier.append(edge.dest)
    problems += [f"{machine.name}: {s} is unreachable" for s in machine.states if s not in seen]
    return problems

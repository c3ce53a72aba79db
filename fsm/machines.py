"""The state machines: declarative tables, and one shared `transitions` machine each.

What may live here (in the spirit of h11's ``_state.py``): the states, the
edges ``(source, trigger, dest, rule, guard, action)`` and the named guards
on edges; nothing that does I/O, reads a clock or builds messages. The
engine, the diagrams and the trace checker all read these tables, so every
edge is written once.

Five machines:

- ``INTERACTION``: ALERTING, DIALING, STARTED with its consult substates,
  ENDED, COMPLETED. ``STARTED.none`` has no consult leg; ``STARTED.requested``
  has a consult asked of the switch and no leg named yet; ``STARTED.ringing``
  has a consult leg that is DIALING or ALERTING; ``STARTED.connected.primary``
  and ``STARTED.connected.consult`` have a connected consult leg, the suffix
  naming the active leg (the last one that was TALKING, S-ALT-1). The
  top-level state (before the first dot) is what the protocol reports.
- ``CONVERSATION``: DIALING, ALERTING, TALKING, HELD, ENDED.
- ``LIFECYCLE``: a destination's setup, initialization and teardown
  (S-LIFE-1), driven on the ``lifecycle`` attribute of every destination.
- ``CONTROL``: the processor control destination's server status
  (D-CTRL-1): starting, started, stopping, stopped, cti-lost.
- ``CHANNEL``: an agent device's login and ready state as its channel
  destinations report it (D-CH-1): INACTIVE, ACTIVE.NOTREADY,
  ACTIVE.READY, UNAVAILABLE, DISPOSED.

Edges whose ``dest`` is None are internal: the request is allowed from that
state, and the state then follows what the switch reports.

How a table runs lives in ``fsm.table`` (:class:`~fsm.table.Edge`,
:class:`~fsm.table.StateMachine`, re-exported here). Models are not
registered with the machines (no ``add_model``): an edge is
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

from fsm.table import Edge as Edge
from fsm.table import StateMachine as StateMachine
from fsm.table import join_words as join_words
from fsm.table import structure_problems as structure_problems

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

# The control destination's statuses are the words of its status event (D-CTRL-1).
C_STARTING: Final = "starting"
C_STARTED: Final = "started"
C_STOPPING: Final = "stopping"
C_STOPPED: Final = "stopped"
C_CTI_LOST: Final = "cti-lost"
CONTROL_STATES: Final = (C_STARTING, C_STARTED, C_STOPPING, C_STOPPED, C_CTI_LOST)

INACTIVE: Final = "INACTIVE"
NOTREADY: Final = "ACTIVE.NOTREADY"
READY: Final = "ACTIVE.READY"
UNAVAILABLE: Final = "UNAVAILABLE"
ACTIVE_STATES: Final = (NOTREADY, READY)
CHANNEL_STATES: Final = (INACTIVE, NOTREADY, READY, UNAVAILABLE, DISPOSED)


#: interaction state -> its top-level state (what :func:`top` answers), looked up
#: on every state change
TOP_OF: Final = {state: state.partition(".")[0] for state in (*INTERACTION_STATES, *CHANNEL_STATES)}


def top(state: str) -> str:
    """The protocol's name of a state: ``STARTED.ringing`` -> ``STARTED``."""
    return TOP_OF.get(state) or state.partition(".")[0]


# --------------------------------------------------------------------------
# Edges.


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

_ALL_CONTROL = CONTROL_STATES
_UP = (C_STARTING, C_STARTED, C_CTI_LOST)

#: The control machine (D-CTRL-1, F-CTRL-3): requests are answered in any
#: status; the switch link moves it; the adapter stops it.
CONTROL_EDGES: Final[tuple[Edge, ...]] = tuple(
    _request("status", _ALL_CONTROL, None, "D-CTRL-1")
    + _request("validatelogin", _ALL_CONTROL, None, "D-CTRL-2")
    + _switch("link_up", [C_STARTING, C_CTI_LOST], C_STARTED, "D-CTRL-1")
    + _switch("link_up", [C_STARTED], None, "D-CTRL-1")
    + _switch("link_down", [C_STARTING, C_STARTED], C_CTI_LOST, "F-CTRL-3")
    + _switch("link_down", [C_CTI_LOST], None, "F-CTRL-3")
    + _rows("adapter", "stop", _UP, C_STOPPING, "F-CTRL-3")
    + _rows("adapter", "stopped", [C_STOPPING], C_STOPPED, "F-CTRL-3")
)

_ANY_CHANNEL = (INACTIVE, NOTREADY, READY, UNAVAILABLE)

#: The channel machine (D-CH-1), on an agent's device: one per end-point,
#: whatever the number of sessions that show it (D-SESS-1). Requests ask
#: the switch and wait for its ``agent`` event (D-DONE), except on edges
#: whose action is ``at_once`` (activate on an ACTIVE channel, ready on a
#: READY one, logout where nobody is logged in: SUCCESS, no command).
CHANNEL_REQUEST_EDGES: Final[tuple[Edge, ...]] = tuple(
    _request("activate", [INACTIVE], None, "D-CH-1")
    + _rows("request", "activate", ACTIVE_STATES, None, "D-SESS-1", action="at_once")
    + _request("deactivate", ACTIVE_STATES, None, "D-CH-1")
    + _request("ready", [NOTREADY], None, "D-CH-1")
    + _rows("request", "ready", [READY], None, "D-SESS-1", action="at_once")
    + _request("notready", ACTIVE_STATES, None, "D-CH-1")
    + _request("dial", ACTIVE_STATES, None, "D-TCH-1")
    + _request("logout", ACTIVE_STATES, None, "D-SESS-2")
    + _rows("request", "logout", [INACTIVE, UNAVAILABLE], None, "D-SESS-2", action="at_once")
)

#: The channel machine, fired by the switch's ``agent`` events (harness.md),
#: trigger ``agent_STATE``: a repeated report changes nothing.
CHANNEL_SWITCH_EDGES: Final[tuple[Edge, ...]] = tuple(
    _switch("agent_loggedin", [INACTIVE], NOTREADY, "D-CH-1")
    + _switch("agent_loggedin", ACTIVE_STATES, None, "D-CH-1")
    + _switch("agent_loggedout", ACTIVE_STATES, INACTIVE, "D-CH-1")
    + _switch("agent_loggedout", [INACTIVE], None, "D-CH-1")
    + _switch("agent_ready", [NOTREADY], READY, "D-CH-1")
    + _switch("agent_ready", [READY], None, "D-CH-1")
    + _switch("agent_notready", [READY], NOTREADY, "D-CH-1")
    + _switch("agent_notready", [NOTREADY], None, "D-CH-1")
    + _switch("agent_taken", [INACTIVE, *ACTIVE_STATES], UNAVAILABLE, "F-CH-1")
    + _switch("agent_taken", [UNAVAILABLE], None, "F-CH-1")
    + _switch("agent_free", [UNAVAILABLE], INACTIVE, "F-CH-2")
    + _switch("agent_free", [INACTIVE], None, "F-CH-2")
    + _switch("agent_removed", _ANY_CHANNEL, DISPOSED, "F-CH-2")
)

#: The channel machine: both tables.
CHANNEL_EDGES: Final[tuple[Edge, ...]] = CHANNEL_REQUEST_EDGES + CHANNEL_SWITCH_EDGES


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


INTERACTION: Final = StateMachine(
    "interaction", INTERACTION_STATES, ALERTING, INTERACTION_EDGES, guards=EDGE_GUARDS
)
CONVERSATION: Final = StateMachine(
    "conversation", CONVERSATION_STATES, ALERTING, CONVERSATION_EDGES, guards=EDGE_GUARDS
)
LIFECYCLE: Final = StateMachine(
    "destination", LIFECYCLE_STATES, ABSENT, LIFECYCLE_EDGES, attribute="lifecycle", guards=EDGE_GUARDS
)
CONTROL: Final = StateMachine("control", CONTROL_STATES, C_STARTED, CONTROL_EDGES, guards=EDGE_GUARDS)
CHANNEL: Final = StateMachine("channel", CHANNEL_STATES, INACTIVE, CHANNEL_EDGES, guards=EDGE_GUARDS)
MACHINES: Final = (INTERACTION, CONVERSATION, LIFECYCLE, CONTROL, CHANNEL)

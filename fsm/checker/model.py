"""What the trace checker knows of each destination, from the messages alone.

The checker never sees the engine's state: it learns a destination's state
from init responses, events and the responses to requests, and it knows
less than the engine does. Where it cannot tell, it keeps every state that
is still possible (a call leg whose conversation is not initialized may be
in any state), so that a rule is only reported when the messages prove it
broken.

The moves an event may report are derived from the transition tables of
``fsm.machines``: the checker reads the same edges the engine fires.
"""

from __future__ import annotations

from typing import Final, Protocol

import attrs

from fsm.catalog import RequestSpec
from fsm.errors import Refusal
from fsm.intake import Defect
from fsm.machines import (
    ALERTING,
    COMPLETED,
    CONVERSATION_EDGES,
    CONVERSATION_STATES,
    DIALING,
    ENDED,
    HELD,
    INTERACTION_EDGES,
    INTERACTION_STATES,
    LIVE_LEG_STATES,
    S_CONNECTED,
    S_NONE,
    S_RINGING,
    STARTED,
    TALKING,
    top,
)

#: A leg whose state the messages have not told (yet).
ANY_LEG: Final = frozenset(CONVERSATION_STATES)
LIVE_LEG: Final = frozenset(LIVE_LEG_STATES)
RINGING_LEG: Final = frozenset({DIALING, ALERTING})
CONNECTED_LEG: Final = frozenset({TALKING, HELD})
ENDED_LEG: Final = frozenset({ENDED})

#: The states the protocol reports (D-EVT-2 events, init responses).
TOP_STATES: Final = tuple(dict.fromkeys(top(s) for s in INTERACTION_STATES))
#: States in which an init response lists the primary (S-INIT-3).
WITH_PRIMARY: Final = (ALERTING, DIALING, STARTED)
#: States in which an init response lists no conversation (S-INIT-5).
WITHOUT_CONVERSATIONS: Final = (ENDED, COMPLETED)


def _interaction_moves() -> frozenset[tuple[str, str]]:
    """Top-level moves of the interaction machine: (from, to) for every edge
    whose destination is another top-level state (D-EVT-2)."""
    return frozenset(
        (top(e.source), top(e.dest))
        for e in INTERACTION_EDGES
        if e.dest is not None and top(e.source) != top(e.dest)
    )


def _conversation_moves() -> frozenset[tuple[str, str]]:
    return frozenset(
        (e.source, e.dest) for e in CONVERSATION_EDGES if e.dest is not None and e.source != e.dest
    )


INTERACTION_MOVES: Final = _interaction_moves()
CONVERSATION_MOVES: Final = _conversation_moves()


class TargetRule(Protocol):
    """D-TARGET, replaceable: how destinations are addressed (the engine's
    :class:`fsm.outputs.Targets` has this shape, and is the default)."""

    def control(self) -> str: ...

    def group(self, session: str, group_id: str) -> str: ...

    def channel(self, group: str, end_point: str) -> str: ...

    def interaction(self, channel: str, interaction_id: str) -> str: ...

    def conversation(self, interaction_target: str, bridge_id: str) -> str: ...


@attrs.define(eq=False, kw_only=True)
class Asked:
    """A query or request awaiting its response."""

    line: int
    name: str
    target: str
    request_id: str
    #: None for a malformed message (then ``defect`` says what is wrong)
    spec: RequestSpec | None
    defect: Defect | None = None
    properties: dict[str, str] = attrs.field(factory=dict)
    #: the target of the interaction whose requests run one at a time
    group: str | None = None
    #: a request D-SERIAL orders (not a query, a known destination of its kind,
    #: not a repeated requestId)
    queued: bool = False
    after_dispose: bool = False
    #: its destination was initialized, or had an init query pending, when it arrived
    init_before: bool = False
    #: it arrived on a destination that keeps requestIds (D-DUP: known, not disposed)
    remembered: bool = False
    #: its requestId was seen there before: its response is the D-DUP refusal
    repeat: bool = False
    #: its window has opened (every earlier request of its interaction answered)
    opened: bool = False
    #: its precondition held at some point of its window (judged once it opened)
    held: bool = True
    refusal: Refusal | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.target, self.request_id

    @property
    def label(self) -> str:
        return f"{self.name or 'a message'} (requestId {self.request_id}, line {self.line})"


@attrs.define(eq=False, kw_only=True)
class Leg:
    """One call leg of an interaction, known by its CTI id."""

    nativeid: str
    #: the states it may be in now
    states: frozenset[str] = ANY_LEG
    #: the bridge's id of its conversation destination, once created
    bridge_id: str | None = None
    #: its conversation destination's target, once created
    target: str | None = None
    disposed: bool = False


@attrs.define(eq=False, kw_only=True)
class Destination:
    """The lifecycle (S-LIFE-1) of one destination, as the messages tell it."""

    target: str
    #: the first word of its messages' names: "interaction", "conversation",
    #: "cti" (the control destination), "session", "channelgroup", "channel"
    kind: str
    #: the target of the interaction it belongs to (itself for an interaction
    #: and for the destinations above interactions)
    group: str
    #: a channel's type (D-CG-1): telephony, chat or email
    channel_type: str = ""
    #: the leg of a conversation destination
    nativeid: str | None = None
    #: init queries received and not answered yet
    init_asked: int = 0
    initialized: bool = False
    disposed: bool = False


@attrs.define(eq=False, kw_only=True)
class InteractionFacts:
    """What the checker knows of one interaction."""

    target: str
    #: the top-level state; None while unknown (before init, or after an
    #: event that reported an impossible move)
    top: str | None = None
    legs: dict[str, Leg] = attrs.field(factory=dict)
    primary: str | None = None
    consult: str | None = None
    #: legs listed by the last init response and not created (D-CC-3)
    init_pending: set[str] = attrs.field(factory=set)
    #: legs named by a consult response or an interaction.consult event and
    #: not created (S-CC-1, D-CC-4)
    creatable: set[str] = attrs.field(factory=set)

    def leg(self, nativeid: str) -> Leg:
        found = self.legs.get(nativeid)
        if found is None:
            found = self.legs[nativeid] = Leg(nativeid=nativeid)
        return found

    def leg_states(self, nativeid: str | None) -> frozenset[str]:
        if nativeid is None or nativeid not in self.legs:
            return ANY_LEG
        return self.legs[nativeid].states

    def states(self) -> frozenset[str]:
        """Every state of the interaction machine it may be in now. A
        consult being placed (STARTED.requested) is left out: while it
        executes no other request does (D-SERIAL)."""
        if self.top is None:
            return frozenset(INTERACTION_STATES)
        if self.top != STARTED:
            return frozenset({self.top})
        consult = self.leg_states(self.consult) if self.consult is not None else ENDED_LEG
        primary = self.leg_states(self.primary)
        found: set[str] = set()
        if consult & RINGING_LEG:
            found.add(S_RINGING)
        if consult & CONNECTED_LEG:
            found.update(S_CONNECTED)
        # The consult leg ended (D-CONSULT-END), or the primary did and the
        # connected consult leg took its place (D-PRIMARY-LOSS).
        if ENDED in consult or (ENDED in primary and consult & CONNECTED_LEG):
            found.add(S_NONE)
        return frozenset(found)

    def live_now(self, nativeid: str) -> None:
        """A message says the leg is not ENDED now (a consult response naming
        it, an init response listing it as consult, interaction.consult). Only
        for a leg whose conversation events are not followed, in a trace that
        shows the switch: it stays so until a switch event may end it
        (:meth:`may_have_ended`)."""
        leg = self.leg(nativeid)
        if leg.states != ENDED_LEG:
            leg.states = (leg.states & LIVE_LEG) or LIVE_LEG

    def may_have_ended(self, call: str | None, tracked: set[str]) -> bool:
        """A switch event that may end ``call`` (every leg when None): a leg
        whose conversation events are not followed is unknown again. True
        when a leg changed."""
        changed = False
        for leg in self.legs.values():
            if call not in (None, leg.nativeid) or leg.nativeid in tracked:
                continue
            if leg.states not in (ANY_LEG, ENDED_LEG):
                leg.states = ANY_LEG
                changed = True
        return changed

    def promote_consult(self) -> None:
        """D-PRIMARY-LOSS: the consult leg becomes the primary."""
        if self.consult is not None:
            self.primary, self.consult = self.consult, None

    def forget_states(self) -> None:
        """What the messages told may be stale (a connection dropped): the
        state is unknown until the next init or event; ENDED legs stay ENDED."""
        self.top = None
        for leg in self.legs.values():
            if leg.states != ENDED_LEG:
                leg.states = ANY_LEG

    def all_legs_ended(self, tracked: set[str]) -> None:
        """The interaction ENDED: no call leg is left. Legs whose own
        conversation events are followed (``tracked``) keep what those say."""
        for leg in self.legs.values():
            if leg.nativeid not in tracked:
                leg.states = ENDED_LEG


def tracked_legs(destinations: dict[str, Destination], facts: InteractionFacts) -> set[str]:
    """Legs whose conversation events are followed: their conversation
    destination is initialized and not disposed (S-LIFE-2, D-LIFE-4)."""
    found = set()
    for leg in facts.legs.values():
        dest = destinations.get(leg.target) if leg.target is not None else None
        if dest is not None and dest.initialized and not dest.disposed:
            found.add(leg.nativeid)
    return found


def register(
    destinations: dict[str, Destination], facts: InteractionFacts, bridge_id: str, nativeid: str, target: str
) -> None:
    """A successful createconversation: the leg is created (D-CC-3) and its
    conversation destination is ``target`` (D-TARGET)."""
    leg = facts.leg(nativeid)
    facts.init_pending.discard(nativeid)
    facts.creatable.discard(nativeid)
    if leg.bridge_id is not None or target in destinations:
        return
    leg.bridge_id, leg.target = bridge_id, target
    destinations[target] = Destination(
        target=target, kind="conversation", group=facts.target, nativeid=nativeid
    )


def dispose(destinations: dict[str, Destination], facts: InteractionFacts, dest: Destination) -> None:
    """D-LIFE-4; disposing an interaction disposes its conversations. A
    disposed conversation sends no events: its leg is no longer followed."""
    dest.disposed = True
    for leg in facts.legs.values():
        if dest.kind == "interaction" or leg.nativeid == dest.nativeid:
            if leg.target is not None:
                leg.disposed = True
                destinations[leg.target].disposed = True
            if leg.states != ENDED_LEG:
                leg.states = ANY_LEG

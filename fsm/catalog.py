"""The message catalog: every query and request the bridge may send, as data.

Each :class:`RequestSpec` names the properties the message takes (an attrs
class the strict converter structures, D-BAD), the machine trigger it fires,
the named guards beyond the state check (each with its rule ID), the switch
operation it asks for and the condition under which that operation counts
as done. The engine, the docs and the trace checker read this one table.

Requests the seed does not define take their names from the protocol
family: ``interaction.request.accept`` ... (generic interaction destination)
and ``conversation.request.*`` (conversation destination). The spec gives
their "valid when" columns no rule ID; they are cited here as ``D-GENERIC``
and ``D-CONV``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

import attrs

from fsm.errors import Refusal
from fsm.machines import ALERTING, DIALING, ENDED, HELD, INITIALIZED, S_PRIMARY, STARTED, TALKING
from fsm.messages import QUERY, REQUEST, Headers, copy_data, count_keys
from fsm.model import Conversation, Interaction, Pending
from fsm.policy import Policy


@attrs.frozen(kw_only=True)
class NoProperties:
    """A message that takes no properties."""


@attrs.frozen(kw_only=True)
class ConsultProperties:
    destination: str


@attrs.frozen(kw_only=True)
class CreateConversationProperties:
    id: str
    nativeid: str


@attrs.frozen(kw_only=True)
class DestinationProperties:
    destination: str


@attrs.frozen(kw_only=True)
class DtmfProperties:
    digits: str


#: Properties made of free key -> string pairs (setdata, complete).
FreeProperties = dict[str, str]


class GuardContext(NamedTuple):
    """What a request guard may look at. A named tuple: one is made for
    every request that has guards, and a tuple is the cheapest to make."""

    interaction: Interaction
    conversation: Conversation | None
    properties: Any
    policy: Policy


class Valid(NamedTuple):
    """A well-formed query or request of the catalog. ``properties`` are the
    body keys its spec reads (D-ENV: others are ignored), ``props`` the same
    structured as the spec says (see :func:`fsm.catalog.read_properties`).
    A named tuple, not an attrs class: it lives from intake to execution
    only, and one is made per request."""

    headers: Headers
    spec: RequestSpec
    properties: dict[str, str]
    props: Any


@attrs.frozen
class Guard:
    """A named precondition: the rule it enforces and the check, which
    returns the reason for refusing or None."""

    name: str
    rule: str
    check: Callable[[GuardContext], str | None]


_DTMF = re.compile(r"[0-9*#A-D]+")


def _destination_given(ctx: GuardContext) -> str | None:
    if not ctx.properties.destination.strip():
        return "the destination is empty; give the number to call"
    return None


def _leg_room(ctx: GuardContext) -> str | None:
    if len(ctx.interaction.legs) >= ctx.policy.max_legs:
        return (
            f"the interaction already has {len(ctx.interaction.legs)} call legs, "
            f"the limit is {ctx.policy.max_legs} (policy max_legs)"
        )
    return None


def _digits_valid(ctx: GuardContext) -> str | None:
    digits = ctx.properties.digits
    if not _DTMF.fullmatch(digits):
        return f"digits {digits!r} must be one or more of 0-9, *, #, A-D"
    return None


def _data_room(ctx: GuardContext) -> str | None:
    data = ctx.interaction.data
    added = sum(1 for key in ctx.properties if key not in data)
    if not added:
        return None
    held = count_keys(data)
    if held + added > ctx.policy.max_data_keys:
        return (
            f"the interaction data would hold {held + added} keys, "
            f"the limit is {ctx.policy.max_data_keys} (policy max_data_keys)"
        )
    return None


def _nativeid_known(ctx: GuardContext) -> str | None:
    nativeid = ctx.properties.nativeid
    if nativeid not in ctx.interaction.legs:
        return f"nativeid {nativeid!r} names no call leg of this interaction"
    return None


def _conversation_id_valid(ctx: GuardContext) -> str | None:
    bridge_id = ctx.properties.id
    if not bridge_id:
        return "the conversation id is empty"
    if "." in bridge_id:
        return f"conversation id {bridge_id!r} contains a '.', which would break its target (D-TARGET)"
    return None


def _registration_consistent(ctx: GuardContext) -> str | None:
    bridge_id, nativeid = ctx.properties.id, ctx.properties.nativeid
    for leg in ctx.interaction.legs.values():
        if leg.bridge_id == bridge_id and leg.call != nativeid:
            return f"conversation id {bridge_id!r} is already registered for nativeid {leg.call!r}"
    leg = ctx.interaction.legs[nativeid]
    if leg.bridge_id is not None and leg.bridge_id != bridge_id:
        return f"nativeid {nativeid!r} is already registered as conversation {leg.bridge_id!r}"
    return None


def _not_disposed(ctx: GuardContext) -> str | None:
    leg = ctx.interaction.legs[ctx.properties.nativeid]
    if leg.lifecycle == "DISPOSED":
        return f"the conversation of nativeid {leg.call!r} was disposed"
    return None


def _initialized(ctx: GuardContext) -> str | None:
    dest = ctx.conversation or ctx.interaction
    if dest.lifecycle != INITIALIZED:
        return f"{dest.target} is not initialized"
    return None


def _creation_allowed(ctx: GuardContext) -> str | None:
    nativeid = ctx.properties.nativeid
    leg = ctx.interaction.legs[nativeid]
    if leg.bridge_id == ctx.properties.id:
        return None  # re-registration (D-CC-3)
    if nativeid in ctx.interaction.init_pending or nativeid in ctx.interaction.creatable:
        return None
    return (
        f"createconversation for {nativeid!r} is allowed only while the interaction "
        "initializes or after a successful consult"
    )


GUARDS: Final[dict[str, Guard]] = {
    g.name: g
    for g in (
        Guard("destination_given", "D-CONS-2", _destination_given),
        Guard("leg_room", "D-BOUND", _leg_room),
        Guard("blind_destination_given", "D-CONV", _destination_given),
        Guard("digits_valid", "D-CONV", _digits_valid),
        Guard("data_room", "D-DATA", _data_room),
        Guard("conversation_id_valid", "D-CC-2", _conversation_id_valid),
        Guard("nativeid_known", "D-CC-2", _nativeid_known),
        Guard("registration_consistent", "D-CC-3", _registration_consistent),
        Guard("conversation_not_disposed", "D-LIFE-4", _not_disposed),
        Guard("creation_allowed", "S-CC-1", _creation_allowed),
        Guard("initialized", "D-LIFE-5", _initialized),
    )
}


def first_refusal(guards: Iterable[Guard], context: GuardContext) -> Refusal | None:
    """The refusal of the first of ``guards`` that refuses, in order; None
    when all pass. The engine (requests and queries) and the trace checker
    run a request's guards through this one function."""
    for guard in guards:
        reason = guard.check(context)
        if reason is not None:
            return Refusal(guard.rule, reason)
    return None


# --------------------------------------------------------------------------
# When a switch operation counts as done: name -> predicate returning True
# (SUCCESS), a Refusal (FAILURE, with its rule) or None (still waiting).

Outcome = bool | Refusal | None


def _late(reason: str) -> Refusal:
    return Refusal("D-ASYNC", reason)


def _answered(i: Interaction, p: Pending) -> Outcome:
    if i.top == STARTED:
        return True
    return _late("the call ended before it was answered") if i.top == ENDED else None


def _interaction_ended(i: Interaction, p: Pending) -> Outcome:
    return True if i.top == ENDED else None


def _conferenced(i: Interaction, p: Pending) -> Outcome:
    assert p.call is not None and p.other is not None
    primary, consult = i.legs[p.call], i.legs[p.other]
    if primary.state == ENDED:
        return _late("the primary call ended before the conference was made")
    return True if consult.state == ENDED and primary.state == TALKING else None


def _alternated(i: Interaction, p: Pending) -> Outcome:
    assert p.call is not None and p.other is not None
    active, other = i.legs[p.call], i.legs[p.other]
    if active.state == ENDED or other.state == ENDED:
        return _late("a call ended before the alternate completed")
    return True if active.state == HELD and other.state == TALKING else None


def _leg_reaches(state: str) -> Callable[[Interaction, Pending], Outcome]:
    def predicate(i: Interaction, p: Pending) -> Outcome:
        assert p.call is not None
        leg = i.legs[p.call]
        if leg.state == state:
            return True
        return _late("the call ended") if leg.state == ENDED else None

    predicate.__name__ = f"leg_reaches_{state}"
    return predicate


def _leg_named(i: Interaction, p: Pending) -> Outcome:
    """consult: done when the switch names the new leg (D-ASYNC, D-CONS-3),
    which the switch side reports itself; it fails when the primary ends
    first (D-PRIMARY-LOSS)."""
    if i.top == ENDED:
        return Refusal("D-PRIMARY-LOSS", "the primary call ended before the consult call was placed")
    return None


DONE_WHEN: Final[dict[str, Callable[[Interaction, Pending], Outcome]]] = {
    "answered": _answered,
    "interaction_ended": _interaction_ended,
    "conferenced": _conferenced,
    "alternated": _alternated,
    "leg_talking": _leg_reaches(TALKING),
    "leg_held": _leg_reaches(HELD),
    "leg_ended": _leg_reaches(ENDED),
    "leg_named": _leg_named,
}


def _consult_leg(i: Interaction) -> dict[str, Any] | None:
    """consult's response body (D-BODY): the new leg's nativeid."""
    return {"nativeid": i.consult} if i.consult else None


# --------------------------------------------------------------------------
# Which legs a switch command acts on: name -> (call, other leg, the
# command's field for the other leg).

CommandLegs = tuple[str | None, str | None, str | None]


def _the_conversation(i: Interaction, c: Conversation | None) -> CommandLegs:
    assert c is not None
    return c.call, None, None


def _primary(i: Interaction, c: Conversation | None) -> CommandLegs:
    return i.primary, None, None


def _primary_and_consult(i: Interaction, c: Conversation | None) -> CommandLegs:
    assert i.consult is not None
    return i.primary, i.consult, "consult"


def _active_and_other(i: Interaction, c: Conversation | None) -> CommandLegs:
    """S-ALT-1: the active leg is held, the other retrieved."""
    primary_active = i.state == S_PRIMARY
    active, other = (i.primary, i.consult) if primary_active else (i.consult, i.primary)
    assert other is not None
    return active, other, "other"


COMMAND_LEGS: Final[dict[str, Callable[[Interaction, Conversation | None], CommandLegs]]] = {
    "conversation": _the_conversation,
    "primary": _primary,
    "primary_and_consult": _primary_and_consult,
    "active_and_other": _active_and_other,
}


#: What a SUCCESS response's body holds: name -> builder (None: empty).
RESPONSE_BODIES: Final[dict[str, Callable[[Interaction], dict[str, Any] | None]]] = {
    "consult_leg": _consult_leg,
}


# --------------------------------------------------------------------------
# What a query answers: name -> the SUCCESS body, from its destination.


def _interaction_init(interaction: Interaction | Conversation) -> dict[str, Any]:
    """interaction.query.init (S-INIT-1..5, D-INIT-7, D-CONV-ID). It opens
    the init phase (D-CC-3) for the legs it lists: the phase lasts until each
    is created, and a re-init keeps it open for those an earlier init listed."""
    assert type(interaction) is Interaction
    state = interaction.top
    conversations: dict[str, dict[str, str]] = {}
    if state in (ALERTING, DIALING, STARTED) and interaction.primary is not None:
        conversations["primary"] = {"id": interaction.primary}
    consult = interaction.leg("consult")
    if state == STARTED and consult is not None and consult.live:
        conversations["consult"] = {"id": consult.call}
    interaction.open_init([c["id"] for c in conversations.values()])
    return {
        "interaction-state": state,
        "interaction-data": copy_data(interaction.data),
        "conversations": conversations,
    }


def _interaction_data(interaction: Interaction | Conversation) -> dict[str, Any]:
    assert type(interaction) is Interaction
    return {"interaction-data": copy_data(interaction.data)}


def _conversation_init(leg: Interaction | Conversation) -> dict[str, Any]:
    """conversation.query.init (D-CONV)."""
    assert type(leg) is Conversation
    return {"conversation-state": leg.state, "nativeid": leg.call, "role": leg.role}


QUERY_ANSWERS: Final[dict[str, Callable[[Interaction | Conversation], dict[str, Any]]]] = {
    "interaction_init": _interaction_init,
    "interaction_data": _interaction_data,
    "conversation_init": _conversation_init,
}


# --------------------------------------------------------------------------
# The catalog.


@attrs.frozen(kw_only=True)
class RequestSpec:
    """One query or request the bridge may send."""

    name: str
    #: cti.query or cti.request
    kind: str
    #: "interaction" or "conversation": the kind of destination it targets
    destination: str
    #: the attrs class its properties structure into, or FreeProperties
    properties: Any = NoProperties
    #: the trigger it fires on its destination's machine (None for queries)
    trigger: str | None = None
    #: "state" (the interaction or conversation machine) or "lifecycle"
    machine: str = "state"
    #: rule cited when the top-level state is right but the substate is not
    substate_rule: str | None = None
    #: request guards beyond the state check, in order
    guards: tuple[str, ...] = ()
    #: the switch operation it asks for
    op: str | None = None
    #: the legs its command acts on (a key of COMMAND_LEGS): the
    #: conversation's own leg for conversation requests, else the primary
    legs: str = "primary"
    #: the properties its command carries, by name
    arguments: tuple[str, ...] = ()
    #: when that operation counts as done (a key of DONE_WHEN); None: at once,
    #: or when the switch acknowledges it with a `result`
    done: str | None = None
    #: what its SUCCESS response's body holds (a key of RESPONSE_BODIES);
    #: None: an empty body
    body: str | None = None
    #: a query's answer, made from its destination (a key of QUERY_ANSWERS)
    answer: str | None = None
    #: the lifecycle trigger a query fires once answered (the init queries:
    #: init, S-LIFE-2); None: it changes nothing
    then: str | None = None

    @property
    def short(self) -> str:
        return self.name.rpartition(".")[2]


def _request(name: str, **kw: Any) -> RequestSpec:
    destination = name.partition(".")[0]
    if destination == "conversation":
        kw.setdefault("legs", "conversation")
    return RequestSpec(name=name, kind=REQUEST, destination=destination, **kw)


def _query(name: str, **kw: Any) -> RequestSpec:
    return RequestSpec(name=name, kind=QUERY, destination=name.partition(".")[0], **kw)


def read_properties(spec: RequestSpec, properties: dict[str, str]) -> Any:
    """The structured properties of an already validated request
    (a TypeError when they do not fit the spec's class)."""
    if spec.properties is FreeProperties:
        return dict(properties)
    if spec.properties is NoProperties:
        return NoProperties()
    return spec.properties(**properties)


CATALOG: Final[dict[str, RequestSpec]] = {
    spec.name: spec
    for spec in (
        _query("interaction.query.init", answer="interaction_init", then="init"),
        _query("interaction.query.data", answer="interaction_data", guards=("initialized",)),
        _query("conversation.query.init", answer="conversation_init", then="init"),
        _request("interaction.request.accept", trigger="accept", op="answer", done="answered"),
        _request("interaction.request.reject", trigger="reject", op="reject", done="interaction_ended"),
        _request(
            "interaction.request.complete",
            properties=FreeProperties,
            trigger="complete",
            guards=("data_room",),
        ),
        _request(
            "interaction.request.setdata",
            properties=FreeProperties,
            trigger="setdata",
            guards=("data_room",),
        ),
        _request("interaction.request.dispose", trigger="dispose", machine="lifecycle"),
        _request(
            "interaction.request.createconversation",
            properties=CreateConversationProperties,
            trigger="createconversation",
            guards=(
                "conversation_id_valid",
                "nativeid_known",
                "registration_consistent",
                "conversation_not_disposed",
                "creation_allowed",
            ),
        ),
        _request(
            "interaction.request.consult",
            properties=ConsultProperties,
            trigger="consult",
            substate_rule="D-CONS-2",
            guards=("destination_given", "leg_room"),
            op="consult",
            arguments=("destination",),
            done="leg_named",
            body="consult_leg",
        ),
        _request(
            "interaction.request.consulttransfer",
            trigger="consulttransfer",
            op="transfer",
            legs="primary_and_consult",
            done="interaction_ended",
        ),
        _request(
            "interaction.request.consultconference",
            trigger="consultconference",
            op="conference",
            legs="primary_and_consult",
            done="conferenced",
        ),
        _request(
            "interaction.request.alternate",
            trigger="alternate",
            op="alternate",
            legs="active_and_other",
            done="alternated",
        ),
        _request("conversation.request.answer", trigger="answer", op="answer", done="leg_talking"),
        _request("conversation.request.release", trigger="release", op="release", done="leg_ended"),
        _request("conversation.request.hold", trigger="hold", op="hold", done="leg_held"),
        _request("conversation.request.retrieve", trigger="retrieve", op="retrieve", done="leg_talking"),
        _request(
            "conversation.request.blindtransfer",
            properties=DestinationProperties,
            trigger="blindtransfer",
            guards=("blind_destination_given",),
            op="blindtransfer",
            arguments=("destination",),
            done="leg_ended",
        ),
        _request(
            "conversation.request.blindconference",
            properties=DestinationProperties,
            trigger="blindconference",
            guards=("blind_destination_given",),
            op="blindconference",
            arguments=("destination",),
        ),
        _request(
            "conversation.request.senddtmf",
            properties=DtmfProperties,
            trigger="senddtmf",
            guards=("digits_valid",),
            op="senddtmf",
            arguments=("digits",),
        ),
        _request("conversation.request.dispose", trigger="dispose", machine="lifecycle"),
    )
}

#: What every message without properties structures to.
NO_PROPERTIES: Final = NoProperties()
#: message name -> the body keys its attrs properties class takes
PROPERTY_KEYS: Final[dict[str, frozenset[str]]] = {
    spec.name: frozenset(field.name for field in attrs.fields(spec.properties))
    for spec in CATALOG.values()
    if attrs.has(spec.properties)
}
#: request name -> its request guards, in order (looked up once, not per message)
GUARDS_OF: Final[dict[str, tuple[Guard, ...]]] = {
    name: tuple(GUARDS[guard] for guard in spec.guards) for name, spec in CATALOG.items()
}

#: Names of the events the client sends, for checkers and docs.
INTERACTION_EVENTS: Final = (
    "interaction.alerting",
    "interaction.dialing",
    "interaction.started",
    "interaction.ended",
    "interaction.completed",
    "interaction.consult",
    "interaction.datachanged",
)
CONVERSATION_EVENTS: Final = (
    "conversation.dialing",
    "conversation.alerting",
    "conversation.talking",
    "conversation.held",
    "conversation.ended",
)
CHANNEL_EVENTS: Final = ("interaction.created",)

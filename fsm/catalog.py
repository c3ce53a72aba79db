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
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import attrs

from fsm.errors import Refusal
from fsm.machines import (
    ALERTING,
    C_STARTED,
    DIALING,
    ENDED,
    HELD,
    INITIALIZED,
    S_PRIMARY,
    STARTED,
    TALKING,
    top,
)
from fsm.machines import DISPOSED as DISPOSED_CHANNEL
from fsm.machines import INACTIVE as INACTIVE_CHANNEL
from fsm.machines import NOTREADY as NOTREADY_CHANNEL
from fsm.machines import READY as READY_CHANNEL
from fsm.machines import UNAVAILABLE as UNAVAILABLE_CHANNEL
from fsm.messages import QUERY, REQUEST, WIRE, Headers, copy_data, count_keys, register_wire_names, wire_name
from fsm.model import Conversation, Interaction, Pending
from fsm.policy import Policy

if TYPE_CHECKING:
    from fsm.state import EngineState
    from fsm.tree import Channel, ChannelGroup, Control, Device, Session


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


@attrs.frozen(kw_only=True)
class SessionInitProperties:
    """session.query.init (F-SESS-1; the booleans are optional, D-SESS-1)."""

    name: str
    chat: bool = False
    email: bool = False
    callback: bool = False


@attrs.frozen(kw_only=True)
class ValidateLoginProperties:
    """cti.request.validatelogin (D-CTRL-2)."""

    agent: str
    password: str | None = None
    end_point: str | None = attrs.field(default=None, metadata={WIRE: "end-point"})


@attrs.frozen(kw_only=True)
class AgentProperties:
    """cti.query.agent (D-CTRL-2)."""

    agent: str


@attrs.frozen(kw_only=True)
class NotReadyProperties:
    """channel.request.notready (D-CH-1: ``reason`` optional)."""

    reason: str = ""


for _cls in (SessionInitProperties, ValidateLoginProperties, AgentProperties, NotReadyProperties):
    register_wire_names(_cls)


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
    check: Callable[[Any], str | None]


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


# --------------------------------------------------------------------------
# Names this client invents where the family's pages are silent (D-CTRL-1,
# D-SESS-2, D-CG-1, D-CH-1): swap them here for a bridge that differs.

#: the one channel group id of a session (D-SESS-2)
GROUP_ID: Final = "G1"
#: the session's one state in its init response (D-SESS-2)
SESSION_STATE: Final = "LOGGEDIN"
#: end-points of the unsupported media channels: AGENT + suffix (D-CG-1)
MEDIA_CHANNELS: Final = (("chat", "-chat"), ("email", "-email"))
#: the capabilities a switch driver declares by default: all the telephony
#: ones; chat and email are false, this client has no media channels (D-CTRL-1, D-UCH)
CAPABILITIES: Final = {
    "channel-groups-supported": True,
    "telephony": True,
    "consult": True,
    "consulttransfer": True,
    "consultconference": True,
    "alternate": True,
    "blindtransfer": True,
    "blindconference": True,
    "senddtmf": True,
    "chat": False,
    "email": False,
}


class TreeContext(NamedTuple):
    """What a guard of a control, session, channel group or channel message
    may look at: the engine's shared state, the destination (None for a
    session not yet created), the channel's device and the properties."""

    state: EngineState
    dest: Control | Session | ChannelGroup | Channel | None
    device: Device | None
    properties: Any


def _login_known(ctx: TreeContext) -> str | None:
    """D-CTRL-2: the directory knows the agent, and the end-point when given."""
    props = ctx.properties
    agent = ctx.state.directory.get(props.agent)
    if agent is None:
        return f"agent {props.agent!r} is unknown (not in the agent directory)"
    if props.end_point is not None and props.end_point != agent.end_point:
        return f"end-point {props.end_point!r} is unknown for agent {props.agent!r}"
    return None


def _agent_known(ctx: TreeContext) -> str | None:
    if ctx.state.directory.get(ctx.properties.agent) is None:
        return f"agent {ctx.properties.agent!r} is unknown (not in the agent directory)"
    return None


def _same_agent(ctx: TreeContext) -> str | None:
    """D-LIFE-5: a repeated session init names the session's agent."""
    session = ctx.dest
    assert session is not None
    agent = getattr(session, "agent", None)
    if agent is not None and ctx.properties.name != agent:
        return f"{session.target} is agent {agent!r}'s session, not {ctx.properties.name!r}'s"
    return None


def _client_started(ctx: TreeContext) -> str | None:
    status = ctx.state.control.state
    if status != C_STARTED:
        return f"client not started: its status is {status}"
    return None


def _session_agent_known(ctx: TreeContext) -> str | None:
    if ctx.state.directory.get(ctx.properties.name) is None:
        return f"agent {ctx.properties.name!r} is unknown (not in the agent directory)"
    return None


def _one_session_per_agent(ctx: TreeContext) -> str | None:
    """This client keeps one session per agent: a second desktop's session
    (D-SESS-1) is refused until interactions have a destination per session."""
    name = ctx.properties.name
    session = ctx.state.agent_sessions.get(name)
    if session is not None:
        return (
            f"agent {name!r} is already logged in as session {session}; "
            "this client does not support a second session of one agent"
        )
    return None


def _supported_channel(ctx: TreeContext) -> str | None:
    channel = ctx.dest
    if getattr(channel, "supported", True):
        return None
    return f"{getattr(channel, 'type', '')} channels are not supported by this client (only dispose)"


def _no_live_interaction(ctx: TreeContext) -> str | None:
    device = ctx.device
    if device is None:
        return None
    for interaction_id in device.interactions:
        interaction = ctx.state.interactions[interaction_id]
        if interaction.top in (ALERTING, DIALING, STARTED):
            return f"the channel has a live interaction ({interaction.id} is {interaction.top})"
    return None


def _dial_destination_given(ctx: TreeContext) -> str | None:
    if not ctx.properties.destination.strip():
        return "the destination is empty; give the number to call"
    return None


#: Guards of control, session, channel group and channel messages.
TREE_GUARDS: Final[dict[str, Guard]] = {
    g.name: g
    for g in (
        Guard("login_known", "D-CTRL-2", _login_known),
        Guard("agent_known", "D-CTRL-2", _agent_known),
        Guard("same_agent", "D-LIFE-5", _same_agent),
        Guard("client_started", "D-CTRL-3", _client_started),
        Guard("session_agent_known", "D-SESS-1", _session_agent_known),
        Guard("one_session_per_agent", "D-SESS-1", _one_session_per_agent),
        Guard("supported_channel", "F-UCH-1", _supported_channel),
        Guard("no_live_interaction", "D-CH-1", _no_live_interaction),
        Guard("logout_no_live_interaction", "D-SESS-2", _no_live_interaction),
        Guard("dial_destination_given", "D-TCH-1", _dial_destination_given),
    )
}

#: kind -> the guards that a query creating a destination of that kind runs
#: when its target names none yet (session.query.init, D-CTRL-3, D-SESS-1)
CREATION_GUARDS: Final[dict[str, tuple[str, ...]]] = {
    "session": ("client_started", "session_agent_known", "one_session_per_agent"),
}


def switch_refusal(spec: RequestSpec, status: str) -> Refusal | None:
    """D-CTRL-3: a request whose row asks the switch is refused while the
    client's status is not started, with the status as the reason."""
    if spec.op is not None and status != C_STARTED:
        return Refusal("D-CTRL-3", f"the client's status is {status}")
    return None


def first_refusal(guards: Iterable[Guard], context: Any) -> Refusal | None:
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


#: What a dial's SUCCESS body holds: the new interaction's id, as placed in
#: targets (D-BODY, D-TARGET).
def _dialed(i: Interaction) -> dict[str, Any] | None:
    return {"interactionid": i.target.rpartition(".")[2]}


#: What a SUCCESS response's body holds: name -> builder (None: empty).
RESPONSE_BODIES: Final[dict[str, Callable[[Interaction], dict[str, Any] | None]]] = {
    "consult_leg": _consult_leg,
    "dialed": _dialed,
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
# Control, session, channel group and channel: when a device request is done
# (D-DONE: the agent event), and what their queries answer.


def _device_reaches(*states: str) -> Callable[[Device], Outcome]:
    def predicate(device: Device) -> Outcome:
        if device.state in states:
            return True
        if device.state == DISPOSED_CHANNEL:
            return Refusal("D-CH-1", "the switch removed the device")
        if device.state == UNAVAILABLE_CHANNEL:
            return Refusal("F-CH-1", "another agent logged into the device")
        return None

    predicate.__name__ = f"device_reaches_{'_'.join(states)}"
    return predicate


def _dial_named(device: Device) -> Outcome:
    """dial: done when the switch names the new leg (D-TCH-1), which the
    switch side reports itself."""
    if device.state == DISPOSED_CHANNEL:
        return Refusal("D-CH-1", "the switch removed the device")
    return None


DEVICE_DONE_WHEN: Final[dict[str, Callable[[Device], Outcome]]] = {
    "channel_active": _device_reaches(NOTREADY_CHANNEL, READY_CHANNEL),
    "channel_inactive": _device_reaches(INACTIVE_CHANNEL),
    "channel_ready": _device_reaches(READY_CHANNEL),
    "channel_notready": _device_reaches(NOTREADY_CHANNEL),
    "dial_named": _dial_named,
}


def _capabilities(ctx: TreeContext) -> dict[str, Any]:
    return dict(ctx.state.capabilities)


def _agent(ctx: TreeContext) -> dict[str, Any]:
    agent = ctx.state.directory.get(ctx.properties.agent)
    assert agent is not None
    return {"agent": agent.agent, "name": agent.name, "end-point": agent.end_point}


def _session_init(ctx: TreeContext) -> dict[str, Any]:
    """D-SESS-2: one channel group, by its id."""
    return {"session-state": SESSION_STATE, "channel-groups": [{"id": GROUP_ID}]}


def _group_init(ctx: TreeContext) -> dict[str, Any]:
    """F-CG-1, D-CG-1: the group's channels, telephony first."""
    group = ctx.dest
    assert group is not None
    channels = []
    for target in getattr(group, "channels", ()):
        channel = ctx.state.destinations[target]
        channels.append({"end-point": channel.end_point, "type": channel.type})  # type: ignore[union-attr]
    return {"channels": channels}


def _channel_init(ctx: TreeContext) -> dict[str, Any]:
    """D-CH-1: the device's state, and its interactions that are live or
    that this channel already showed (they are then shown by it)."""
    channel = ctx.dest
    device = ctx.device
    if device is None or not getattr(channel, "supported", False):
        return {"channel-state": INACTIVE_CHANNEL, "ready-state": None}
    assert channel is not None
    state = device.state
    ready = state.rpartition(".")[2] if state in (NOTREADY_CHANNEL, READY_CHANNEL) else None
    listed = []
    shown = channel.shown  # type: ignore[union-attr]
    interactions = ctx.state.interactions
    for interaction_id in device.interactions:
        interaction = interactions[interaction_id]
        if interaction.target.startswith(f"{channel.target}.") and (
            interaction.top in (ALERTING, DIALING, STARTED) or interaction_id in shown
        ):
            shown[interaction_id] = None
            listed.append(interaction.target.rpartition(".")[2])
    return {"channel-state": top(state), "ready-state": ready, "interactions": listed}


TREE_ANSWERS: Final[dict[str, Callable[[TreeContext], dict[str, Any]]]] = {
    "capabilities": _capabilities,
    "agent": _agent,
    "session_init": _session_init,
    "group_init": _group_init,
    "channel_init": _channel_init,
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
    #: the event that follows its SUCCESS response (the status request:
    #: cti.status, F-CTRL-2); None: none
    then_event: str | None = None
    #: the kind of destination it creates when its target names none yet
    #: (session.query.init: "session", D-CTRL-3); None: it needs one
    creates: str | None = None

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
        # The processor control destination (F-CTRL-*, D-CTRL-*).
        _request("cti.request.status", trigger="status", then_event="status"),
        _query("cti.query.capabilities", answer="capabilities"),
        _request(
            "cti.request.validatelogin",
            properties=ValidateLoginProperties,
            trigger="validatelogin",
            guards=("login_known",),
        ),
        _query("cti.query.agent", properties=AgentProperties, answer="agent", guards=("agent_known",)),
        # Sessions, channel groups, channels (F-SESS-*, F-CG-1, F-CH-*, D-CH-1, F-TCH-1).
        _query(
            "session.query.init",
            properties=SessionInitProperties,
            answer="session_init",
            then="init",
            guards=("same_agent",),
            creates="session",
        ),
        _request(
            "session.request.logout",
            trigger="logout",
            guards=("logout_no_live_interaction",),
            op="logout",
            done="channel_inactive",
        ),
        _request("session.request.dispose", trigger="dispose", machine="lifecycle"),
        _query("channelgroup.query.init", answer="group_init", then="init"),
        _request("channelgroup.request.dispose", trigger="dispose", machine="lifecycle"),
        _query("channel.query.init", answer="channel_init", then="init"),
        _request(
            "channel.request.activate",
            trigger="activate",
            guards=("supported_channel",),
            op="login",
            done="channel_active",
        ),
        _request(
            "channel.request.deactivate",
            trigger="deactivate",
            guards=("supported_channel", "no_live_interaction"),
            op="logout",
            done="channel_inactive",
        ),
        _request(
            "channel.request.ready",
            trigger="ready",
            guards=("supported_channel",),
            op="ready",
            done="channel_ready",
        ),
        _request(
            "channel.request.notready",
            properties=NotReadyProperties,
            trigger="notready",
            guards=("supported_channel",),
            op="notready",
            arguments=("reason",),
            done="channel_notready",
        ),
        _request(
            "channel.request.dial",
            properties=DestinationProperties,
            trigger="dial",
            guards=("supported_channel", "dial_destination_given"),
            op="dial",
            arguments=("destination",),
            done="dial_named",
            body="dialed",
        ),
        _request("channel.request.dispose", trigger="dispose", machine="lifecycle"),
    )
}

#: What every message without properties structures to.
NO_PROPERTIES: Final = NoProperties()
#: message name -> the body keys its attrs properties class takes
PROPERTY_KEYS: Final[dict[str, frozenset[str]]] = {
    spec.name: frozenset(wire_name(field) for field in attrs.fields(spec.properties))
    for spec in CATALOG.values()
    if attrs.has(spec.properties)
}
#: request name -> its request guards, in order (looked up once, not per message)
GUARDS_OF: Final[dict[str, tuple[Guard, ...]]] = {
    name: tuple((GUARDS | TREE_GUARDS)[guard] for guard in spec.guards) for name, spec in CATALOG.items()
}
#: kind -> the guards of creating a destination of that kind, looked up once
CREATION_GUARDS_OF: Final[dict[str, tuple[Guard, ...]]] = {
    kind: tuple(TREE_GUARDS[guard] for guard in names) for kind, names in CREATION_GUARDS.items()
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
CHANNEL_EVENTS: Final = (
    "interaction.created",
    "channel.activated",
    "channel.deactivated",
    "channel.ready",
    "channel.notready",
    "channel.unavailable",
    "channel.available",
    "channel.disposed",
)
#: channel machine trigger -> the event that reports its change on every
#: initialized channel destination of the device (D-CH-1, F-CH-2)
CHANNEL_EVENT_OF: Final = {
    "agent_loggedin": "channel.activated",
    "agent_loggedout": "channel.deactivated",
    "agent_ready": "channel.ready",
    "agent_notready": "channel.notready",
    "agent_taken": "channel.unavailable",
    "agent_free": "channel.available",
    "agent_removed": "channel.disposed",
}
#: The events an unsupported channel may send (F-UCH-1).
UNSUPPORTED_CHANNEL_EVENTS: Final = CHANNEL_EVENTS[1:3] + CHANNEL_EVENTS[5:]
CONTROL_EVENTS: Final = ("cti.status",)

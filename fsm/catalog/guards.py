"""Named preconditions of requests (each with its rule ID), what they may
look at, and the one function that runs them (``first_refusal``)."""

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
    INITIALIZED,
    STARTED,
)
from fsm.messages import count_keys
from fsm.model import (
    Conversation,
    ConversationDestination,
    Interaction,
    InteractionDestination,
    InteractionView,
)
from fsm.policy import Policy

if TYPE_CHECKING:
    from fsm.catalog.rows import RequestSpec
    from fsm.state import EngineState
    from fsm.tree import Channel, ChannelGroup, Control, Device, Session


class GuardContext(NamedTuple):
    """What a request guard may look at. A named tuple: one is made for
    every request that has guards, and a tuple is the cheapest to make."""

    interaction: Interaction
    #: the leg a conversation request acts on
    conversation: Conversation | None
    properties: Any
    policy: Policy
    #: the destination the message was sent to: its lifecycle, and for an
    #: interaction's its conversation registry (one per session, D-SESS-1)
    dest: InteractionDestination | ConversationDestination | None = None


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


def _registry(ctx: GuardContext) -> InteractionDestination:
    """The conversation registry the request is judged by: its interaction
    destination's, in the session that sent it (D-SESS-1)."""
    dest = ctx.dest
    return dest if type(dest) is InteractionView else ctx.interaction


def _registration_consistent(ctx: GuardContext) -> str | None:
    bridge_id, nativeid = ctx.properties.id, ctx.properties.nativeid
    registry = _registry(ctx)
    for leg in registry.legs.values():
        if leg.bridge_id == bridge_id and leg.call != nativeid:
            return f"conversation id {bridge_id!r} is already registered for nativeid {leg.call!r}"
    leg = registry.legs[nativeid]
    if leg.bridge_id is not None and leg.bridge_id != bridge_id:
        return f"nativeid {nativeid!r} is already registered as conversation {leg.bridge_id!r}"
    return None


def _not_disposed(ctx: GuardContext) -> str | None:
    leg = _registry(ctx).legs[ctx.properties.nativeid]
    if leg.lifecycle == "DISPOSED":
        return f"the conversation of nativeid {leg.call!r} was disposed"
    return None


def _initialized(ctx: GuardContext) -> str | None:
    dest = ctx.dest or ctx.conversation or ctx.interaction
    if dest.lifecycle != INITIALIZED:
        return f"{dest.target} is not initialized"
    return None


def _creation_allowed(ctx: GuardContext) -> str | None:
    nativeid = ctx.properties.nativeid
    registry = _registry(ctx)
    leg = registry.legs[nativeid]
    if leg.bridge_id == ctx.properties.id:
        return None  # re-registration (D-CC-3)
    if nativeid in registry.init_pending or nativeid in registry.creatable:
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


class TreeContext(NamedTuple):
    """What a guard of a control, session, channel group or channel message
    may look at: the engine's shared state, the destination (None for a
    session not yet created), the channel's device and the properties."""

    state: EngineState
    dest: Control | Session | ChannelGroup | Channel | None
    device: Device | None
    properties: Any


def _unknown_agent(ctx: TreeContext, name: str) -> str | None:
    """D-CTRL-2: why the agent directory does not know ``name``, or None."""
    if ctx.state.directory.get(name) is None:
        return f"agent {name!r} is unknown (not in the agent directory)"
    return None


def _login_known(ctx: TreeContext) -> str | None:
    """D-CTRL-2: the directory knows the agent, and the end-point when given."""
    props = ctx.properties
    agent = ctx.state.directory.get(props.agent)
    if agent is None:
        return _unknown_agent(ctx, props.agent)
    if props.end_point is not None and props.end_point != agent.end_point:
        return f"end-point {props.end_point!r} is unknown for agent {props.agent!r}"
    return None


def _agent_known(ctx: TreeContext) -> str | None:
    return _unknown_agent(ctx, ctx.properties.agent)


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
    return _unknown_agent(ctx, ctx.properties.name)


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
        Guard("supported_channel", "F-UCH-1", _supported_channel),
        Guard("no_live_interaction", "D-CH-1", _no_live_interaction),
        Guard("logout_no_live_interaction", "D-SESS-2", _no_live_interaction),
        Guard("dial_destination_given", "D-TCH-1", _dial_destination_given),
    )
}

#: kind -> the guards that a query creating a destination of that kind runs
#: when its target names none yet (session.query.init, D-CTRL-3, D-SESS-1)
CREATION_GUARDS: Final[dict[str, tuple[str, ...]]] = {
    "session": ("client_started", "session_agent_known"),
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

"""What a request's switch operation needs and gives: the legs its command
acts on, when it counts as done, what its SUCCESS body holds, and what a
query answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from fsm.catalog.guards import TreeContext
from fsm.catalog.names import GROUP_ID, SESSION_STATE
from fsm.errors import Refusal
from fsm.machines import (
    ALERTING,
    DIALING,
    ENDED,
    HELD,
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
from fsm.messages import copy_data
from fsm.model import (
    Conversation,
    ConversationDestination,
    ConversationView,
    Interaction,
    InteractionDestination,
    InteractionView,
    Pending,
)

if TYPE_CHECKING:
    from fsm.tree import Device


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


def _interaction_init(
    interaction: Interaction, dest: InteractionDestination | ConversationDestination
) -> dict[str, Any]:
    """interaction.query.init (S-INIT-1..5, D-INIT-7, D-CONV-ID). It opens
    the init phase (D-CC-3) of the destination it is sent to for the legs it
    lists: the phase lasts until each is created there, and a re-init keeps
    it open for those an earlier init listed."""
    assert type(dest) is Interaction or type(dest) is InteractionView
    state = interaction.top
    conversations: dict[str, dict[str, str]] = {}
    if state in (ALERTING, DIALING, STARTED) and interaction.primary is not None:
        conversations["primary"] = {"id": interaction.primary}
    consult = interaction.leg("consult")
    if state == STARTED and consult is not None and consult.live:
        conversations["consult"] = {"id": consult.call}
    dest.open_init([c["id"] for c in conversations.values()])
    return {
        "interaction-state": state,
        "interaction-data": copy_data(interaction.data),
        "conversations": conversations,
    }


def _interaction_data(
    interaction: Interaction, dest: InteractionDestination | ConversationDestination
) -> dict[str, Any]:
    return {"interaction-data": copy_data(interaction.data)}


def _conversation_init(
    interaction: Interaction, dest: InteractionDestination | ConversationDestination
) -> dict[str, Any]:
    """conversation.query.init (D-CONV): the leg's state, whichever session asks."""
    assert type(dest) is Conversation or type(dest) is ConversationView
    leg = interaction.legs[dest.call]
    return {"conversation-state": leg.state, "nativeid": leg.call, "role": leg.role}


QUERY_ANSWERS: Final[
    dict[str, Callable[[Interaction, InteractionDestination | ConversationDestination], dict[str, Any]]]
] = {
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
        dest = ctx.state.under(interaction, channel.target)  # this session's destination of it (D-SESS-1)
        if dest is not None and (interaction.top in (ALERTING, DIALING, STARTED) or interaction_id in shown):
            shown[interaction_id] = None
            listed.append(dest.target.rpartition(".")[2])
    return {"channel-state": top(state), "ready-state": ready, "interactions": listed}


TREE_ANSWERS: Final[dict[str, Callable[[TreeContext], dict[str, Any]]]] = {
    "capabilities": _capabilities,
    "agent": _agent,
    "session_init": _session_init,
    "group_init": _group_init,
    "channel_init": _channel_init,
}

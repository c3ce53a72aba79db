"""The trace checker's view of the destinations above the interactions:
the control destination, sessions, channel groups and channels.

What their SUCCESS answers create (a session's init names its one channel
group, F-SESS-2; a group's init its channels, F-CG-1; a channel's init the
interactions it shows, D-CH-1), what their events may be (S-LIFE-2 for every
destination; the status event only after a status response, D-CTRL-1; an
unsupported channel's five events, F-UCH-1), and tear down (D-LIFE-4: a
dispose takes everything below).
"""

from __future__ import annotations

from typing import Any, Final

from fsm.catalog import CHANNEL_EVENTS, CONTROL_EVENTS, UNSUPPORTED_CHANNEL_EVENTS, RequestSpec
from fsm.checker.model import Destination, InteractionFacts
from fsm.checker.rules import Finding, is_text, message_body
from fsm.checker.state import TraceState
from fsm.errors import Refusal

#: the kinds of destination above the interactions (the first word of their messages)
TREE_KINDS: Final = frozenset({"cti", "session", "channelgroup", "channel"})
#: the init queries of those kinds
TREE_INITS: Final = frozenset({"session.query.init", "channelgroup.query.init", "channel.query.init"})


class TreeJudge:
    """Judges and applies what the client says of the destinations above the interactions."""

    def __init__(self, state: TraceState) -> None:
        self.state = state
        control = state.targets.control()
        state.destinations[control] = Destination(target=control, kind="cti", group=control, initialized=True)

    def judge_answer(
        self, spec: RequestSpec, message: dict[str, Any], what: str, target: str = ""
    ) -> list[Finding]:
        body = message_body(message)
        if spec.name == "session.query.init":
            groups = body.get("channel-groups")
            if not isinstance(groups, list) or len(groups) != 1 or not _has_id(groups[0]):
                return [
                    Refusal("F-SESS-2", f"{what}, but its channel-groups does not name exactly one group")
                ]
        if spec.name == "channelgroup.query.init" and not isinstance(body.get("channels"), list):
            return [Refusal("F-CG-1", f"{what} without the channels array")]
        if spec.name == "channel.request.dial":
            return self._dialed(body, what, target)
        return []

    def _dialed(self, body: dict[str, Any], what: str, channel: str) -> list[Finding]:
        """F-TCH-1, D-TCH-1, D-ORDER: a dial's SUCCESS names the new
        interaction, announced on the channel before it."""
        interaction_id = body.get("interactionid")
        if not isinstance(interaction_id, str) or not interaction_id:
            return [Refusal("D-TCH-1", f"{what} without the interactionid of the new interaction")]
        target = self.state.targets.interaction(channel, _decoded(interaction_id))
        if target not in self.state.destinations:
            return [
                Refusal(
                    "F-TCH-1",
                    f"{what} naming interaction {interaction_id}, which was not announced on "
                    f"{channel} before it",
                )
            ]
        return []

    def apply_answer(self, spec: RequestSpec, asked_target: str, message: dict[str, Any]) -> None:
        state = self.state
        body = message_body(message)
        name = spec.name
        if name == "session.query.init":
            session = state.destinations.setdefault(
                asked_target, Destination(target=asked_target, kind="session", group=asked_target)
            )
            session.initialized = True
            groups = body.get("channel-groups")
            for group in groups if isinstance(groups, list) else ():
                if _has_id(group):
                    target = state.targets.group(asked_target, group["id"])
                    state.destinations.setdefault(
                        target, Destination(target=target, kind="channelgroup", group=target)
                    )
        elif name == "channelgroup.query.init":
            self._initialized(asked_target)
            channels = body.get("channels")
            for channel in channels if isinstance(channels, list) else ():
                if isinstance(channel, dict) and is_text(channel.get("end-point")):
                    target = state.targets.channel(asked_target, channel["end-point"])
                    kind = str(channel.get("type")) if isinstance(channel.get("type"), str) else ""
                    state.destinations.setdefault(
                        target, Destination(target=target, kind="channel", group=target, channel_type=kind)
                    )
        elif name == "channel.query.init":
            self._initialized(asked_target)
            listed = body.get("interactions")
            for interaction_id in listed if isinstance(listed, list) else ():
                if is_text(interaction_id):
                    self.add_interaction(asked_target, interaction_id)
        elif name == "cti.request.status":
            state.status_answered = True
        elif spec.trigger == "dispose":
            below = f"{asked_target}."
            for dest in state.destinations.values():
                if dest.target == asked_target or dest.target.startswith(below):
                    dest.disposed = True

    def _initialized(self, target: str) -> None:
        dest = self.state.destinations.get(target)
        if dest is not None:
            dest.initialized = True

    def learn(self, spec: RequestSpec, target: str) -> bool:
        """An init query or a dispose answered SUCCESS on a destination the
        messages did not show, below a session they did: the client may have
        it all the same (an interaction offered before its channel's init is listed
        there, not announced, D-NEW, D-LIFE-3; a group or channel whose
        parent's init answer was not seen). Learn it, and the destinations
        between it and the session; False when it cannot be."""
        if spec.then != "init" and spec.trigger != "dispose":
            return False  # only an init query or a dispose may come before anything was announced
        return spec.destination in _PARENT_KIND and self._learn(target, spec.destination)

    def _learn(self, target: str, kind: str) -> bool:
        dest = self.state.destinations.get(target)
        if dest is not None:
            return dest.kind == kind and not dest.disposed
        parent_kind = _PARENT_KIND.get(kind)
        parent, _, own = target.rpartition(".")
        if parent_kind is None or not own or not self._learn(parent, parent_kind):
            return False
        if kind == "interaction":
            return self.add_interaction(parent, own)
        self.state.destinations[target] = Destination(target=target, kind=kind, group=target)
        return True

    def add_interaction(self, channel: str, interaction_id: str) -> bool:
        """D-NEW: an interaction on ``channel``; False when it was known already."""
        target = self.state.targets.interaction(channel, _decoded(interaction_id))
        if target in self.state.destinations:
            return False
        self.state.destinations[target] = Destination(target=target, kind="interaction", group=target)
        self.state.interactions[target] = InteractionFacts(target=target)
        return True

    def event(self, dest: Destination, name: str) -> list[Finding]:
        """An event on an initialized destination above the interactions."""
        if dest.kind == "cti":
            if name not in CONTROL_EVENTS:
                return [Refusal("D-CTRL-1", f"{name} is not an event of the control destination")]
            if not self.state.status_answered:
                return [Refusal("D-CTRL-1", "cti.status before any status response (F-CTRL-2)")]
            return []
        if dest.kind == "channel":
            if dest.channel_type not in ("", "telephony") and name not in UNSUPPORTED_CHANNEL_EVENTS:
                return [Refusal("F-UCH-1", f"{name} on an unsupported {dest.channel_type} channel")]
            if name not in CHANNEL_EVENTS:
                return [Refusal("D-CH-1", f"{name} is not an event of a channel")]
            return []
        return [Refusal("S-EVT-0", f"{name}: a {dest.kind} destination sends no events")]


#: a kind of destination the messages may not have shown -> the kind of its
#: parent (D-TARGET; sessions are known from their own init answer only)
_PARENT_KIND: Final = {"channelgroup": "session", "channel": "channelgroup", "interaction": "channel"}


def _has_id(group: object) -> bool:
    return isinstance(group, dict) and is_text(group.get("id"))


def _decoded(interaction_id: str) -> str:
    """The call id an ``interactionid`` encodes (D-TARGET), so that the
    target rule encodes it once again the same way."""
    return interaction_id.replace("%2E", ".").replace("%25", "%")


__all__ = ["TREE_INITS", "TREE_KINDS", "TreeJudge"]

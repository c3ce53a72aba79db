"""The reference bridge: a sans-IO processor bridge that drives any client.

It plays the bridge side of the protocol and trusts nothing the client
sends. On :meth:`ReferenceBridge.start` it plays the start-up (F-CTRL-2: the
status request; once the status event says ``started``, the capabilities
query) and then logs in the agents it is given: for each, a session init,
the channel group's init, the telephony channel's init, activate and ready
(F-SESS-1, F-CG-1, D-CH-1); interactions a channel's init lists are set up
as if announced. On ``interaction.created`` it sets up the interaction destination and
sends ``interaction.query.init``; for every conversation the snapshot lists,
and after every successful consult or ``interaction.consult`` event, it
sends ``createconversation`` and then ``conversation.query.init`` (S-INIT-6,
D-CONS-3, D-CC-4). Interaction events that arrive while the interaction's
conversation destinations are not all initialized are queued and delivered
afterwards in arrival order (S-INIT-6, bounded by D-BOUND). Every message
from the client is checked by :class:`fsm.checker.Watcher`, the same rules
``telephony-fsm check`` applies to a trace; each breach is a
:class:`Violation` output.

The agent desktop's side is :meth:`ReferenceBridge.request`: accept,
reject, consult, alternate, conference, transfer, complete, hold, retrieve,
release, DTMF, set data. Feed the client's messages to
:meth:`ReferenceBridge.receive`; both return outputs: :class:`Send` (a
message for the client), :class:`Deliver` (an event handed to the desktop)
and :class:`Violation`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

import attrs

from fsm.catalog import CHANNEL_EVENTS, CONTROL_EVENTS, CONVERSATION_EVENTS, INTERACTION_EVENTS
from fsm.checker import Violation, Watcher
from fsm.errors import Refusal
from fsm.outputs import Targets
from fsm.policy import Policy

#: requests whose late answer, after a reconnect, still counts
_LATE_PURPOSES = frozenset({"dispose", "activate", "ready", "logout", "session-dispose"})
#: what the start-up and the logins wait for (see _Pending.purpose)
_TREE_PURPOSES = frozenset(
    {
        "status",
        "capabilities",
        "session",
        "group",
        "channel",
        "activate",
        "ready",
        "logout",
        "session-dispose",
        "dial",
    }
)


#: the event names a step may wait for (adapters.session)
KNOWN_EVENTS: Final = frozenset((*CONTROL_EVENTS, *CHANNEL_EVENTS, *INTERACTION_EVENTS, *CONVERSATION_EVENTS))


@attrs.frozen
class Send:
    """A message for the client."""

    message: dict[str, Any]


@attrs.frozen
class Deliver:
    """An event from the client, handed to the agent desktop in S-INIT-6 order."""

    event: dict[str, Any]


BridgeOutput = Send | Deliver | Violation

#: desktop action -> (destination kind, message name)
ACTIONS: dict[str, tuple[str, str]] = {
    "accept": ("interaction", "interaction.request.accept"),
    "reject": ("interaction", "interaction.request.reject"),
    "consult": ("interaction", "interaction.request.consult"),
    "alternate": ("interaction", "interaction.request.alternate"),
    "conference": ("interaction", "interaction.request.consultconference"),
    "transfer": ("interaction", "interaction.request.consulttransfer"),
    "complete": ("interaction", "interaction.request.complete"),
    "setdata": ("interaction", "interaction.request.setdata"),
    "data": ("interaction", "interaction.query.data"),
    "dispose": ("interaction", "interaction.request.dispose"),
    "answer": ("conversation", "conversation.request.answer"),
    "hold": ("conversation", "conversation.request.hold"),
    "retrieve": ("conversation", "conversation.request.retrieve"),
    "release": ("conversation", "conversation.request.release"),
    "blindtransfer": ("conversation", "conversation.request.blindtransfer"),
    "blindconference": ("conversation", "conversation.request.blindconference"),
    "senddtmf": ("conversation", "conversation.request.senddtmf"),
    # on the agent's telephony channel: the new interaction appears (F-TCH-1)
    "dial": ("channel", "channel.request.dial"),
}


@attrs.define(kw_only=True)
class BridgeConversation:
    """A conversation destination the bridge created."""

    bridge_id: str
    nativeid: str
    target: str
    role: str = ""
    state: str = ""
    initialized: bool = False
    disposed: bool = False


@attrs.define(kw_only=True)
class BridgeInteraction:
    """An interaction destination, as the bridge knows it."""

    id: str
    target: str
    state: str = ""
    data: dict[str, Any] = attrs.field(factory=dict)
    initialized: bool = False
    conversations: dict[str, BridgeConversation] = attrs.field(factory=dict)
    #: S-INIT-6: interaction events held until its conversations initialize
    queue: list[dict[str, Any]] = attrs.field(factory=list)
    completed: bool = False

    def conversation(self, role: str) -> BridgeConversation | None:
        """The live conversation destination of a role (the newest one)."""
        for conversation in reversed(self.conversations.values()):
            if conversation.role == role and not conversation.disposed and conversation.state != "ENDED":
                return conversation
        return None

    @property
    def settled(self) -> bool:
        """Every conversation destination created and initialized (S-INIT-6)."""
        return all(c.initialized or c.disposed for c in self.conversations.values())


@attrs.define(kw_only=True)
class BridgeSession:
    """An agent's session, as the bridge made it."""

    target: str
    agent: str
    group: str = ""
    #: its telephony channels' targets
    channels: list[str] = attrs.field(factory=list)
    #: the channel is active and ready: the agent takes calls
    ready: bool = False
    #: its logout was asked: a re-init after a reconnect does not log it in again
    logging_out: bool = False
    disposed: bool = False


@attrs.define(kw_only=True)
class _Pending:
    target: str
    name: str
    interaction_id: str
    #: what to do with the response: "init", "create", "conv-init", "consult",
    #: "desktop", "dispose"; and for the start-up and logins: "status",
    #: "capabilities", "session", "group", "channel", "activate", "ready",
    #: "logout", "session-dispose"
    purpose: str
    conversation: str | None = None
    resent: bool = False


class ReferenceBridge:
    def __init__(
        self,
        targets: Targets | None = None,
        policy: Policy | None = None,
        *,
        logins: tuple[str, ...] = ("agent-1",),
        dispose_completed: bool = True,
    ) -> None:
        self.targets = targets or Targets()
        self.policy = policy or Policy()
        self.watcher = Watcher(self.policy, self.targets)
        self.dispose_completed = dispose_completed
        #: the agents it logs in once the client has started (F-CTRL-2)
        self.logins = logins
        #: the client's status as its last status event said (D-CTRL-1)
        self.status = ""
        self.sessions: dict[str, BridgeSession] = {}
        self._sessions_made = 0
        #: the logout was asked: no agent is logged in any more
        self.logging_out = False
        self.interactions: dict[str, BridgeInteraction] = {}
        self.pending: dict[str, _Pending] = {}
        self.violations: list[Violation] = []
        #: (request name, result, errorMessage, resent) of every desktop request
        #: answered; ``resent`` is True for a request re-sent after a reconnect
        #: that the client refused as a duplicate: it ran before the drop
        self.outcomes: list[tuple[str, str, str, bool]] = []
        #: desktop and dispose requests unanswered when the connection dropped,
        #: by requestId: re-sent once their interaction is initialized again,
        #: unless a late answer came first
        self.lost: dict[str, dict[str, Any]] = {}
        #: every message unanswered when a connection dropped: a client that
        #: keeps its state across a crash may still answer it once, late, on
        #: a later connection (its unsent answers go first)
        self.late: dict[str, _Pending] = {}
        self._messages: dict[str, dict[str, Any]] = {}
        self.sent = 0
        self.received = 0
        self.requests = 0
        self.line = 0
        self._ids = 0
        self._conversation_ids = 0
        self._out: list[BridgeOutput] = []
        #: how many events of each name the client sent (what a step waits for)
        self.events_seen: Counter[str] = Counter()

    def holds(self, wait: dict[str, Any], interaction_id: str | None, events_before: int = 0) -> bool:
        """Whether what a bridge step waits for (adapters.session) holds now:
        more events of a name than ``events_before``, or a state of the
        interaction (``interaction_id``, default the newest) or of its
        newest conversation of a role."""
        if "event" in wait:
            return self.events_seen[wait["event"]] > events_before
        interactions = self.interactions
        if interaction_id is None and interactions:
            interaction_id = list(interactions)[-1]
        interaction = interactions.get(interaction_id or "")
        if interaction is None:
            return False
        if "role" not in wait:
            return bool(interaction.state == wait["state"])
        of_role = [c for c in interaction.conversations.values() if c.role == wait["role"]]
        return bool(of_role) and of_role[-1].state == wait["state"]

    # ------------------------------------------------------------------
    # The start-up and the agents' sessions.

    def start(self) -> list[BridgeOutput]:
        """A client has connected: ask for its status (F-CTRL-2)."""
        self._out = []
        self._send("cti.request.status", self.targets.control(), None, "status")
        return self._take()

    @property
    def all_ready(self) -> bool:
        """Every agent it was given is logged in, active and ready."""
        live = [s for s in self.sessions.values() if not s.disposed]
        return len(live) == len(self.logins) and all(s.ready for s in live)

    def logout(self) -> list[BridgeOutput]:
        """Log every agent out (D-SESS-2) and dispose its session (D-LIFE-4)."""
        self._out = []
        self.logging_out = True
        for session in self.sessions.values():
            if not session.disposed:
                session.logging_out = True
                self._send("session.request.logout", session.target, None, "logout")
        return self._take()

    def _login(self) -> None:
        """F-SESS-1: a session for each agent not logged in yet (none once
        the logout was asked)."""
        if self.logging_out:
            return
        agents = {s.agent for s in self.sessions.values() if not s.disposed}
        for agent in self.logins:
            if agent in agents:
                continue
            self._sessions_made += 1
            session = BridgeSession(target=f"S{self._sessions_made}", agent=agent)
            self.sessions[session.target] = session
            self._init_session(session)

    def _init_session(self, session: BridgeSession) -> None:
        body = {"name": session.agent, "chat": False, "email": False, "callback": False}
        self._send("session.query.init", session.target, None, "session", body)

    def _tree_response(self, pending: _Pending, ok: bool, body: dict[str, Any], error: str) -> None:
        """What the bridge does next in the start-up and logins."""
        purpose = pending.purpose
        if purpose in ("activate", "ready", "logout", "dial"):
            self.outcomes.append((pending.name, "SUCCESS" if ok else "FAILURE", error, False))
        session = self.sessions.get(pending.target.partition(".")[0])
        if not ok and purpose == "logout" and session is not None:
            # the agent stays logged in at the switch; the session ends all the same
            self._send("session.request.dispose", session.target, None, "session-dispose")
            return
        if not ok:
            return
        if purpose == "capabilities":
            self._login()
        elif purpose == "session" and session is not None:
            groups = body.get("channel-groups")
            if isinstance(groups, list) and groups and isinstance(groups[0], dict):
                session.group = self.targets.group(session.target, str(groups[0].get("id")))
                self._send("channelgroup.query.init", session.group, None, "group")
        elif purpose == "group" and session is not None:
            channels = body.get("channels")
            session.channels = (
                [
                    self.targets.channel(session.group, str(c.get("end-point")))
                    for c in channels
                    if isinstance(c, dict) and c.get("type") == "telephony"
                ]
                if isinstance(channels, list)
                else []
            )
            for channel in session.channels:
                self._send("channel.query.init", channel, None, "channel")
        elif purpose == "channel" and session is not None:
            for interaction_id in body.get("interactions") or ():
                if isinstance(interaction_id, str):
                    self._set_up(pending.target, interaction_id)
            state = body.get("channel-state")
            if session.logging_out:
                return
            if state == "INACTIVE":
                self._send("channel.request.activate", pending.target, None, "activate")
            elif state == "ACTIVE" and body.get("ready-state") != "READY":
                self._send("channel.request.ready", pending.target, None, "ready")
            elif state == "ACTIVE":
                session.ready = True
        elif purpose == "activate":
            self._send("channel.request.ready", pending.target, None, "ready")
        elif purpose == "ready" and session is not None:
            session.ready = True
        elif purpose == "logout" and session is not None:
            self._send("session.request.dispose", session.target, None, "session-dispose")
        elif purpose == "session-dispose" and session is not None:
            session.disposed = True

    # ------------------------------------------------------------------
    # The desktop side.

    def request(
        self, interaction_id: str, action: str, role: str = "primary", **properties: str
    ) -> list[BridgeOutput]:
        """Send the desktop's ``action`` for an interaction (or, for
        conversation actions, its conversation of ``role``)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        if ACTIONS[action][0] == "channel":  # dial: on the agent's channel, not the interaction
            return self.dial(properties.get("destination", ""))
        self._out = []
        interaction = self.interactions.get(interaction_id)
        if interaction is None:
            raise ValueError(f"no interaction {interaction_id!r}")
        kind, name = ACTIONS[action]
        target = interaction.target
        if kind == "conversation":
            conversation = interaction.conversation(role)
            if conversation is None:
                raise ValueError(f"interaction {interaction_id} has no live {role} conversation")
            target = conversation.target
        self._send(name, target, interaction, "desktop", properties)
        return self._take()

    def dial(self, destination: str = "", agent: str | None = None) -> list[BridgeOutput]:
        """The desktop dials (F-TCH-1) on the telephony channel of ``agent``
        (default: the first agent logged in); the interaction it makes is
        announced and set up as any other."""
        self._out = []
        sessions = [s for s in self.sessions.values() if not s.disposed and s.channels]
        if agent is not None:
            sessions = [s for s in sessions if s.agent == agent]
        if not sessions:
            raise ValueError(f"no telephony channel to dial on{f' for {agent}' if agent else ''}")
        body = {"destination": destination} if destination else {}
        self._send("channel.request.dial", sessions[0].channels[0], None, "dial", body)
        return self._take()

    def connection_lost(self) -> None:
        """The connection dropped: what was pending will not be answered on
        it, but may be answered late. Desktop and dispose requests among them
        are kept to be re-sent."""
        for request_id, pending in self.pending.items():
            self.late[request_id] = pending
            if pending.purpose in ("desktop", "dispose") and request_id in self._messages:
                self.lost[request_id] = self._messages[request_id]
        self.pending.clear()
        self._messages.clear()
        self.watcher.connection_lost()
        self.status = ""

    def reinitialize(self) -> list[BridgeOutput]:
        """After a reconnect: init every live interaction again (D-LIFE-5);
        its conversations are re-registered with the same ids (D-CC-3).
        Desktop and dispose requests lost with the connection are re-sent
        with their requestId once the interaction's init is answered (by
        then a client that kept its state has sent its late answers): one
        the client already ran is refused as a duplicate (D-DUP) instead of
        running twice."""
        self._out = []
        self._send("cti.request.status", self.targets.control(), None, "status")
        for session in self.sessions.values():
            if not session.disposed:  # F-SESS-2: the agent is still logged in
                self._init_session(session)
        for interaction in self.interactions.values():
            interaction.initialized = False
            for conversation in interaction.conversations.values():
                conversation.initialized = False
            self._send("interaction.query.init", interaction.target, interaction, "init")
        self.lost = {
            request_id: message
            for request_id, message in self.lost.items()
            if self._interaction_of(message["header"]["target"]) is not None
        }
        return self._take()

    def _interaction_of(self, target: str) -> str | None:
        return next(
            (
                i.id
                for i in self.interactions.values()
                if target == i.target or target.startswith(f"{i.target}.")
            ),
            None,
        )

    def _resend_lost(self, interaction_id: str) -> None:
        for request_id, message in list(self.lost.items()):
            headers = message["header"]
            if self._interaction_of(headers["target"]) != interaction_id:
                continue
            del self.lost[request_id]
            original = self.late.get(request_id)
            self.pending[request_id] = _Pending(
                target=headers["target"],
                name=headers["name"],
                interaction_id=interaction_id,
                purpose=original.purpose if original is not None else "desktop",
                conversation=original.conversation if original is not None else None,
                resent=True,
            )
            self._messages[request_id] = message
            self.sent += 1
            self.line += 1
            self._check(self.watcher.from_bridge(message, self.line))
            self._out.append(Send(message))

    # ------------------------------------------------------------------
    # The client side.

    def receive(self, message: dict[str, Any]) -> list[BridgeOutput]:
        """A message from the client."""
        self._out = []
        self.received += 1
        self.line += 1
        self._check(self.watcher.from_client(message, self.line))
        headers = message.get("header") if isinstance(message, dict) else None
        if not isinstance(headers, dict):
            return self._take()
        if headers.get("type") == "cti.response":
            self._response(message, headers)
        elif headers.get("type") == "cti.event":
            name = headers.get("name")
            if isinstance(name, str) and name in KNOWN_EVENTS:  # bounded: names the protocol has
                self.events_seen[name] += 1
            self._event(message, headers)
        return self._take()

    def finish(self) -> list[Violation]:
        """End of the run: what is still unanswered breaks S-REQ-1."""
        self.line += 1
        found = self.watcher.finish(self.line)
        self.violations += found
        return found

    def _response(self, message: dict[str, Any], headers: dict[str, Any]) -> None:
        request_id = str(headers.get("requestId"))
        pending = self.pending.pop(request_id, None)
        if pending is None:
            pending = self.late.pop(request_id, None)
            if pending is None:
                return  # the watcher reported it
            # A late answer: it counts for a lost request not yet re-sent (and
            # for a dispose, and the login's and logout's requests, which the
            # re-init does not repeat once they ran); a re-init supersedes the
            # answers to the others.
            if self.lost.pop(request_id, None) is None and pending.purpose not in _LATE_PURPOSES:
                return
        self._messages.pop(request_id, None)
        if pending.purpose == "init":
            self._resend_lost(pending.interaction_id)
        error = str(headers.get("errorMessage", ""))
        if pending.purpose in _TREE_PURPOSES:
            body = message.get("body")
            self._tree_response(
                pending, headers.get("result") == "SUCCESS", body if isinstance(body, dict) else {}, error
            )
            return
        ran_before = pending.resent and "duplicate requestId" in error  # D-DUP
        if pending.purpose == "desktop":
            self.outcomes.append((pending.name, str(headers.get("result")), error, ran_before))
        interaction = self.interactions.get(pending.interaction_id)
        if interaction is None:
            return
        if headers.get("result") != "SUCCESS" and not (ran_before and pending.purpose == "dispose"):
            return
        body = message.get("body") if isinstance(message.get("body"), dict) else {}
        assert isinstance(body, dict)
        if pending.purpose == "init":
            self._initialized(interaction, body)
        elif pending.purpose == "create":
            assert pending.conversation is not None
            conversation = interaction.conversations[pending.conversation]
            self._send(
                "conversation.query.init", conversation.target, interaction, "conv-init", None, conversation
            )
        elif pending.purpose == "conv-init":
            assert pending.conversation is not None
            conversation = interaction.conversations[pending.conversation]
            conversation.initialized = True
            conversation.state = str(body.get("conversation-state", ""))
            conversation.role = str(body.get("role", conversation.role))
            self._flush(interaction)
        elif pending.name == "interaction.request.consult":
            nativeid = body.get("nativeid")
            if isinstance(nativeid, str):
                self._create(interaction, nativeid, "consult")
        elif pending.name == "interaction.request.dispose":
            del self.interactions[interaction.id]
        elif pending.name == "conversation.request.dispose" and pending.conversation:
            interaction.conversations[pending.conversation].disposed = True

    def _initialized(self, interaction: BridgeInteraction, body: dict[str, Any]) -> None:
        interaction.initialized = True
        interaction.state = str(body.get("interaction-state", ""))
        data = body.get("interaction-data")
        interaction.data = data if isinstance(data, dict) else {}
        listed = body.get("conversations")
        if not isinstance(listed, dict):
            return
        named = set()
        for role, item in listed.items():
            nativeid = item.get("id") if isinstance(item, dict) else None
            if isinstance(nativeid, str):
                named.add(nativeid)
                self._create(interaction, nativeid, role)
        # a re-init (D-LIFE-5) lists live legs only: the conversation
        # destination of an ended leg is initialized again by itself
        for conversation in list(interaction.conversations.values()):
            if not (conversation.initialized or conversation.disposed or conversation.nativeid in named):
                self._send(
                    "conversation.query.init",
                    conversation.target,
                    interaction,
                    "conv-init",
                    None,
                    conversation,
                )
        self._flush(interaction)

    def _create(self, interaction: BridgeInteraction, nativeid: str, role: str) -> None:
        """createconversation for a leg: a new bridge id, or the same one
        again for a leg created before (re-registration, D-CC-3)."""
        existing = [
            c for c in interaction.conversations.values() if c.nativeid == nativeid and not c.disposed
        ]
        if existing:
            conversation = existing[0]
        else:
            self._conversation_ids += 1
            bridge_id = f"conv-{self._conversation_ids}"
            conversation = BridgeConversation(
                bridge_id=bridge_id, nativeid=nativeid, target=f"{interaction.target}.{bridge_id}", role=role
            )
            interaction.conversations[bridge_id] = conversation
        properties = {"id": conversation.bridge_id, "nativeid": nativeid}
        self._send(
            "interaction.request.createconversation",
            interaction.target,
            interaction,
            "create",
            properties,
            conversation,
        )

    def _event(self, message: dict[str, Any], headers: dict[str, Any]) -> None:
        name, target = headers.get("name"), headers.get("target")
        if name == "interaction.created" and isinstance(target, str):
            self._created(target, message)
            return
        if name == "cti.status":
            body = message.get("body")
            status = body.get("status") if isinstance(body, dict) else None
            self._out.append(Deliver(message))
            if status == "started" and self.status != "started":
                self._send("cti.query.capabilities", self.targets.control(), None, "capabilities")
            self.status = str(status)
            return
        if isinstance(name, str) and name.startswith("channel."):
            self._out.append(Deliver(message))
            return
        for interaction in self.interactions.values():
            if target == interaction.target:
                if not interaction.settled:
                    if len(interaction.queue) >= self.policy.max_queued_events:
                        self._violation(
                            "D-BOUND",
                            f"more than {self.policy.max_queued_events} interaction events queued for "
                            f"{interaction.target} while its conversations initialize",
                        )
                        return
                    interaction.queue.append(message)  # S-INIT-6
                    return
                self._deliver(interaction, message)
                return
            for conversation in interaction.conversations.values():
                if target == conversation.target:
                    if isinstance(name, str) and name.startswith("conversation."):
                        conversation.state = name.rpartition(".")[2].upper()
                    self._out.append(Deliver(message))
                    if name == "conversation.ended" and conversation.role == "consult":
                        # D-CONF-1: the bridge disposes an ended consult conversation
                        self._send(
                            "conversation.request.dispose",
                            conversation.target,
                            interaction,
                            "dispose",
                            None,
                            conversation,
                        )
                    return

    def _created(self, channel: str, message: dict[str, Any]) -> None:
        body = message.get("body")
        interaction_id = body.get("interactionid") if isinstance(body, dict) else None
        if not any(channel in s.channels for s in self.sessions.values()):
            return  # the watcher reported it
        self._out.append(Deliver(message))
        if isinstance(interaction_id, str):
            self._set_up(channel, interaction_id)

    def _set_up(self, channel: str, interaction_id: str) -> None:
        """An interaction on ``channel``: its destination, and its init query."""
        if interaction_id in self.interactions:
            return
        interaction = BridgeInteraction(id=interaction_id, target=f"{channel}.{interaction_id}")
        self.interactions[interaction_id] = interaction
        self._send("interaction.query.init", interaction.target, interaction, "init")

    def _flush(self, interaction: BridgeInteraction) -> None:
        """S-INIT-6: deliver the queued events once every conversation
        destination is initialized, in the order they arrived."""
        while interaction.settled and interaction.queue:
            self._deliver(interaction, interaction.queue.pop(0))

    def _deliver(self, interaction: BridgeInteraction, message: dict[str, Any]) -> None:
        self._out.append(Deliver(message))
        name = message["header"].get("name")
        body = message.get("body")
        if name == "interaction.consult" and isinstance(body, dict):
            nativeid = body.get("nativeid")
            if isinstance(nativeid, str):
                self._create(interaction, nativeid, "consult")  # S-EVT-1, D-CC-4
        elif isinstance(name, str) and name.startswith("interaction.") and name != "interaction.datachanged":
            interaction.state = name.rpartition(".")[2].upper()
            if name == "interaction.completed" and self.dispose_completed:
                self._send("interaction.request.dispose", interaction.target, interaction, "dispose")

    # ------------------------------------------------------------------
    # Sending.

    def _send(
        self,
        name: str,
        target: str,
        interaction: BridgeInteraction | None,
        purpose: str,
        properties: dict[str, Any] | None = None,
        conversation: BridgeConversation | None = None,
    ) -> None:
        self._ids += 1
        request_id = f"{{00000000-0000-4000-8000-{self._ids:012d}}}"
        kind = "cti.query" if ".query." in name else "cti.request"
        message: dict[str, Any] = {
            "header": {"type": kind, "name": name, "target": target, "requestId": request_id},
            "body": dict(properties) if properties else {},
        }
        self.pending[request_id] = _Pending(
            target=target,
            name=name,
            interaction_id=interaction.id if interaction is not None else "",
            purpose=purpose,
            conversation=conversation.bridge_id if conversation else None,
        )
        self._messages[request_id] = message
        self.sent += 1
        if kind == "cti.request":
            self.requests += 1
        self.line += 1
        self._check(self.watcher.from_bridge(message, self.line))
        self._out.append(Send(message))

    def _check(self, found: list[Violation]) -> None:
        self.violations += found
        self._out += found

    def _violation(self, rule: str, explanation: str) -> None:
        self._check([Violation(self.line, Refusal(rule, explanation))])

    def _take(self) -> list[BridgeOutput]:
        out, self._out = self._out, []
        return out

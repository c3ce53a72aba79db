"""An independent reference model of the processor client's tree: the
control destination, sessions, channel groups, channels, the agents'
devices, and the interactions as far as the tree sees them (which exist, on
which device, whether they are live).

Written from ``spec/protocol.md`` and ``spec/harness.md`` only, like
``tests.refmodel`` (which models one channel's interactions in full): the
rules below are restated from the spec's sections "Processor control",
"Session, channel group, channel", "Lifecycle of a destination", D-DUP and
D-SWITCH, and nothing is imported from the engine. It reads a run's trace
(the inputs and outputs of ``run`` in order, the simulated PBX's events
included) and predicts, for every query and request to a destination of the
tree and for the few interaction requests the tree test sends (init,
accept, complete, dispose), its answer, the switch commands it causes and
the events the tree sends (``cti.status``, ``channel.*``,
``interaction.created``); it checks the init responses' bodies.

It is written for the simulated PBX (harness.md, H-SIM-1): every command
takes effect at once, so every request is answered within the input that
sent it. Where the spec leaves an outcome open the model predicts
``EITHER`` and learns the answer (each place says why).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
EITHER: Final = "EITHER"

RESPONSE: Final = "cti.response"
EVENT: Final = "cti.event"

# The channel machine's states (D-CH-1); ACTIVE has two substates.
INACTIVE: Final = "INACTIVE"
NOTREADY: Final = "NOTREADY"
READY: Final = "READY"
UNAVAILABLE: Final = "UNAVAILABLE"
GONE: Final = "DISPOSED"
ACTIVE: Final = frozenset({NOTREADY, READY})

# Interaction states, as far as the tree needs them.
ALERTING: Final = "ALERTING"
DIALING: Final = "DIALING"
STARTED: Final = "STARTED"
ENDED: Final = "ENDED"
COMPLETED: Final = "COMPLETED"
LIVE: Final = frozenset({ALERTING, DIALING, STARTED})

# Destination lifecycle (S-LIFE-1).
SETUP: Final = "SETUP"
INITIALIZED: Final = "INITIALIZED"

#: D-CH-1, F-CH-1, F-CH-2: the switch's agent state -> (states it moves the
#: device from, the state it moves it to, the event that reports the move).
#: A report of the state the device is in changes nothing; any other is
#: refused (D-SWITCH: an error output, nothing changes).
AGENT_MOVES: Final[dict[str, tuple[frozenset[str], str, str]]] = {
    "loggedin": (frozenset({INACTIVE}), NOTREADY, "channel.activated"),
    "loggedout": (ACTIVE, INACTIVE, "channel.deactivated"),
    "ready": (frozenset({NOTREADY}), READY, "channel.ready"),
    "notready": (frozenset({READY}), NOTREADY, "channel.notready"),
    "taken": (frozenset({INACTIVE, NOTREADY, READY}), UNAVAILABLE, "channel.unavailable"),
    "free": (frozenset({UNAVAILABLE}), INACTIVE, "channel.available"),
    "removed": (frozenset({INACTIVE, NOTREADY, READY, UNAVAILABLE}), GONE, "channel.disposed"),
}
#: the states in which a repeated report of the agent state changes nothing
AGENT_STAYS: Final[dict[str, frozenset[str]]] = {
    "loggedin": ACTIVE,
    "loggedout": frozenset({INACTIVE}),
    "ready": frozenset({READY}),
    "notready": frozenset({NOTREADY}),
    "taken": frozenset({UNAVAILABLE}),
    "free": frozenset({INACTIVE}),
    "removed": frozenset(),
}
#: what the tree watches of the events the client sends
TREE_EVENTS: Final = frozenset(
    {
        "cti.status",
        "interaction.created",
        *(move[2] for move in AGENT_MOVES.values()),
    }
)


#: a message name's first word -> the kind of destination it goes to
KIND_OF: Final = {"cti": "control", "channelgroup": "group"}
#: commands on an agent's device (harness.md); the others act on a call
DEVICE_OPS: Final = frozenset({"login", "logout", "ready", "notready", "dial"})


def encode(raw: str) -> str:
    """D-TARGET: ``%`` and ``.`` percent-encoded, upper case."""
    return raw.replace("%", "%25").replace(".", "%2E")


@dataclass
class Device:
    end_point: str
    state: str = INACTIVE


@dataclass
class Call:
    """An interaction, as the tree sees it."""

    call: str
    device: str
    state: str
    #: its interaction destinations were all disposed while it was live: the
    #: spec does not say whether the device still counts it (D-LIFE-4 "does
    #: not hang up calls"), so the model stops predicting what depends on it
    forgotten: bool = False


@dataclass
class Destination:
    target: str
    kind: str
    lifecycle: str = SETUP
    request_ids: set[str] = field(default_factory=set)
    #: session: its agent and the media channels it asked for
    agent: str = ""
    media: tuple[str, ...] = ()
    #: channel: its end-point and type; the calls it showed (D-CH-1)
    end_point: str = ""
    type: str = ""
    shown: set[str] = field(default_factory=set)
    #: channel: the calls whose interaction destination under it was disposed
    #: while another session's destination went on (D-SESS-1): D-LIFE-4 keeps
    #: that target disposed, and the spec does not say whether its init lists them
    dropped: set[str] = field(default_factory=set)
    #: interaction: its call
    call: str = ""
    #: channel, before its group's init: the engine may or may not have it yet
    maybe: bool = False


@dataclass
class Record:
    """A message of the bridge, what the model predicts, what it saw."""

    target: str
    request_id: str
    name: str
    verdict: str
    why: str
    #: what a SUCCESS does to the model (run when the response arrives)
    effect: Callable[[dict[str, Any]], list[str]] | None = None
    answers: int = 0


class TreeReference:
    """The tree of one client, fed the trace line by line."""

    def __init__(
        self, *, directory: dict[str, str], control: str = "proc-1.CONTROL", group: str = "G1"
    ) -> None:
        #: agent login name -> end-point (D-CTRL-2)
        self.directory = dict(directory)
        self.control_target = control
        self.group_id = group
        self.status = "started"
        self.reporting = False
        self.devices = {ep: Device(ep) for ep in directory.values()}
        self.calls: dict[str, Call] = {}
        #: calls of a time the device was UNAVAILABLE, or of nobody's end-point: never this client's
        self.ignored: set[str] = set()
        self.destinations: dict[str, Destination] = {
            control: Destination(control, "control", lifecycle=INITIALIZED)
        }
        self.disposed: set[str] = set()
        self.records: dict[tuple[str, str], Record] = {}
        self._reset_step()

    # -- steps

    def _reset_step(self) -> None:
        self.step_records: list[Record] = []
        self.expected_events: Counter[tuple[str, str]] = Counter()
        self.actual_events: Counter[tuple[str, str]] = Counter()
        self.expected_commands: Counter[tuple[str, str]] = Counter()
        self.actual_commands: Counter[tuple[str, str]] = Counter()
        self.commands_known = True
        self.expected_errors = 0
        self.errors = 0
        self.problems: list[str] = []

    def begin_step(self) -> None:
        self._reset_step()

    def end_step(self) -> list[str]:
        problems = list(self.problems)
        for rec in self.step_records:
            if rec.answers != 1:
                problems.append(
                    f"S-REQ-1: {rec.name} {rec.request_id} on {rec.target}: {rec.answers} responses"
                )
        if self.expected_events != self.actual_events:
            problems.append(
                f"events: expected {sorted(self.expected_events.elements())}, "
                f"sent {sorted(self.actual_events.elements())}"
            )
        if self.commands_known and self.expected_commands != self.actual_commands:
            problems.append(
                f"commands: expected {sorted(self.expected_commands.elements())}, "
                f"sent {sorted(self.actual_commands.elements())}"
            )
        if self.expected_errors != self.errors:
            problems.append(f"D-SWITCH: expected {self.expected_errors} error outputs, saw {self.errors}")
        return problems

    # -- what the generator asks

    def of_kind(self, kind: str) -> list[Destination]:
        return sorted((d for d in self.destinations.values() if d.kind == kind), key=lambda d: d.target)

    def channels_of(self, end_point: str) -> list[Destination]:
        """The initialized telephony channel destinations that show ``end_point``."""
        return [
            d
            for d in self.of_kind("channel")
            if d.type == "telephony" and d.end_point == end_point and d.lifecycle == INITIALIZED
        ]

    def live_calls(self, end_point: str) -> list[Call]:
        return [c for c in self.calls.values() if c.device == end_point and c.state in LIVE]

    # -- reading the trace

    def consume(self, entry: dict[str, Any]) -> None:
        if entry.get("from") == "bridge":
            self._bridge(entry["message"])
        elif entry.get("from") == "switch":
            self._switch(entry["event"])
        elif entry.get("to") == "bridge":
            self._to_bridge(entry["message"])
        elif entry.get("to") == "switch":
            command = entry["command"]
            on = command.get("device") if command["op"] in DEVICE_OPS else command.get("call")
            self.actual_commands[(command["op"], str(on))] += 1
        elif "error" in entry:
            self.errors += 1
        elif "protocol_error" in entry:
            self.problems.append(f"an unexpected protocol error: {entry}")

    # -- the bridge's messages

    def _bridge(self, msg: dict[str, Any]) -> None:
        headers = msg["header"]
        target, rid, name = headers["target"], headers["requestId"], headers["name"]
        body = msg.get("body") or {}
        rec = Record(target, rid, name, FAILURE, "")
        self.step_records.append(rec)
        self.records[(target, rid)] = rec
        dest = self.destinations.get(target)
        if target in self.disposed:
            rec.why = "D-LIFE-4 destination disposed"
            return
        if dest is None:
            if name == "session.query.init" and "." not in target:
                self._new_session(rec, target, body)
            else:
                rec.why = "D-TARGET unknown destination"
            return
        if rid in dest.request_ids:
            rec.why = "D-DUP"
            return
        dest.request_ids.add(rid)
        prefix, _, short = name.partition(".")
        kind = KIND_OF.get(prefix, prefix)
        if kind != dest.kind:
            rec.why = "D-TARGET a message of another kind of destination"
            return
        if dest.maybe:
            # a channel before its group's init: the bridge has not been told
            # its id yet (D-TARGET) and the spec does not say whether it exists
            if short == "query.init":
                self._decide(rec, EITHER, "D-TARGET", lambda answer: self._channel_init(dest, answer))
            elif short == "request.dispose":
                self._decide(rec, EITHER, "D-TARGET", lambda answer: self._dispose(dest.target))
            else:
                rec.why = "D-LIFE-5 or D-TARGET"
            return
        if (
            dest.kind != "control"
            and dest.lifecycle != INITIALIZED
            and short not in ("query.init", "request.dispose")
        ):
            rec.why = "D-LIFE-5 not initialized"
            return
        handler = getattr(self, f"_{dest.kind}_{short.replace('.', '_')}", None)
        if handler is None:
            raise ValueError(f"the tree model does not follow {name}")
        handler(rec, dest, body)

    def _decide(
        self, rec: Record, verdict: str, why: str, effect: Callable[[dict[str, Any]], list[str]] | None = None
    ) -> None:
        rec.verdict, rec.why, rec.effect = verdict, why, effect

    def _needs_switch(self, rec: Record) -> bool:
        """D-CTRL-3: a request with a switch operation is refused while the status is not started."""
        if self.status != "started":
            self._decide(rec, FAILURE, f"D-CTRL-3 the status is {self.status}")
            return True
        return False

    def _command(self, op: str, on: str) -> None:
        self.expected_commands[(op, on)] += 1

    def _event(self, target: str, name: str) -> None:
        self.expected_events[(target, name)] += 1

    # control

    def _control_request_status(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        def report(answer: dict[str, Any]) -> list[str]:
            self.reporting = True
            self._event(self.control_target, "cti.status")
            return []

        self._decide(rec, SUCCESS, "D-CTRL-1", report)

    def _control_query_capabilities(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        def check(answer: dict[str, Any]) -> list[str]:
            caps = answer.get("body", {})
            if caps.get("channel-groups-supported") is not True or caps.get("chat") or caps.get("email"):
                return [f"D-CTRL-1: capabilities {caps}"]
            return []

        self._decide(rec, SUCCESS, "D-CTRL-1", check)

    def _control_request_validatelogin(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        agent, end_point = body.get("agent"), body.get("end-point")
        if agent not in self.directory:
            self._decide(rec, FAILURE, "D-CTRL-2 unknown agent")
        elif end_point is None or end_point == self.directory[agent]:
            self._decide(rec, SUCCESS, "D-CTRL-2")
        elif end_point in self.devices:
            # another agent's end-point: "knows the end-point" is open to both readings
            self._decide(rec, EITHER, "D-CTRL-2 another agent's end-point")
        else:
            self._decide(rec, FAILURE, "D-CTRL-2 unknown end-point")

    def _control_query_agent(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        agent = body.get("agent")
        if agent not in self.directory:
            self._decide(rec, FAILURE, "D-CTRL-2 unknown agent")
            return

        def check(answer: dict[str, Any]) -> list[str]:
            got = answer.get("body", {})
            if (
                got.get("agent") != agent
                or got.get("end-point") != self.directory[agent]
                or not got.get("name")
            ):
                return [f"D-CTRL-2: agent answer {got}"]
            return []

        self._decide(rec, SUCCESS, "D-CTRL-2", check)

    # session

    def _new_session(self, rec: Record, target: str, body: dict[str, Any]) -> None:
        agent = body.get("name")
        if self.status != "started":
            self._decide(rec, FAILURE, "D-CTRL-3 client not started")
        elif agent not in self.directory:
            self._decide(rec, FAILURE, "D-SESS-1 unknown agent")
        else:
            media = tuple(kind for kind in ("chat", "email") if body.get(kind) is True)
            self._decide(rec, SUCCESS, "F-SESS-1", lambda answer: self._create(rec, agent, media, answer))

    def _create(self, rec: Record, agent: str, media: tuple[str, ...], answer: dict[str, Any]) -> list[str]:
        target = rec.target
        session = Destination(target, "session", lifecycle=INITIALIZED, agent=agent, media=media)
        session.request_ids.add(rec.request_id)
        self.destinations[target] = session
        group = f"{target}.{self.group_id}"
        self.destinations[group] = Destination(group, "group", agent=agent, media=media)
        for end_point, kind in self._channel_list(session):
            channel = f"{group}.{encode(end_point)}"
            self.destinations[channel] = Destination(
                channel, "channel", end_point=end_point, type=kind, maybe=True
            )
        return self._session_body(answer)

    def _session_body(self, answer: dict[str, Any]) -> list[str]:
        expected = {"session-state": "LOGGEDIN", "channel-groups": [{"id": self.group_id}]}
        got = answer.get("body")
        return [] if got == expected else [f"D-SESS-2: session init {got}, expected {expected}"]

    def _channel_list(self, session: Destination) -> list[tuple[str, str]]:
        channels = [(self.directory[session.agent], "telephony")]
        return channels + [(f"{session.agent}-{kind}", kind) for kind in session.media]

    def _session_query_init(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        if body.get("name") != dest.agent:
            self._decide(rec, FAILURE, "D-LIFE-5 a repeated session init naming another agent")
        else:
            self._decide(rec, SUCCESS, "D-LIFE-5 a repeated init", self._session_body)

    def _session_request_logout(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        if self._needs_switch(rec):
            return
        device = self.devices[self.directory[dest.agent]]
        live = self.live_calls(device.end_point)
        if any(not c.forgotten for c in live):
            self._decide(rec, FAILURE, "D-SESS-2 a live interaction")
        elif live:
            self.commands_known = False
            self._decide(rec, EITHER, "D-SESS-2 only a forgotten live call")
        elif device.state in ACTIVE:
            self._command("logout", device.end_point)
            self._decide(rec, SUCCESS, "D-SESS-2")
        elif device.state == GONE:
            # the spec does not say whether a logout of a removed device succeeds
            self._decide(rec, EITHER, "D-SESS-2 a removed device")
        else:
            self._decide(rec, SUCCESS, "D-SESS-2 nobody logged in: no command")

    def _session_request_dispose(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        self._decide(rec, SUCCESS, "D-LIFE-4", lambda answer: self._dispose(dest.target))

    # channel group

    def _group_query_init(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        def check(answer: dict[str, Any]) -> list[str]:
            dest.lifecycle = INITIALIZED
            session = self.destinations[dest.target.rpartition(".")[0]]
            # the channels it has: a channel destination disposed is no longer listed
            expected = sorted(
                (
                    {"end-point": ep, "type": kind}
                    for ep, kind in self._channel_list(session)
                    if f"{dest.target}.{encode(ep)}" not in self.disposed
                ),
                key=str,
            )
            got = answer.get("body", {}).get("channels")
            for channel in self.of_kind("channel"):
                if channel.target.startswith(f"{dest.target}."):
                    channel.maybe = False
            if not isinstance(got, list) or sorted(got, key=str) != expected:
                return [f"F-CG-1: group init {got}, expected {expected}"]
            return []

        self._decide(rec, SUCCESS, "F-CG-1", check)

    def _group_request_dispose(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        self._decide(rec, SUCCESS, "D-LIFE-4", lambda answer: self._dispose(dest.target))

    # channel

    def _channel_query_init(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        self._decide(rec, SUCCESS, "D-CH-1", lambda answer: self._channel_init(dest, answer))

    def _channel_init(self, dest: Destination, answer: dict[str, Any]) -> list[str]:
        dest.maybe = False
        dest.lifecycle = INITIALIZED
        got = answer.get("body")
        if dest.type != "telephony":
            expected: dict[str, Any] = {"channel-state": INACTIVE, "ready-state": None}
            return [] if got == expected else [f"F-UCH-1: {dest.target} init {got}"]
        state = self.devices[dest.end_point].state
        expected_state: dict[str, Any] = {
            "channel-state": "ACTIVE" if state in ACTIVE else state,
            "ready-state": state if state in ACTIVE else None,
        }
        if not isinstance(got, dict):
            return [f"D-CH-1: {dest.target} init {got}"]
        problems = []
        if {k: got.get(k) for k in expected_state} != expected_state:
            problems.append(f"D-CH-1: {dest.target} init {got}, expected {expected_state}")
        # the device's live calls, and the finished ones this destination showed
        listed = {c.call for c in self.live_calls(dest.end_point) if not c.forgotten}
        listed |= {c for c in dest.shown if c in self.calls and not self.calls[c].forgotten}
        # a live call whose interaction destinations were all disposed: open
        open_ = {
            encode(c.call): c.call
            for c in self.calls.values()
            if c.device == dest.end_point and (c.forgotten or c.call in dest.dropped)
        }
        listed -= dest.dropped
        raw = got.get("interactions")
        sent = set(raw) if isinstance(raw, list) and all(isinstance(i, str) for i in raw) else None
        expected_ids = {encode(c) for c in listed}
        if sent is None or sent - set(open_) != expected_ids:
            problems.append(f"D-CH-1: {dest.target} lists {raw}, expected {sorted(expected_ids)}")
            return problems
        for encoded in sent & set(open_):
            self.calls[open_[encoded]].forgotten = False
            dest.dropped.discard(open_[encoded])
            listed.add(open_[encoded])
        for call in listed:
            self._show(dest, call)
        return problems

    def _show(self, channel: Destination, call: str) -> None:
        channel.shown.add(call)
        target = f"{channel.target}.{encode(call)}"
        if target not in self.destinations and target not in self.disposed:
            self.destinations[target] = Destination(target, "interaction", call=call)

    def _telephony(self, rec: Record, dest: Destination) -> Device | None:
        if dest.type != "telephony":
            self._decide(rec, FAILURE, "F-UCH-1 an unsupported channel")
            return None
        if self._needs_switch(rec):
            return None
        return self.devices[dest.end_point]

    def _channel_request_activate(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        device = self._telephony(rec, dest)
        if device is None:
            return
        if device.state == INACTIVE:
            self._command("login", device.end_point)
            self._decide(rec, SUCCESS, "D-CH-1")
        elif device.state in ACTIVE:
            self._decide(rec, SUCCESS, "D-SESS-1 already active: no command")
        else:
            self._decide(rec, FAILURE, f"D-CH-1 activate in {device.state}")

    def _channel_request_deactivate(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        device = self._telephony(rec, dest)
        if device is None:
            return
        live = self.live_calls(device.end_point)
        if device.state not in ACTIVE:
            self._decide(rec, FAILURE, f"D-CH-1 deactivate in {device.state}")
        elif any(not c.forgotten for c in live):
            self._decide(rec, FAILURE, "D-CH-1 a live interaction")
        elif live:
            self.commands_known = False
            self._decide(rec, EITHER, "D-CH-1 only a forgotten live call")
        else:
            self._command("logout", device.end_point)
            self._decide(rec, SUCCESS, "D-CH-1")

    def _channel_request_ready(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        device = self._telephony(rec, dest)
        if device is None:
            return
        if device.state == NOTREADY:
            self._command("ready", device.end_point)
            self._decide(rec, SUCCESS, "D-CH-1")
        elif device.state == READY:
            self._decide(rec, SUCCESS, "D-SESS-1 already ready: no command")
        else:
            self._decide(rec, FAILURE, f"D-CH-1 ready in {device.state}")

    def _channel_request_notready(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        device = self._telephony(rec, dest)
        if device is None:
            return
        if device.state in ACTIVE:
            self._command("notready", device.end_point)
            self._decide(rec, SUCCESS, "D-CH-1")
        else:
            self._decide(rec, FAILURE, f"D-CH-1 notready in {device.state}")

    def _channel_request_dial(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        device = self._telephony(rec, dest)
        if device is None:
            return
        destination = body.get("destination")
        if not isinstance(destination, str) or not destination:
            self._decide(rec, FAILURE, "F-TCH-1 no destination")
        elif device.state not in ACTIVE:
            self._decide(rec, FAILURE, f"D-TCH-1 dial in {device.state}")
        else:
            self._command("dial", device.end_point)
            before = set(self.calls)

            def named(answer: dict[str, Any]) -> list[str]:
                new = [c for c in self.calls if c not in before]
                got = answer.get("body", {}).get("interactionid")
                if len(new) != 1 or got != encode(new[0]):
                    return [f"D-TCH-1: dial answered {got}, new calls {new}"]
                return []

            self._decide(rec, SUCCESS, "D-TCH-1", named)

    def _channel_request_dispose(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        self._decide(rec, SUCCESS, "D-LIFE-4", lambda answer: self._dispose(dest.target))

    # interaction (as far as the tree test goes)

    def _interaction_query_init(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        def check(answer: dict[str, Any]) -> list[str]:
            dest.lifecycle = INITIALIZED
            call = self.calls.get(dest.call)
            got = answer.get("body", {}).get("interaction-state")
            if call is not None and not call.forgotten and got != call.state:
                return [f"S-INIT: {dest.target} init state {got}, the model has {call.state}"]
            return []

        self._decide(rec, SUCCESS, "S-INIT", check)

    def _interaction_request_accept(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        if self._needs_switch(rec):
            return
        call = self.calls.get(dest.call)
        if call is not None and call.state == ALERTING:
            self._command("answer", call.call)
            self._decide(rec, SUCCESS, "D-GENERIC accept")
        else:
            self._decide(rec, FAILURE, "D-GENERIC accept needs ALERTING")

    def _interaction_request_complete(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        call = self.calls.get(dest.call)
        if call is not None and call.state == ENDED:
            self._decide(rec, SUCCESS, "D-GENERIC complete", lambda answer: self._set(call, COMPLETED))
        else:
            self._decide(rec, FAILURE, "D-GENERIC complete needs ENDED")

    def _interaction_request_dispose(self, rec: Record, dest: Destination, body: dict[str, Any]) -> None:
        self._decide(rec, SUCCESS, "D-LIFE-4", lambda answer: self._dispose(dest.target))

    def _set(self, call: Call, state: str) -> list[str]:
        call.state = state
        return []

    # disposal

    def _dispose(self, target: str) -> list[str]:
        below = [t for t in self.destinations if t == target or t.startswith(f"{target}.")]
        for t in below:
            dest = self.destinations.pop(t)
            self.disposed.add(t)
            if dest.kind == "interaction":
                channel = self.destinations.get(t.rpartition(".")[0])
                if t == target and channel is not None:
                    channel.dropped.add(dest.call)
                self._interaction_gone(dest.call, directly=t == target)
        return []

    def _interaction_gone(self, call_id: str, *, directly: bool) -> None:
        """Its last interaction destination is gone: a finished call is
        forgotten; a live one goes on at the switch (D-LIFE-4). When the
        destination above was disposed, the device's next channel lists it
        (D-CH-1: the device's live interactions); when the interaction's own
        destination was, the spec does not say whether the call still counts."""
        if any(d.kind == "interaction" and d.call == call_id for d in self.destinations.values()):
            return
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.state in LIVE:
            call.forgotten = call.forgotten or directly
        else:
            del self.calls[call_id]
            self.ignored.add(call_id)

    # -- what the client sends

    def _to_bridge(self, msg: dict[str, Any]) -> None:
        headers = msg["header"]
        if headers["type"] == EVENT:
            if headers["name"] in TREE_EVENTS:
                self.actual_events[(headers["target"], headers["name"])] += 1
                if headers["name"] == "cti.status":
                    self._check_status(msg.get("body", {}))
            return
        if headers["type"] != RESPONSE:
            self.problems.append(f"S-EVT-0: an output of type {headers['type']}")
            return
        rec = self.records.get((headers["target"], headers["requestId"]))
        if rec is None:
            self.problems.append(f"S-REQ-2: a response to nothing sent: {headers}")
            return
        rec.answers += 1
        result = headers.get("result")
        if rec.answers > 1:
            return
        if rec.verdict != EITHER and result != rec.verdict:
            said = f"the model says {rec.verdict} ({rec.why})"
            self.problems.append(f"{rec.name} {rec.request_id} on {rec.target}: {result}, {said}")
            return
        if result == SUCCESS and rec.effect is not None:
            self.problems += rec.effect(msg)

    def _check_status(self, body: dict[str, Any]) -> None:
        if body.get("status") != self.status:
            self.problems.append(f"D-CTRL-1: cti.status {body}, the model has {self.status}")

    # -- the switch

    def _switch(self, ev: dict[str, Any]) -> None:
        kind = ev["kind"]
        if kind == "link":
            status = "started" if ev["up"] else "cti-lost"
            if status != self.status:
                self.status = status
                if self.reporting:
                    self._event(self.control_target, "cti.status")
        elif kind == "agent":
            self._agent(ev["device"], ev["state"])
        elif (
            kind in ("offered", "dialing") and ev["call"] not in self.calls and ev["call"] not in self.ignored
        ):
            self._new_call(ev["call"], ev.get("device", ""), ALERTING if kind == "offered" else DIALING)
        elif ev.get("call") in self.calls:
            call = self.calls[ev["call"]]
            if kind == "connected" and call.state in (ALERTING, DIALING):
                call.state = STARTED
            elif kind in ("ended", "failed") and call.state in LIVE:
                call.state = ENDED

    def _agent(self, end_point: str, state: str) -> None:
        device = self.devices.get(end_point)
        if device is None:
            return
        sources, dest, event = AGENT_MOVES[state]
        if device.state in sources:
            device.state = dest
            for channel in self.channels_of(end_point):
                self._event(channel.target, event)
        elif device.state not in AGENT_STAYS[state]:
            self.expected_errors += 1

    def _new_call(self, call_id: str, end_point: str, state: str) -> None:
        device = self.devices.get(end_point)
        if device is None or device.state == UNAVAILABLE:
            self.ignored.add(call_id)  # nobody's (D-NEW), or another agent's (D-CH-1)
            return
        self.calls[call_id] = Call(call_id, end_point, state)
        for channel in self.channels_of(end_point):
            self._event(channel.target, "interaction.created")
            self._show(channel, call_id)

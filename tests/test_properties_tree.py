"""Hypothesis stateful tests of the whole processor client's tree: several
agents on one connection, their logins and logouts, ready and not ready,
dial, the switch's agent and link events, and calls on every device,
interleaved, valid and invalid (unknown agents, wrong states, duplicate
requestIds, disposed and unknown destinations).

After every input (spec/harness.md: one line of ``run``):

- every output is a strict UTF-8 JSON line, and the done marker follows;
- the control destination's status and every device's state are states of
  their tables (``fsm.machines`` CONTROL and CHANNEL), reached from the
  previous ones along the tables' edges, and every tree destination's
  lifecycle likewise (LIFECYCLE);
- the independent model of the tree (``tests.refmodel_tree``, which
  imports nothing of the engine) agrees with every answer, every command
  and every event of the tree, and with the engine's view of the status,
  the devices and the live sessions;
- the snapshot round-trips, and ``fsm.checker`` accepts the trace so far.

Rules: F-CTRL-1..3, D-CTRL-1..3, F-SESS-1/2, D-SESS-1/2, F-CG-1, D-CG-1,
F-CH-1/2, D-CH-1, F-TCH-1, D-TCH-1, F-UCH-1, D-UCH, D-NEW, D-LIFE-4/5, D-DUP,
D-SWITCH.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from adapters.simulated import SimulatedSwitch
from fsm import machines as m
from fsm.checker import check_lines
from fsm.directory import Agent, AgentDirectory
from fsm.policy import Policy
from fsm.snapshot import restore, snapshot
from fsm.table import reachable
from tests import refmodel_tree as ref
from tests.driver import CONTROL, Driver
from tests.records import RecordMirror
from tests.test_properties import assert_strict_json_line

Json = dict[str, Any]

#: three agents, one device each; 1999 is in nobody's directory (D-NEW)
AGENTS = {"agent-1": "1001", "agent-2": "1002", "agent-3": "1003"}
NOBODY = "1999"
#: sessions generated per agent at most: one, and a second desktop (D-SESS-1)
MAX_SESSIONS = 2
DIRECTORY = AgentDirectory(tuple(Agent(agent=a, end_point=ep) for a, ep in AGENTS.items()))
#: the agent events a switch reports (harness.md), those that move a device most often
AGENT_STATES = (
    *("loggedin", "loggedout", "ready", "notready", "taken", "free", "removed"),
    *("link-down", "link-up", "link-up"),
)
CHANNEL_REQUESTS = (
    "activate",
    "activate",
    "deactivate",
    "ready",
    "ready",
    "notready",
    "dial",
    "dial",
    "dispose",
)
DIAL_DESTINATIONS = ("300", "ring-1", "busy-1", "")
STATS: Counter[str] = Counter()


def _reach(machine: m.StateMachine) -> dict[str, frozenset[str]]:
    return {start: reachable(machine, [start]) for start in machine.states}


REACH = {machine.name: _reach(machine) for machine in (m.CONTROL, m.CHANNEL, m.LIFECYCLE)}


class TreeMachine(RuleBasedStateMachine):
    """The bridge, the switch's outside world (customers, the agents at
    their phones, another agent taking a device, the link) and the engine
    with the simulated PBX, fed one input at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.trace = io.StringIO()
        self.policy = Policy()
        driver = Driver(self.policy, login=False, directory=DIRECTORY, trace=self.trace)
        self.engine, self.runner = driver.engine, driver.runner
        self.mirror = RecordMirror(self.engine)
        assert isinstance(driver.switch_driver, SimulatedSwitch)
        self.switch = driver.switch_driver
        self.model = ref.TreeReference(directory=AGENTS, control=CONTROL)
        self.lineno = 0
        self.read_to = 0
        self.counters: Counter[str] = Counter()
        #: well-formed messages sent, to repeat (D-DUP)
        self.sent: list[Json] = []
        #: (machine, key) -> the state the engine had after the last input
        self.states: dict[tuple[str, str], str] = {}

    def fresh(self, prefix: str) -> str:
        self.counters[prefix] += 1
        return f"{prefix}{self.counters[prefix]}"

    # -- feeding and checking

    def feed(self, item: Json) -> list[Json]:
        text = json.dumps(item)
        self.lineno += 1
        note(f"input {self.lineno}: {text}")
        outputs = self.runner.feed(text, self.lineno)
        for entry in outputs:
            assert_strict_json_line(json.dumps(entry))
            headers = entry.get("message", {}).get("header", {})
            if headers.get("type") == "cti.response":
                STATS[f"{headers['name']} {headers['result']}"] += 1
        assert {"done": self.lineno} == outputs[-1], "harness: the done marker"
        self.trace.seek(self.read_to)
        lines = self.trace.read().splitlines()
        self.read_to = self.trace.tell()
        self.model.begin_step()
        for line in lines:
            assert_strict_json_line(line)
            self.model.consume(json.loads(line))
        problems = self.model.end_step()
        assert not problems, "\n".join(problems)
        self._check_engine()
        state = json.loads(json.dumps(snapshot(self.engine)))
        assert state == json.loads(json.dumps(snapshot(restore(state)))), "snapshot does not round-trip"
        self.mirror.check()  # fsm.changes: the records an input changed, and no other, were written
        violations = check_lines(self.trace.getvalue().splitlines(), policy=self.policy)
        assert [] == violations, f"fsm.checker: {violations}"
        return outputs[:-1]

    def send(self, name: str, target: str, body: Json | None = None) -> list[Json]:
        kind = "cti.query" if ".query." in name else "cti.request"
        message: Json = {
            "header": {"type": kind, "name": name, "target": target, "requestId": self.fresh("r")}
        }
        if body is not None:
            message["body"] = body
        self.sent.append(message)
        return self.feed({"from": "bridge", "message": message})

    def switch_event(self, ev: Json) -> list[Json]:
        return self.feed({"from": "switch", "event": ev})

    def _check_engine(self) -> None:
        now: dict[tuple[str, str], str] = {}
        self._moved(m.CONTROL, CONTROL, self.engine.control.state, now)
        for end_point, device in self.engine.devices_by_end_point.items():
            self._moved(m.CHANNEL, end_point, device.state, now)
        for target, dest in self.engine.destinations.items():
            if not target.startswith(f"{CONTROL}"):
                self._moved(m.LIFECYCLE, target, dest.lifecycle, now)
        self.states = now
        model = self.model
        assert model.status == self.engine.control.state, "the status differs from the model's"
        for end_point, expected in model.devices.items():
            actual = m.top(self.engine.devices_by_end_point[end_point].state)
            want = "ACTIVE" if expected.state in ref.ACTIVE else expected.state
            assert want == actual, f"device {end_point}: engine {actual}, model {expected.state}"
        sessions = sorted(t for t, d in model.destinations.items() if d.kind == "session")
        assert sessions == sorted(self.engine.sessions), "live sessions differ from the model's"

    def _moved(self, machine: m.StateMachine, key: str, state: str, now: dict[tuple[str, str], str]) -> None:
        assert state in machine.states, f"{machine.name} {key}: {state} is in no table"
        previous = self.states.get((machine.name, key))
        start = machine.initial if machine is not m.LIFECYCLE else m.ABSENT
        origin = previous or start
        assert state in REACH[machine.name][origin], f"{machine.name} {key}: {origin} -> {state}"
        now[(machine.name, key)] = state

    def teardown(self) -> None:
        STATS["tree sequences"] += 1
        STATS["tree inputs"] += self.lineno
        event(f"tree: {self.lineno // 10 * 10}+ inputs")
        violations = check_lines(self.trace.getvalue().splitlines(), policy=self.policy, end_of_run=True)
        assert [] == violations, f"fsm.checker at the end: {violations}"

    @invariant()
    def every_request_answered(self) -> None:
        """With the simulated PBX every request is answered within its input."""
        assert all(rec.answers == 1 for rec in self.model.records.values()), (
            "a request without its one answer"
        )

    # -- what the model knows, to draw from

    def sessions_of(self, agent: str) -> int:
        return sum(1 for d in self.model.of_kind("session") if d.agent == agent)

    def targets(self, kind: str) -> list[str]:
        return [d.target for d in self.model.of_kind(kind)]

    def some_target(self, data: st.DataObject, kind: str, unknown: str) -> str:
        """Mostly a live destination of the kind; sometimes a disposed or unknown one."""
        live = self.targets(kind)
        gone = sorted(t for t in self.model.disposed if t.count(".") == unknown.count("."))[-2:]
        return data.draw(st.sampled_from([*live * 6, *gone, unknown]))

    # -- the bridge: control

    @initialize(status_first=st.booleans())
    def start_up(self, status_first: bool) -> None:
        """F-CTRL-2: the bridge's start-up, or (D-CTRL-3: not enforced) none."""
        if status_first:
            self.send("cti.request.status", CONTROL)
            self.send("cti.query.capabilities", CONTROL)

    @rule(
        name=st.sampled_from(("status", "capabilities", "agent", "validatelogin", "validatelogin")),
        agent=st.sampled_from((*AGENTS, "nobody")),
        end_point=st.sampled_from(("own", "none", "9999")),
    )
    def control(self, name: str, agent: str, end_point: str) -> None:
        """F-CTRL-2, D-CTRL-1: status and capabilities; D-CTRL-2: the agent
        query and validatelogin, from the directory."""
        if name in ("status", "capabilities"):
            self.send("cti.request.status" if name == "status" else "cti.query.capabilities", CONTROL)
        elif name == "agent":
            self.send("cti.query.agent", CONTROL, {"agent": agent})
        else:
            body: Json = {"agent": agent, "password": "x"}
            if end_point != "none":
                body["end-point"] = AGENTS.get(agent, "1001") if end_point == "own" else end_point
            self.send("cti.request.validatelogin", CONTROL, body)

    # -- the bridge: sessions

    @rule(agent=st.sampled_from((*AGENTS, *AGENTS, "nobody")), chat=st.booleans(), email=st.booleans())
    def login(self, agent: str, chat: bool, email: bool) -> None:
        """F-SESS-1: a new session; an unknown agent is refused (D-SESS-1);
        an agent who has one gets a second (a second desktop, D-SESS-1), at
        most two sessions each to keep the sequences' tree small."""
        if self.sessions_of(agent) >= MAX_SESSIONS:
            agent = "nobody"
        self.send("session.query.init", self.fresh("S"), {"name": agent, "chat": chat, "email": email})

    @precondition(lambda self: any(self.sessions_of(agent) < MAX_SESSIONS for agent in AGENTS))
    @rule(data=st.data())
    def bridge_logs_in(self, data: st.DataObject) -> None:
        """What a bridge does for a login (harness.md): session, channel
        group and channel inits, activate, ready, each answered as the model
        says; for an agent already logged in, a second desktop's (D-SESS-1:
        activate and ready on the device's state as it is)."""
        agent = data.draw(st.sampled_from([a for a in AGENTS if self.sessions_of(a) < MAX_SESSIONS]))
        session = self.fresh("S")
        self.send("session.query.init", session, {"name": agent})
        channel = f"{session}.G1.{AGENTS[agent]}"
        for name, target in (
            ("channelgroup.query.init", f"{session}.G1"),
            ("channel.query.init", channel),
            ("channel.request.activate", channel),
            ("channel.request.ready", channel),
        ):
            if target in self.model.destinations:
                self.send(name, target)

    @precondition(lambda self: bool(self.targets("session")))
    @rule(data=st.data(), same=st.booleans())
    def session_reinit(self, data: st.DataObject, same: bool) -> None:
        """D-LIFE-5: a repeated session init, naming its agent or another."""
        target = data.draw(st.sampled_from(self.targets("session")))
        agent = self.model.destinations[target].agent if same else "agent-3"
        self.send("session.query.init", target, {"name": agent})

    @precondition(lambda self: bool(self.targets("session")))
    @rule(data=st.data(), name=st.sampled_from(("logout", "logout", "dispose")))
    def session_request(self, data: st.DataObject, name: str) -> None:
        """D-SESS-2: logout (refused while a call is live), dispose (D-LIFE-4)."""
        self.send(f"session.request.{name}", self.some_target(data, "session", "S999"))

    @precondition(lambda self: bool(self.targets("group")))
    @rule(data=st.data(), dispose=st.sampled_from((False, False, False, True)))
    def group_message(self, data: st.DataObject, dispose: bool) -> None:
        """F-CG-1: the group's init; sometimes its dispose."""
        name = "channelgroup.request.dispose" if dispose else "channelgroup.query.init"
        self.send(name, self.some_target(data, "group", "S999.G1"))

    # -- the bridge: channels

    @precondition(lambda self: bool(self.targets("channel")))
    @rule(data=st.data())
    def channel_init(self, data: st.DataObject) -> None:
        self.send("channel.query.init", self.some_target(data, "channel", "S1.G1.1999"))

    @precondition(lambda self: bool(self.targets("channel")))
    @rule(data=st.data(), short=st.sampled_from(CHANNEL_REQUESTS))
    def channel_request(self, data: st.DataObject, short: str) -> None:
        """D-CH-1, D-TCH-1, F-UCH-1: any channel request, in any state."""
        body: Json | None = None
        if short == "dial":
            destination = data.draw(st.sampled_from(DIAL_DESTINATIONS))
            body = {"destination": destination} if destination else {}
        elif short == "notready":
            body = data.draw(st.sampled_from(({"reason": "lunch"}, None)))
        self.send(f"channel.request.{short}", self.some_target(data, "channel", "S1.G1.1999"), body)

    def busy_channels(self) -> list[ref.Destination]:
        """Initialized telephony channels whose device has a live call."""
        return [
            d
            for d in self.model.of_kind("channel")
            if d.type == "telephony" and d.lifecycle == ref.INITIALIZED and self.model.live_calls(d.end_point)
        ]

    @precondition(lambda self: bool(self.busy_channels()))
    @rule(data=st.data(), logout=st.booleans())
    def log_out_during_a_call(self, data: st.DataObject, logout: bool) -> None:
        """D-CH-1, D-SESS-2: deactivate or logout while the device has a
        live call: refused (it would be accepted once the call has ended)."""
        channel = data.draw(st.sampled_from(self.busy_channels()))
        if logout:
            self.send("session.request.logout", channel.target.split(".")[0])
        else:
            self.send("channel.request.deactivate", channel.target)

    # -- the bridge: interactions, as the tree sees them

    @precondition(lambda self: bool(self.targets("interaction")))
    @rule(
        data=st.data(),
        name=st.sampled_from(
            ("query.init", "query.init", "request.accept", "request.complete", "request.dispose")
        ),
    )
    def interaction_message(self, data: st.DataObject, name: str) -> None:
        """S-INIT, D-GENERIC, D-LIFE-4: an interaction shown on a channel,
        mostly initialized first, as a bridge does."""
        target = self.some_target(data, "interaction", "S1.G1.1001.nosuch")
        dest = self.model.destinations.get(target)
        if dest is not None and dest.lifecycle != ref.INITIALIZED and data.draw(st.booleans()):
            self.send("interaction.query.init", target)
        self.send(f"interaction.{name}", target)

    @precondition(lambda self: bool(self.targets("interaction")))
    @rule(data=st.data(), name=st.sampled_from(("request.accept", "request.complete")))
    def interaction_request(self, data: st.DataObject, name: str) -> None:
        """(accept and complete again: rules have no weights)"""
        self.interaction_message(data, name)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """D-DUP: a message sent again, requestId and all."""
        self.feed({"from": "bridge", "message": data.draw(st.sampled_from(self.sent[-6:]))})

    # -- the switch's outside world

    @rule(end_point=st.sampled_from((*AGENTS.values(), NOBODY)))
    def offer_call(self, end_point: str) -> None:
        """D-NEW: a customer calls an agent's device (or nobody's)."""
        if self.model.devices.get(end_point, ref.Device("")).state == ref.GONE:
            return  # the spec does not say what a removed device's calls are
        self.switch_event({"kind": "offered", "call": self.fresh("c"), "device": end_point})

    @rule(end_point=st.sampled_from(tuple(AGENTS.values())))
    def agent_dials(self, end_point: str) -> None:
        """D-NEW: the agent dials on the phone, with no call of theirs
        connected (one would make it a phone consult, S-EVT-1)."""
        device = self.model.devices[end_point]
        if device.state == ref.GONE or any(c.state == ref.STARTED for c in self.model.live_calls(end_point)):
            return
        self.switch_event(
            {"kind": "dialing", "call": self.fresh("p"), "device": end_point, "destination": "300"}
        )

    @precondition(lambda self: bool(self.switch.calls))
    @rule(data=st.data())
    def phone_event(self, data: st.DataObject) -> None:
        """A party answers, hangs up or fails."""
        call = data.draw(st.sampled_from(sorted(self.switch.calls)))
        kinds = {"ALERTING": ("connected", "ended", "failed"), "DIALING": ("connected", "ended")}
        kind = data.draw(st.sampled_from(kinds.get(self.switch.calls[call], ("ended",))))
        self.switch_event({"kind": kind, "call": call})

    @precondition(lambda self: bool(self.switch.calls))
    @rule(data=st.data())
    def party_hangs_up(self, data: st.DataObject) -> None:
        """(A call ends: rules have no weights)"""
        call = data.draw(st.sampled_from(sorted(self.switch.calls)))
        self.switch_event({"kind": "ended", "call": call})

    @rule(end_point=st.sampled_from(tuple(AGENTS.values())), state=st.sampled_from(AGENT_STATES))
    def agent_event(self, end_point: str, state: str) -> None:
        """F-CH-1, D-CH-1: the agent at the phone, or another agent taking
        the device; a report the device's state does not allow is refused
        (D-SWITCH). F-CTRL-3, D-CTRL-3: the link to the switch goes down or
        comes back."""
        if state.startswith("link-"):
            up = state == "link-up"
            self.switch_event({"kind": "link", "up": up, "reason": "" if up else "cable cut"})
        else:
            self.switch_event({"kind": "agent", "device": end_point, "state": state})


TestTree = TreeMachine.TestCase


def teardown_module() -> None:
    """What the runs covered: responses by name and result, sequences, inputs."""
    for key, count in sorted(STATS.items()):
        print(f"{key}: {count}")

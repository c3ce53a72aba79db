"""The one test driver: a real engine, a real switch driver and the real
``run`` line-protocol runner (``adapters.runner``), fed one input at a time,
and the one set of readers of what it writes.

Every output is a line of the line protocol (spec/harness.md): ``{"to":
"bridge", "message": ..., "rule": ...}``, ``{"to": "switch", "command":
...}``, ``{"error": ...}``, ``{"protocol_error": ...}``. The readers below
(:func:`responses`, :func:`events`, :func:`commands`, ...) take such a list:
what one input caused (a driver's answer, a group of a scenario run).

The switch driver is the simulated PBX (commands cause the events a PBX
would report), or, with ``scripted=True``, a switch that the test plays:
commands cause nothing, and the test feeds every switch event by hand.
``switch_acknowledges`` (default: ``scripted``) says whether the engine
waits for a ``result`` event for each command.
"""

from __future__ import annotations

import io
import itertools
import json
from collections import deque
from typing import IO, Any

import attrs

from adapters.bridge import ReferenceBridge, Send
from adapters.runner import Runner
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.switch import Switch
from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory
from fsm.engine import Engine, Targets
from fsm.machines import INTERACTION, StateMachine
from fsm.messages import EVENT, QUERY, REQUEST, RESPONSE
from fsm.policy import Policy
from fsm.snapshot import snapshot

#: the control destination, the agent's session and its telephony channel
#: once logged in (harness.md: the login script of ``run``)
CONTROL = "proc-1.CONTROL"
SESSION = "S1"
GROUP = "S1.G1"
CH = "S1.G1.1001"
#: the agent's end-point (the default agent directory: agent-1 at 1001)
DEVICE = "1001"
#: what one input caused: its output lines, without the done marker
Out = list[dict[str, Any]]
#: the commands an agent's login sends (login, ready): a test's own
#: commands count on from there (H-CMD)
LOGIN_COMMANDS = 2


def cmd_id(n: int) -> str:
    """The id of the ``n``-th command a test's inputs cause after the login (H-CMD)."""
    return f"cmd-{n + LOGIN_COMMANDS}"


#: the switch events that name the device when they start a call (H-SW-1)
_DEVICE_KINDS = frozenset({"offered", "dialing"})


class Driver:
    """A real engine, its switch driver and the ``run`` runner around them."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        scripted: bool = False,
        switch_acknowledges: bool | None = None,
        targets: Targets | None = None,
        trace: IO[str] | None = None,
        interaction_machine: StateMachine = INTERACTION,
        login: bool = True,
        directory: AgentDirectory = DEFAULT_DIRECTORY,
        **settings: Any,
    ) -> None:
        self.switch_driver: Switch = ScriptedSwitch() if scripted else SimulatedSwitch()
        acknowledges = scripted if switch_acknowledges is None else switch_acknowledges
        self.engine = Engine(
            policy or Policy(**settings),
            targets,
            directory=directory,
            switch_acknowledges=acknowledges,
            interaction_machine=interaction_machine,
        )
        self.runner = Runner(self.engine, self.switch_driver, trace)
        self.inputs = 0
        self._numbers = itertools.count(1)
        self.scripted = scripted
        if login:
            self.login()

    def login(self, session: str = SESSION, agent: str = "agent-1", device: str = DEVICE) -> None:
        """The start-up and an agent's login, as a bridge plays them
        (harness.md): status, capabilities, session, channel group and
        channel inits, activate, ready. A scripted switch is answered with
        the agent events a switch would report."""
        numbers = itertools.count(len(self.engine.sessions) * 10 + 1)

        def send(name: str, target: str, properties: dict[str, Any] | None = None) -> Sent:
            return self.message(name, target, properties, request_id=f"login-{next(numbers)}")

        if not self.engine.control.reporting:
            for name in ("cti.request.status", "cti.query.capabilities"):
                assert "SUCCESS" == send(name, CONTROL).result
        assert "SUCCESS" == send("session.query.init", session, {"name": agent}).result
        group = f"{session}.G1"
        assert "SUCCESS" == send("channelgroup.query.init", group).result
        channel = f"{group}.{device}"
        assert "SUCCESS" == send("channel.query.init", channel).result
        for name, state in (("activate", "loggedin"), ("ready", "ready")):
            sent = send(f"channel.request.{name}", channel)
            if sent.result is None and self.scripted:
                event = {"kind": "agent", "device": device, "state": state}
                sent = sent.later(self.feed({"from": "switch", "event": event}))
            expected = "SUCCESS"
            assert expected == sent.result, f"{name}: {sent.outputs}"

    # -- inputs

    def feed(self, item: object) -> Out:
        """One input (a JSON value) as a line; its outputs."""
        self.inputs += 1
        out = self.runner.feed(json.dumps(item), self.inputs)
        assert {"done": self.inputs} == out[-1]
        return out[:-1]

    def raw(self, line: str) -> Out:
        """One input line as it is, whatever it holds; its outputs."""
        self.inputs += 1
        return self.runner.feed(line, self.inputs)[:-1]

    def switch(self, kind: str, call: str = "c1", **fields: Any) -> Out:
        """A switch event; one that may start a call names the agent's
        device unless ``device`` is given (None: left out)."""
        if kind in _DEVICE_KINDS:
            fields.setdefault("device", DEVICE)
            if fields["device"] is None:
                del fields["device"]
        return self.feed({"from": "switch", "event": {"kind": kind, "call": call, **fields}})

    def new_request_id(self) -> str:
        return f"r{next(self._numbers)}"

    def message(
        self,
        name: str,
        target: str,
        properties: dict[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> Sent:
        """A query or request of the bridge, and what it caused."""
        rid = request_id if request_id is not None else self.new_request_id()
        kind = QUERY if ".query." in name else REQUEST
        message: dict[str, Any] = {"header": {"type": kind, "name": name, "target": target, "requestId": rid}}
        if properties is not None:
            message["body"] = properties
        return Sent(rid, self.feed({"from": "bridge", "message": message}))

    def msg(
        self,
        name: str,
        target: str | None = None,
        rid: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Out:
        """:meth:`message` to ``target`` (default: interaction c1 of the channel), its outputs."""
        return self.message(name, target or f"{CH}.c1", properties, request_id=rid).outputs

    def succeed(self, name: str, target: str, properties: dict[str, Any] | None = None) -> Sent:
        """A message that must be answered SUCCESS at once."""
        sent = self.message(name, target, properties)
        expected = "SUCCESS"
        assert expected == sent.result, f"{name} to {target}: {sent.outputs}"
        return sent

    def fail(self, name: str, target: str, properties: dict[str, Any] | None = None) -> Sent:
        """A message that must be answered FAILURE at once."""
        sent = self.message(name, target, properties)
        expected = "FAILURE"
        assert expected == sent.result, f"{name} to {target}: {sent.outputs}"
        return sent

    # -- the messages of the common call c1, by short name

    def req(self, short: str, target: str | None = None, rid: str | None = None, **props: Any) -> Out:
        return self.msg(f"interaction.request.{short}", target, rid, props or None)

    def conv(self, short: str, bridge_id: str = "b1", **props: Any) -> Out:
        return self.msg(f"conversation.request.{short}", f"{CH}.c1.{bridge_id}", None, props or None)

    def init(self, target: str | None = None) -> dict[str, Any]:
        return body(self.msg("interaction.query.init", target))

    def conv_init(self, bridge_id: str = "b1") -> dict[str, Any]:
        return body(self.msg("conversation.query.init", f"{CH}.c1.{bridge_id}"))

    def create(self, bridge_id: str, nativeid: str) -> Out:
        return self.req("createconversation", id=bridge_id, nativeid=nativeid)

    def talking_call(self) -> None:
        """An inbound call c1, initialized, its primary created as b1, accepted."""
        self.switch("offered", ani="5551000")
        self.init()
        assert ok(self.create("b1", "c1"))
        self.conv_init("b1")
        assert ok(self.req("accept"))

    def consulting_call(self, destination: str = "200") -> str:
        """talking_call plus a consult (created as b2 and initialized)."""
        self.talking_call()
        out = self.req("consult", destination=destination)
        nativeid: str = responses(out)[-1]["body"]["nativeid"]
        assert ok(self.create("b2", nativeid))
        self.conv_init("b2")
        return nativeid

    def rule(self, out: Out) -> str:
        """The rule ID behind the last FAILURE response in ``out``."""
        return rule(out)


def logged_in(policy: Policy | None = None, **kwargs: Any) -> Engine:
    """An engine with agent-1 logged in as session S1 (the Driver's login),
    for a test or benchmark that feeds the engine directly."""
    return Driver(policy, **kwargs).engine


def with_device(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a switch event, naming the agent's device when its
    kind may start a call (H-SW-1) and no device is given."""
    if kind in _DEVICE_KINDS and "device" not in fields:
        return {**fields, "device": DEVICE}
    return fields


def logged_in_bridge() -> ReferenceBridge:
    """A reference bridge that has played the start-up and agent-1's login
    with a real engine and the simulated switch (F-CTRL-2, F-SESS-1)."""
    bridge = ReferenceBridge()
    runner = Runner(Engine(), SimulatedSwitch())
    queue = deque(bridge.start())
    inputs = 0
    while queue:
        output = queue.popleft()
        if isinstance(output, Send):
            inputs += 1
            for entry in runner.feed_item({"from": "bridge", "message": output.message}, inputs):
                if entry.get("to") == "bridge":
                    queue.extend(bridge.receive(entry["message"]))
    assert bridge.all_ready
    assert [] == bridge.violations
    return bridge


def login_trace() -> list[str]:
    """The trace lines of the start-up and agent-1's login (to put before
    hand-made trace lines that need the channel initialized)."""
    buffer = io.StringIO()
    Driver(trace=buffer)
    return buffer.getvalue().splitlines()


@attrs.frozen
class Sent:
    """One bridge message sent and the outputs it caused."""

    request_id: str
    outputs: Out

    def responses(self) -> list[dict[str, Any]]:
        return [m for m in responses(self.outputs) if m["header"].get("requestId") == self.request_id]

    def response(self) -> dict[str, Any] | None:
        """The response to this message, or None while it is pending. Never two (S-REQ-1)."""
        found = self.responses()
        assert len(found) <= 1, f"more than one response to {self.request_id}: {found}"
        return found[0] if found else None

    @property
    def result(self) -> str | None:
        """SUCCESS or FAILURE, or None while the message is pending."""
        response = self.response()
        return None if response is None else str(response["header"]["result"])

    def error_message(self) -> str | None:
        response = self.response()
        return None if response is None else response["header"].get("errorMessage")

    def refusal_rule(self) -> str | None:
        """The rule its FAILURE response's line names (H-CMD; None if there is none)."""
        for entry in self.outputs:
            if entry.get("to") == "bridge" and entry["message"]["header"].get("requestId") == self.request_id:
                found: str | None = entry.get("rule")
                return found
        return None

    def commands(self) -> list[dict[str, Any]]:
        return commands(self.outputs)

    def events(self) -> list[dict[str, Any]]:
        return events(self.outputs)

    def later(self, outputs: Out) -> Sent:
        """This message, with what a later input caused (its response may be there)."""
        return Sent(self.request_id, outputs)


# --------------------------------------------------------------------------
# Reading outputs.


def messages(out: Out) -> list[dict[str, Any]]:
    """Every message to the bridge, in order."""
    return [o["message"] for o in out if o.get("to") == "bridge"]


def responses(out: Out) -> list[dict[str, Any]]:
    return [m for m in messages(out) if m["header"].get("type") == RESPONSE]


def events(out: Out) -> list[dict[str, Any]]:
    return [m for m in messages(out) if m["header"].get("type") == EVENT]


def event_names(out: Out) -> list[str]:
    return [m["header"]["name"] for m in events(out)]


def commands(out: Out) -> list[dict[str, Any]]:
    return [o["command"] for o in out if o.get("to") == "switch"]


def errors(out: Out) -> list[str]:
    """The messages of the ``error`` outputs."""
    return [o["error"]["message"] for o in out if "error" in o]


def error_entries(out: Out) -> list[dict[str, Any]]:
    """The ``error`` outputs themselves."""
    return [o["error"] for o in out if "error" in o]


def protocol_errors(out: Out) -> list[dict[str, Any]]:
    return [o["protocol_error"] for o in out if "protocol_error" in o]


def result(out: Out) -> str:
    """The result of the one response in ``out``."""
    found = responses(out)
    assert len(found) == 1, out
    value: str = found[0]["header"]["result"]
    return value


def ok(out: Out) -> bool:
    return result(out) == "SUCCESS"


def error_message(out: Out) -> str:
    text: str = responses(out)[-1]["header"]["errorMessage"]
    return text


def body(out: Out) -> dict[str, Any]:
    """The body of the one response in ``out``, which must be SUCCESS."""
    found = responses(out)
    assert 1 == len(found), out
    assert "SUCCESS" == found[0]["header"]["result"], out
    value: dict[str, Any] = found[0]["body"]
    return value


def rule(out: Out) -> str:
    """The rule ID behind the last FAILURE response in ``out``: its
    output line carries it (harness.md H-CMD)."""
    rules = [o["rule"] for o in out if o.get("to") == "bridge" and "rule" in o]
    assert rules, f"no FAILURE with a rule in {out}"
    found: str = rules[-1]
    return found


def state(engine: Engine) -> dict[str, Any]:
    """The engine's snapshot less the requestIds each destination has seen:
    what a refused message must leave unchanged (D-BAD), while D-DUP
    remembers its requestId."""
    snap = snapshot(engine)
    for interaction in snap["interactions"]:
        interaction["request_ids"] = {}
        for leg in interaction["legs"].values():
            leg["request_ids"] = {}
    for views in snap["views"].values():
        for view in views:
            view["request_ids"] = {}
            for leg in view["legs"].values():
                leg["request_ids"] = {}
    snap["control"]["request_ids"] = {}
    for kind in ("sessions", "groups", "channels"):
        for dest in snap[kind]:
            dest["request_ids"] = {}
    return snap

"""An in-process driver for rule tests: a real engine, a real switch driver
and the real ``run`` line-protocol runner, fed one input at a time."""

from __future__ import annotations

import json
from typing import Any

from adapters.runner import Runner
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.switch import Switch
from fsm.engine import Engine, Targets
from fsm.policy import Policy
from fsm.snapshot import snapshot

CH = "session-1.channel-1"
Out = list[dict[str, Any]]


class Drive:
    def __init__(self, *, scripted: bool = False, targets: Targets | None = None, **policy: Any):
        self.switch: Switch = ScriptedSwitch() if scripted else SimulatedSwitch()
        self.engine = Engine(Policy(**policy), targets, switch_acknowledges=scripted)
        self.runner = Runner(self.engine, self.switch)
        self.inputs = 0
        self.rid = 0

    def send(self, item: object) -> Out:
        self.inputs += 1
        out = self.runner.feed(json.dumps(item), self.inputs)
        assert {"done": self.inputs} == out[-1]
        return out[:-1]

    def rule(self, out: Out) -> str:
        """The rule ID behind the last FAILURE response in ``out``: its
        output line carries it (harness.md H-CMD)."""
        rules = [o["rule"] for o in out if o.get("to") == "bridge" and "rule" in o]
        assert rules, f"no FAILURE with a rule in {out}"
        rule: str = rules[-1]
        return rule

    def raw(self, line: str) -> Out:
        self.inputs += 1
        return self.runner.feed(line, self.inputs)[:-1]

    def sw(self, kind: str, call: str = "c1", **fields: Any) -> Out:
        return self.send({"from": "switch", "event": {"kind": kind, "call": call, **fields}})

    def msg(
        self,
        name: str,
        target: str | None = None,
        rid: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> Out:
        if rid is None:
            self.rid += 1
            rid = f"r{self.rid}"
        kind = "cti.query" if ".query." in name else "cti.request"
        message: dict[str, Any] = {
            "header": {"type": kind, "name": name, "target": target or f"{CH}.c1", "requestId": rid}
        }
        if properties is not None:
            message["body"] = properties
        return self.send({"from": "bridge", "message": message})

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
        self.sw("offered", ani="5551000")
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


def messages(out: Out) -> list[dict[str, Any]]:
    return [o["message"] for o in out if o.get("to") == "bridge"]


def responses(out: Out) -> list[dict[str, Any]]:
    return [m for m in messages(out) if m["header"]["type"] == "cti.response"]


def events(out: Out) -> list[dict[str, Any]]:
    return [m for m in messages(out) if m["header"]["type"] == "cti.event"]


def event_names(out: Out) -> list[str]:
    return [m["header"]["name"] for m in events(out)]


def commands(out: Out) -> list[dict[str, Any]]:
    return [o["command"] for o in out if o.get("to") == "switch"]


def errors(out: Out) -> list[str]:
    return [o["error"]["message"] for o in out if "error" in o]


def result(out: Out) -> str:
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
    found = responses(out)
    assert len(found) == 1 and found[0]["header"]["result"] == "SUCCESS", out
    value: dict[str, Any] = found[0]["body"]
    return value


def state(engine: Engine) -> dict[str, Any]:
    """The engine's snapshot less the requestIds each destination has seen:
    what a refused message must leave unchanged (D-BAD), while D-DUP
    remembers its requestId."""
    snap = snapshot(engine)
    for interaction in snap["interactions"]:
        interaction["request_ids"] = {}
        for leg in interaction["legs"].values():
            leg["request_ids"] = {}
    return snap

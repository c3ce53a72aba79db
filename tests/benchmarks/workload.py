"""Real engine inputs for the benchmarks, as bytes, and the check that they are real.

A :class:`Step` is one thing that happens to the engine: a bridge message
(or a switch event from outside: a call offered, a party answering) and the
switch events the simulated switch reports for the commands the engine
issues in return, in the order ``telephony-fsm run`` feeds them. Scripts are
written ahead of time so that timing them measures the engine alone;
:class:`Checker` plays every script once on a scratch engine with a real
:class:`~adapters.simulated.SimulatedSwitch` and fails unless each scripted
event is exactly what that switch reports, each request gets its one
response with the expected result, and nothing is an error. It returns the
outputs of every input, which the floor encodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from adapters.simulated import SimulatedSwitch
from adapters.switch import dispatch
from fsm.codec import dumpb, dumps, loads
from fsm.engine import BridgeError, Engine, Output, SwitchError, ToBridge, ToSwitch
from fsm.intake import parse_switch_event
from fsm.messages import FAILURE, QUERY, REQUEST, SUCCESS, to_wire, wire_bytes
from fsm.switch_events import command_to_wire, event_to_wire
from tests.driver import logged_in, with_device

CHANNEL: Final = "S1.G1.1001"
BRIDGE: Final = "bridge"
SWITCH: Final = "switch"
DEMO: Final = Path(__file__).resolve().parents[2] / "adapters" / "scenarios" / "full-call.jsonl"

Input = tuple[str, bytes]
Wire = dict[str, Any]

_I = "interaction.request."
_C = "conversation.request."


class BenchError(Exception):
    """A script no longer drives the engine the way it claims to."""


@attrs.frozen
class Step:
    """One bridge message or outside switch event, with the switch events it causes."""

    label: str
    inputs: tuple[Input, ...]
    #: SUCCESS or FAILURE: the result of the response to ``inputs[0]``, a
    #: bridge message; None for a switch event
    expect: str | None = None


# --------------------------------------------------------------------------
# Writing scripts.


def switch_event(kind: str, call: str, **fields: Any) -> bytes:
    """A switch event as ``event_to_wire`` writes it."""
    return dumps({"kind": kind, "call": call, **with_device(kind, fields)}).encode()


class Writer:
    """Writes calls as the bridge and the simulated switch send them. Leg
    names follow the simulated switch (``sim-N``), starting after
    ``legs_made``; requestIds are unique within a writer."""

    def __init__(self, legs_made: int = 0, prefix: str = "") -> None:
        self.legs_made = legs_made
        self.prefix = prefix
        self.requests = 0

    def new_leg(self) -> str:
        self.legs_made += 1
        return f"sim-{self.legs_made}"

    def request(
        self,
        label: str,
        name: str,
        target: str,
        properties: dict[str, str] | None = None,
        events: Sequence[bytes] = (),
        expect: str = SUCCESS,
    ) -> Step:
        self.requests += 1
        headers = {
            "type": QUERY if ".query." in name else REQUEST,
            "name": name,
            "target": target,
            "requestId": f"{{{self.prefix}00000000-0000-4000-8000-{self.requests:012d}}}",
        }
        message: Wire = {"header": headers}
        if properties is not None:
            message["body"] = properties
        raw = dumps(message).encode()
        return Step(label, ((BRIDGE, raw), *((SWITCH, e) for e in events)), expect)

    def offered(self, call: str) -> Step:
        data = {"account": {"id": "42", "tier": "gold"}}
        return outside("offered", call, ani="5551000", dnis="800", data=data)

    def opened(self, call: str) -> list[Step]:
        """Offered, initialized, its primary conversation created and
        initialized, accepted: STARTED.none with one conversation."""
        it = f"{CHANNEL}.{call}"
        return [
            self.offered(call),
            self.request("init", "interaction.query.init", it),
            self.create(it, "conv-1", call),
            self.request("init", "conversation.query.init", f"{it}.conv-1"),
            self.request("accept", _I + "accept", it, events=[switch_event("connected", call)]),
        ]

    def create(self, it: str, bridge_id: str, nativeid: str) -> Step:
        props = {"id": bridge_id, "nativeid": nativeid}
        return self.request("createconversation", _I + "createconversation", it, props)

    def consult(self, call: str, destination: str) -> tuple[Step, str]:
        """A consult the simulated switch places at once: primary held, the
        new leg dialing, alerting, connected. Returns the step and the leg."""
        leg = self.new_leg()
        events = [
            switch_event("held", call),
            switch_event("dialing", leg, destination=destination),
            switch_event("alerting", leg),
            switch_event("connected", leg),
        ]
        it = f"{CHANNEL}.{call}"
        return self.request("consult", _I + "consult", it, {"destination": destination}, events), leg

    def live_call(self, call: str) -> list[Step]:
        """An interaction with two conversations, the second a consult leg,
        both created by createconversation: STARTED.connected.consult."""
        it = f"{CHANNEL}.{call}"
        consult, leg = self.consult(call, "200")
        return [
            *self.opened(call),
            consult,
            self.create(it, "conv-2", leg),
            self.request("init", "conversation.query.init", f"{it}.conv-2"),
        ]

    def phone_consult_call(self, call: str) -> list[Step]:
        """As :meth:`live_call`, but the agent dials the consult on the phone
        (S-EVT-1): the engine picks the interaction the new leg belongs to."""
        it = f"{CHANNEL}.{call}"
        leg = f"phone-{call}"  # named by the phone, not by a switch command
        return [
            *self.opened(call),
            outside("held", call),
            outside("dialing", leg, destination="200"),
            outside("alerting", leg),
            outside("connected", leg),
            self.create(it, "conv-2", leg),
            self.request("init", "conversation.query.init", f"{it}.conv-2"),
        ]

    def dispose(self, call: str) -> Step:
        return self.request("dispose", _I + "dispose", f"{CHANNEL}.{call}")

    def mix_call(self, call: str) -> list[Step]:
        """The demo's call (adapters/scenarios/full-call.jsonl) plus three
        refused requests: a transfer with no consult (D-XFER-1 table), a
        second consult while one is up (D-CONS-2), a request to the disposed
        interaction (D-LIFE-4)."""
        it = f"{CHANNEL}.{call}"
        first, leg1 = self.consult(call, "200")
        second, leg2 = self.consult(call, "300")
        return [
            *self.opened(call),
            self.request("refused", _I + "consulttransfer", it, expect=FAILURE),
            first,
            self.create(it, "conv-2", leg1),
            self.request("init", "conversation.query.init", f"{it}.conv-2"),
            self.request("refused", _I + "consult", it, {"destination": "300"}, expect=FAILURE),
            # S-ALT-1: the consult leg is active; alternate holds it, retrieves the primary
            self.request(
                "alternate",
                _I + "alternate",
                it,
                events=[switch_event("held", leg1), switch_event("retrieved", call)],
            ),
            self.request(
                "alternate",
                _I + "alternate",
                it,
                events=[switch_event("held", call), switch_event("retrieved", leg1)],
            ),
            self.request(
                "conference",
                _I + "consultconference",
                it,
                events=[switch_event("retrieved", call), switch_event("ended", leg1, cause="conferenced")],
            ),
            self.request("dispose", _C + "dispose", f"{it}.conv-2"),
            second,
            self.create(it, "conv-3", leg2),
            self.request("init", "conversation.query.init", f"{it}.conv-3"),
            self.request(
                "transfer",
                _I + "consulttransfer",
                it,
                events=[
                    switch_event("ended", leg2, cause="transferred"),
                    switch_event("ended", call, cause="transferred"),
                ],
            ),
            self.request("setdata", _I + "setdata", it, {"disposition": "transferred"}),
            self.request("complete", _I + "complete", it, {"wrapup": "sales"}),
            self.dispose(call),
            self.request("refused", _I + "setdata", it, {"late": "yes"}, expect=FAILURE),
        ]


def outside(kind: str, call: str, **fields: Any) -> Step:
    """A switch event from outside the engine (the customer, the far party)."""
    return Step(kind, ((SWITCH, switch_event(kind, call, **fields)),))


def demo_items() -> tuple[list[Any], list[Any]]:
    """The shipped full call's inputs: the login (up to the offer), and the call."""
    items = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    offer = next(n for n, item in enumerate(items) if item.get("from") == "switch")
    return items[:offer], items[offer:]


def login_lines() -> list[str]:
    """The login of the shipped full call, as ``run`` input lines."""
    return [dumps(item) for item in demo_items()[0]]


def demo_lines(calls: int, first: int = 1) -> Iterator[str]:
    """The demo's call as ``telephony-fsm run`` input lines, ``calls`` times,
    call i (from ``first``) named ``c<i>`` with consult legs ``sim-<2i-1>``
    and ``sim-<2i>`` (the simulated switch names legs in order)."""
    template = demo_items()[1]
    for i in range(first, first + calls):
        names = {"c1": f"c{i}", "sim-1": f"sim-{2 * i - 1}", "sim-2": f"sim-{2 * i}"}
        for item in template:
            yield dumps(_rename(item, names, f"{CHANNEL}.c{i}"))


def _rename(value: Any, names: dict[str, str], target: str) -> Any:
    if isinstance(value, dict):
        return {k: _rename(v, names, target) for k, v in value.items()}
    if isinstance(value, str):
        if value.startswith(f"{CHANNEL}.c1"):
            rest = value.removeprefix(f"{CHANNEL}.c1")
            if rest == "" or rest.startswith("."):
                return target + rest
        return names.get(value, value)
    return value


# --------------------------------------------------------------------------
# Playing scripts.


def encode(output: Output) -> bytes:
    """An output as the bytes an adapter sends: the message or command JSON."""
    if isinstance(output, ToBridge):
        return wire_bytes(output.message)
    if isinstance(output, ToSwitch):
        return dumpb(command_to_wire(output.command), floats=False)
    return dumpb({"rule": output.rule, "message": output.message}, floats=False)


def encode_wire(w: Wire) -> bytes:
    """What :func:`encode` writes for the output whose wire dict is ``w``
    (what the client writes holds no float, as ``wire_bytes`` assumes)."""
    return dumpb(w, floats=False)


def wire(output: Output) -> Wire:
    """An output as the JSON-ready dict :func:`encode` writes."""
    if isinstance(output, ToBridge):
        return to_wire(output.message)
    if isinstance(output, ToSwitch):
        return command_to_wire(output.command)
    return {"rule": output.rule, "message": output.message}


def play(engine: Engine, step: Step) -> None:
    """The measured path: bytes in, every output encoded to bytes."""
    receive_bridge, receive_switch = engine.receive_bridge, engine.receive_switch
    for source, raw in step.inputs:
        outputs = receive_bridge(raw) if source == BRIDGE else receive_switch(loads(raw))
        for output in outputs:
            encode(output)


def feed(engine: Engine, steps: Iterable[Step]) -> None:
    """The same inputs as :func:`play`, outputs left unencoded: for building
    the live interactions a measurement runs beside."""
    for step in steps:
        for source, raw in step.inputs:
            if source == BRIDGE:
                engine.receive_bridge(raw)
            else:
                engine.receive_switch(json.loads(raw))


class Checker:
    """Plays scripts on a scratch engine and a real simulated switch; see the
    module docstring. :meth:`check` returns the wire outputs of each input."""

    def __init__(self, legs_made: int = 0) -> None:
        self.engine = logged_in()
        self.switch = SimulatedSwitch(legs_made=legs_made)

    def check(self, step: Step) -> list[list[Wire]]:
        source, raw = step.inputs[0]
        scripted = [json.loads(r) for _, r in step.inputs[1:]]
        recorded: list[list[Wire]] = []
        if source == SWITCH:
            event = parse_switch_event(json.loads(raw))
            self.switch.observe(event)
            self._drain(step, self.engine.receive_switch(event), scripted, recorded)
        else:
            self._drain(step, self.engine.receive_bridge(raw), scripted, recorded)
        if scripted:
            raise BenchError(f"{step.label}: the switch did not report {scripted}")
        if step.expect is not None:
            request_id = json.loads(raw)["header"]["requestId"]
            results = [
                w["header"].get("result")
                for out in recorded
                for w in out
                if "header" in w and w["header"].get("requestId") == request_id
            ]
            if results != [step.expect]:
                raise BenchError(f"{step.label} {request_id}: expected [{step.expect}], got {results}")
        return recorded

    def check_all(self, steps: Sequence[Step]) -> list[list[list[Wire]]]:
        return [self.check(step) for step in steps]

    def _drain(
        self, step: Step, outputs: list[Output], scripted: list[Wire], recorded: list[list[Wire]]
    ) -> None:
        recorded.append([wire(o) for o in outputs])
        for output in outputs:
            if isinstance(output, BridgeError | SwitchError):
                raise BenchError(f"{step.label}: {output}")
        for output in outputs:
            if not isinstance(output, ToSwitch):
                continue
            for event in dispatch(self.switch, output.command):
                reported = event_to_wire(event)
                if not scripted or scripted[0] != reported:
                    raise BenchError(f"{step.label}: switch reported {reported}, script has {scripted[:1]}")
                scripted.pop(0)
                self._drain(step, self.engine.receive_switch(event), scripted, recorded)

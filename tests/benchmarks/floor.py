"""The floor every figure is compared with, measured in the same process.

A plain dict-table machine of the same states and triggers (the tables of
:mod:`fsm.machines`, as ``(state, trigger) -> state`` dicts) over slotted
models kept in dicts by target and call id, fed the same input bytes with
the same JSON decode and no validation, and encoding the same output
messages with the same encoder. The JSON library is the engine's: a bridge
message is decoded with ``orjson.loads`` (as ``fsm.intake`` reads a valid
message), a switch event with :func:`fsm.codec.loads` (as the measured path
decodes it for the engine), and outputs are encoded as
:func:`tests.benchmarks.workload.encode` encodes them. No guards, no
catalog, no `transitions`, no cattrs, no attrs: what is left is the cost a
request cannot avoid in Python with that JSON library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any, Final

import orjson

from fsm import machines as m
from fsm.catalog import CATALOG
from fsm.codec import dumps, loads
from tests.benchmarks.workload import BRIDGE, CHANNEL, Step, Wire, encode_wire


def _table(machine: m.StateMachine) -> dict[tuple[str, str], str]:
    return {(e.source, e.trigger): e.dest or e.source for e in machine.edges}


INTERACTION: Final = _table(m.INTERACTION)
CONVERSATION: Final = _table(m.CONVERSATION)
LIFECYCLE: Final = _table(m.LIFECYCLE)
#: message name -> trigger ("init" for the init queries)
TRIGGERS: Final = {
    name: spec.trigger or ("init" if name.endswith(".init") else "") for name, spec in CATALOG.items()
}
#: (role, new leg state) -> interaction triggers to try, in order
DERIVED: Final = {
    ("primary", m.TALKING): ("primary_connected", "primary_talking"),
    ("primary", m.ENDED): ("primary_ended",),
    ("consult", m.TALKING): ("consult_connected", "consult_talking"),
    ("consult", m.ENDED): ("consult_ended",),
}


class Model:
    """An interaction (``legs`` set) or a leg (``owner`` set)."""

    __slots__ = ("legs", "lifecycle", "owner", "role", "state", "target")

    def __init__(self, state: str, target: str | None, role: str, owner: Model | None) -> None:
        self.state = state
        self.lifecycle = m.ABSENT if owner is not None else m.SETUP
        self.target = target
        self.role = role
        self.owner = owner
        self.legs: dict[str, Model] | None = None if owner is not None else {}


class Floor:
    def __init__(self) -> None:
        self.destinations: dict[str, Model] = {}
        self.calls: dict[str, Model] = {}
        self.requested: dict[int, Model] = {}
        self.newest: Model | None = None

    def bridge(self, message: dict[str, Any]) -> None:
        headers = message["header"]
        target = headers["target"]
        dest = self.destinations.get(target)
        if dest is None:
            return
        trigger = TRIGGERS.get(headers["name"], "")
        if trigger in ("init", "dispose"):
            dest.lifecycle = LIFECYCLE.get((dest.lifecycle, trigger), dest.lifecycle)
            if trigger == "dispose":
                self._dispose(dest)
            return
        table = INTERACTION if dest.legs is not None else CONVERSATION
        state = table.get((dest.state, trigger))
        if state is None:
            return
        dest.state = state
        if state == m.S_REQUESTED:
            self.requested[id(dest)] = dest
        if trigger == "createconversation" and dest.legs is not None:
            props = message["body"]
            leg = dest.legs.get(props["nativeid"])
            if leg is not None and leg.target is None:
                leg.target = f"{target}.{props['id']}"
                leg.lifecycle = m.SETUP
                self.destinations[leg.target] = leg

    def switch(self, event: dict[str, Any]) -> None:
        kind, call = event["kind"], event["call"]
        leg = self.calls.get(call)
        if leg is None:
            if kind == "offered":
                self._new(call)
            elif kind == "dialing":
                owner = self.requested.popitem()[1] if self.requested else self.newest
                if owner is not None and owner.legs is not None:
                    leg = Model(m.DIALING, None, "consult", owner)
                    owner.legs[call] = self.calls[call] = leg
                    owner.state = INTERACTION.get((owner.state, "consult_named"), m.S_RINGING)
            return
        state = CONVERSATION.get((leg.state, kind))
        if state is None or state == leg.state:
            return
        leg.state = state
        owner = leg.owner
        assert owner is not None
        for trigger in DERIVED.get((leg.role, state), ()):
            new = INTERACTION.get((owner.state, trigger))
            if new is not None:
                owner.state = new
                break

    def _new(self, call: str) -> None:
        target = f"{CHANNEL}.{call}"
        interaction = Model(m.ALERTING, target, "", None)
        leg = Model(m.ALERTING, None, "primary", interaction)
        assert interaction.legs is not None
        interaction.legs[call] = leg
        self.destinations[target] = interaction
        self.calls[call] = leg
        self.newest = interaction

    def _dispose(self, dest: Model) -> None:
        assert dest.target is not None
        self.destinations.pop(dest.target, None)
        if dest.legs is None:
            return
        for call, leg in dest.legs.items():
            if leg.target is not None:
                self.destinations.pop(leg.target, None)
            self.calls.pop(call, None)


def play(floor: Floor, step: Step, outputs: Sequence[Sequence[Wire]]) -> None:
    """The floor of :func:`tests.benchmarks.workload.play`: decode, look up,
    encode the same outputs."""
    for (source, raw), wires in zip(step.inputs, outputs, strict=True):
        if source == BRIDGE:
            floor.bridge(orjson.loads(raw))
        else:
            floor.switch(loads(raw))
        for w in wires:
            encode_wire(w)


def feed_line(floor: Floor, line: str) -> None:
    """The floor of one ``telephony-fsm run`` input line (outputs aside)."""
    item = loads(line)
    source = item.get("from")
    if source == "bridge":
        floor.bridge(item["message"])
    elif source == "switch":
        floor.switch(item["event"])


def run_lines(
    stdin: IO[str],
    stdout: IO[str],
    template: Sequence[Sequence[Wire]],
    prefix: Sequence[Sequence[Wire]] = (),
) -> None:
    """The floor of ``telephony-fsm run``: the same loop, decode, a table
    lookup, and the same output lines (those of the login's line, ``prefix``,
    then of the demo call's line in the same place, ``template``), flushed
    per input line as `run` does."""
    floor = Floor()
    period = len(template)
    write, flush = stdout.write, stdout.flush
    first = len(prefix)
    for lineno, line in enumerate(stdin, start=1):
        if line.strip():
            feed_line(floor, line)
            outputs = prefix[lineno - 1] if lineno <= first else template[(lineno - 1 - first) % period]
            for entry in outputs:
                write(dumps(entry, floats=False) + "\n")
        write(dumps({"done": lineno}, floats=False) + "\n")
        flush()

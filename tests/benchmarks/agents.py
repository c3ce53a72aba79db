"""Item 6: the cost of one input beside many logged-in agents.

Two engines are built side by side, one with ``few`` agents and one with
``many`` (each agent logged in through its session, channel group and
channel, with two calls: one talking, one ringing). The same cycle of
inputs then runs on one agent's talking call in both, round-robin: a hold
and a retrieve of its conversation (each a request, its switch command and
the switch's event), a setdata, and a new call offered to that agent,
initialized and disposed. The figure is the median cost of one input of
the cycle beside ``many`` agents; its reference is the same median beside
``few`` agents, measured in the same run (flat within 20%).
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from adapters.runner import Runner
from adapters.simulated import SimulatedSwitch
from adapters.state import StateStore
from fsm.codec import dumps
from fsm.directory import Agent, AgentDirectory
from fsm.engine import Engine
from fsm.snapshot import snapshot
from tests.benchmarks.report import Report, Row, Sizes, median, ns, progress
from tests.benchmarks.workload import BenchError

#: the cycle's rounds per size (each a handful of inputs)
ROUNDS: Final = 400


class Agents:
    """An engine with ``count`` agents logged in, two calls each, fed as ``run`` lines."""

    def __init__(self, count: int) -> None:
        agents = tuple(Agent(f"agent-{k}", str(100_000 + k)) for k in range(1, count + 1))
        self.runner = Runner(Engine(directory=AgentDirectory(agents)), SimulatedSwitch())
        self.count = count
        #: called after every input (a test saves the engine there)
        self.after: Callable[[], None] | None = None
        self.inputs = 0
        self.ids = 0
        self.request("cti.request.status", "proc-1.CONTROL")
        for k in range(1, count + 1):
            session, channel = f"S{k}", f"S{k}.G1.{100_000 + k}"
            self.request("session.query.init", session, {"name": f"agent-{k}"})
            self.request("channelgroup.query.init", f"{session}.G1")
            self.request("channel.query.init", channel)
            self.request("channel.request.activate", channel)
            self.request("channel.request.ready", channel)
            self.call(k, f"t{k}", talking=True)
            self.call(k, f"r{k}", talking=False)

    def feed(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self.inputs += 1
        out = self.runner.feed(dumps(item), self.inputs)
        if self.after is not None:
            self.after()
        return out

    def request(self, name: str, target: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self.ids += 1
        kind = "cti.query" if ".query." in name else "cti.request"
        header = {"type": kind, "name": name, "target": target, "requestId": f"q{self.ids}"}
        out = self.feed({"from": "bridge", "message": {"header": header, "body": body or {}}})
        if any(o.get("to") == "bridge" and o["message"]["header"].get("result") == "FAILURE" for o in out):
            raise BenchError(f"{name} to {target} failed: {out}")
        return out

    def call(self, k: int, call: str, *, talking: bool) -> None:
        """A call offered to agent ``k``, initialized, its conversation created; answered if ``talking``."""
        channel = f"S{k}.G1.{100_000 + k}"
        self.feed({"from": "switch", "event": {"kind": "offered", "call": call, "device": str(100_000 + k)}})
        target = f"{channel}.{call}"
        self.request("interaction.query.init", target)
        self.request("interaction.request.createconversation", target, {"id": "b1", "nativeid": call})
        self.request("conversation.query.init", f"{target}.b1")
        if talking:
            self.request("interaction.request.accept", target)

    def cycle(self, n: int) -> list[int]:
        """One round on agent 1's talking call; the cost of each input, in ns."""
        channel = f"S1.G1.{100_001}"
        talking = f"{channel}.t1"
        times: list[int] = []

        def timed(name: str, target: str, body: dict[str, Any] | None = None) -> None:
            t0 = ns()
            self.request(name, target, body)
            times.append(ns() - t0)

        timed("conversation.request.hold", f"{talking}.b1")
        timed("conversation.request.retrieve", f"{talking}.b1")
        timed("interaction.request.setdata", talking, {"round": str(n)})
        call = f"n{n}"
        t0 = ns()
        self.feed({"from": "switch", "event": {"kind": "offered", "call": call, "device": "100001"}})
        times.append(ns() - t0)
        timed("interaction.query.init", f"{channel}.{call}")
        timed("interaction.request.dispose", f"{channel}.{call}")
        return times


def bench_agents(sizes: Sizes, report: Report) -> None:
    few, many = sizes.agents
    progress(f"6. one input beside {few:,} and {many:,} logged-in agents (2 calls each)")
    gc.disable()
    engines = {count: Agents(count) for count in (few, many)}
    for count, built in engines.items():
        live = len(built.runner.engine.interactions)
        if live != 2 * count:
            raise BenchError(f"{count} agents: {live} live interactions, not {2 * count}")
    gc.collect()
    gc.enable()
    samples: dict[int, list[int]] = {few: [], many: []}
    for n in range(ROUNDS):
        for count, built in engines.items():
            samples[count] += built.cycle(n)
    at_few, at_many = median(samples[few]), median(samples[many])
    report.rows.append(
        Row(
            "6",
            f"one input beside {many:,} agents (2 calls each), ref {few} agents",
            at_many / 1e3,
            at_few / 1e3,
            "us",
            "<= 1.2x",
            at_many / at_few <= 1.2,
            note=f"median of {ROUNDS} rounds of 6 inputs",
        )
    )


def bench_store(sizes: Sizes, report: Report) -> None:
    """Item 7: the cost of committing one input to the SQLite store (what
    ``serve --state`` does after every input) beside ``many`` agents, against
    ``few``; and, for scale, what writing the whole engine would cost."""
    few, many = sizes.agents
    progress(f"7. one commit to the state file beside {few:,} and {many:,} agents")
    gc.disable()
    engines = {count: Agents(count) for count in (few, many)}
    gc.collect()
    gc.enable()
    samples: dict[int, list[int]] = {few: [], many: []}
    rows: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {count: StateStore(Path(tmp) / f"{count}.db") for count in engines}
        try:
            for count, built in engines.items():
                store, runner = stores[count], built.runner

                def save(store: StateStore = store, runner: Runner = runner, count: int = count) -> None:
                    t0 = ns()
                    store.save(runner.engine, runner.switch, inputs=engines[count].inputs, switch_events=0)
                    samples[count].append(ns() - t0)

                save()  # the first save writes every record: untimed
                samples[count].clear()
                built.after = save
            for n in range(ROUNDS // 4):
                for built in engines.values():
                    built.cycle(n)
            rows = {count: store.count("record") for count, store in stores.items()}
        finally:
            for store in stores.values():
                store.close()
    whole = engines[many].runner.engine
    t0 = ns()
    text = dumps(snapshot(whole), ascii=True)
    whole_ns = ns() - t0
    at_few, at_many = median(samples[few]), median(samples[many])
    report.rows.append(
        Row(
            "7",
            f"one commit beside {many:,} agents ({rows[many]:,} records), ref {few} agents",
            at_many / 1e3,
            at_few / 1e3,
            "us",
            "<= 1.2x",
            at_many / at_few <= 1.2,
            note=f"median of {len(samples[many])} commits (SQLite, WAL, synchronous=FULL); the whole "
            f"engine at {many:,} agents: {len(text) / 1e6:.1f} MB, {whole_ns / 1e6:.0f} ms to encode",
        )
    )

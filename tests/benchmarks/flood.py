"""The flood figures (D-BOUND): peak memory and the other interactions' latency.

Run from the repository root::

    python -m tests.benchmarks.flood            # the full sizes
    python -m tests.benchmarks.flood --quick    # a tenth of each flood

In one process, one engine with a :class:`~adapters.simulated.SimulatedSwitch`
serves 100 live, initialized, talking interactions. A *normal request* is
one request on one of them, in turn (``interaction.query.init`` again,
``interaction.request.setdata``, ``conversation.request.hold``,
``conversation.request.retrieve``): bytes in -> ``Engine.receive_bridge`` ->
every output encoded (``to_wire`` + ``dumps``), each switch command run on
the simulated switch and the events it reports fed back through
``Engine.receive_switch``; its time is the latency. Each must be SUCCESS.

First the normal requests alone (no flood), then each flood with one normal
request every N flood items:

* 1,000,000 switch events (held / retrieved, decoded from JSON bytes) on a
  connected call whose interaction is not initialized (D-LIFE-3);
* 100,000 setdata requests on an interaction whose accept is pending (the
  switch's answer is withheld) (D-SERIAL, ``max_pending_requests``,
  ``max_request_ids``);
* 1,000 setdata messages of exactly ``max_frame_size`` (1 MiB) bytes and
  1,000 of one byte more (D-WIRE, ``max_frame_size``).

RSS is read from ``/proc/self/status``: ``VmRSS`` before and after, and the
peak is ``VmHWM`` after resetting it (``/proc/self/clear_refs`` "5") before
the phase, or, where the kernel refuses the reset, the largest ``VmRSS``
sampled during the phase. Refusals are counted by rule ID and by the policy
their message names.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import attrs

from adapters.simulated import SimulatedSwitch
from adapters.switch import dispatch
from fsm.codec import dumps
from fsm.engine import BridgeError, Engine, Output, SwitchError, ToBridge, ToSwitch
from fsm.messages import FAILURE, RESPONSE, SUCCESS, to_wire
from fsm.policy import Policy
from fsm.switch_events import SwitchEvent, command_to_wire
from tests.driver import logged_in, with_device

CHANNEL: Final = "S1.G1.1001"
OTHERS: Final = 100
BASELINE_REQUESTS: Final = 1_000
MIB: Final = 1 << 20
_POLICY_NAME = re.compile(r"\(?(max_[a-z_]+)\)?")


def wire(name: str, target: str, rid: str | None, properties: dict[str, Any] | None = None) -> bytes:
    kind = "cti.query" if ".query." in name else "cti.request"
    headers: dict[str, Any] = {"type": kind, "name": name, "target": target}
    if rid is not None:
        headers["requestId"] = rid
    message: dict[str, Any] = {"header": headers}
    if properties is not None:
        message["body"] = properties
    return json.dumps(message, separators=(",", ":")).encode()


def interaction_target(call: str) -> str:
    return f"{CHANNEL}.{call}"


def status_kib() -> dict[str, int]:
    values: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    now = status_kib()
    return now["VmHWM"] <= now["VmRSS"] + 64


@attrs.define
class Tally:
    """Refusals and protocol errors of one phase, by rule (and policy named)."""

    counts: Counter[str] = attrs.field(factory=Counter)

    def add(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, ToBridge) and output.message.header.result == FAILURE:
                self.counts[_label(output.rule or "?", output.message.header.error_message or "")] += 1
            elif isinstance(output, BridgeError | SwitchError):
                self.counts[_label(output.rule, output.message)] += 1

    def text(self) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(self.counts.items())) or "-"


def _label(rule: str, message: str) -> str:
    found = _POLICY_NAME.search(message) if rule == "D-BOUND" else None
    return f"{rule} {found.group(1)}" if found else rule


@attrs.define
class Bench:
    """One engine, its simulated switch, and the 100 other interactions."""

    engine: Engine = attrs.field(factory=lambda: logged_in(Policy()))
    switch: SimulatedSwitch = attrs.field(factory=SimulatedSwitch)
    #: calls whose commands the switch leaves unanswered (a pending request)
    withheld: set[str] = attrs.field(factory=set)
    rid: int = 0
    turn: int = 0
    steps: list[int] = attrs.field(factory=lambda: [0] * OTHERS)
    encoded: int = 0
    tally: Tally = attrs.field(factory=Tally)

    def next_rid(self) -> str:
        self.rid += 1
        return f"r{self.rid}"

    # -- feeding the engine, every output encoded as it would be sent
    def drain(self, outputs: list[Output]) -> list[Output]:
        every = list(outputs)
        commands = []
        for output in outputs:
            if isinstance(output, ToBridge):
                self.encoded += len(dumps(to_wire(output.message)))
            elif isinstance(output, ToSwitch):
                self.encoded += len(dumps(command_to_wire(output.command)))
                commands.append(output.command)
        for command in commands:
            if command.call in self.withheld:
                continue
            for event in dispatch(self.switch, command):
                every += self.drain(self.engine.receive_switch(event))
        return every

    def bridge(self, raw: bytes) -> list[Output]:
        return self.drain(self.engine.receive_bridge(raw))

    def outside(self, kind: str, call: str, **fields: Any) -> list[Output]:
        event = SwitchEvent(kind=kind, call=call, **with_device(kind, fields))
        self.switch.observe(event)
        return self.drain(self.engine.receive_switch(event))

    def expect(self, outputs: list[Output], rid: str, result: str = SUCCESS) -> None:
        found = [
            o.message.header.result
            for o in outputs
            if isinstance(o, ToBridge)
            and o.message.header.type == RESPONSE
            and o.message.header.request_id == rid
        ]
        if found != [result]:
            raise SystemExit(f"request {rid}: expected {result}, got {found}: {outputs}")

    # -- setting up calls
    def talking(self, call: str) -> None:
        target = interaction_target(call)
        self.outside("offered", call, ani="5551000")
        for name, to, props in (
            ("interaction.query.init", target, None),
            ("interaction.request.createconversation", target, {"id": "b1", "nativeid": call}),
            ("conversation.query.init", f"{target}.b1", None),
            ("interaction.request.accept", target, None),
        ):
            rid = self.next_rid()
            self.expect(self.bridge(wire(name, to, rid, props)), rid)

    # -- the normal requests on the other interactions
    def normal(self) -> int:
        """One normal request, in turn; its latency in nanoseconds."""
        j = self.turn % OTHERS
        self.turn += 1
        step = self.steps[j]
        self.steps[j] += 1
        target = interaction_target(f"o{j}")
        rid = self.next_rid()
        kind = step % 4
        if kind == 0:
            raw = wire("interaction.query.init", target, rid)
        elif kind == 1:
            raw = wire("interaction.request.setdata", target, rid, {"note": str(step)})
        else:
            raw = wire(f"conversation.request.{'hold' if kind == 2 else 'retrieve'}", f"{target}.b1", rid)
        start = time.perf_counter_ns()
        outputs = self.bridge(raw)
        took = time.perf_counter_ns() - start
        self.expect(outputs, rid)
        return took


@attrs.frozen
class Row:
    flood: str
    items: str
    every: int
    before: float
    peak: float
    after: float
    peak_by: str
    latencies: list[int]
    refusals: str
    seconds: float


def run_phase(
    bench: Bench,
    flood: str,
    items: str,
    count: int,
    every: int,
    item: Callable[[int], None],
) -> Row:
    """Run ``count`` flood items, one normal request every ``every`` items."""
    bench.tally = Tally()
    before = status_kib()["VmRSS"]
    by_hwm = reset_peak()
    sampled = before
    latencies: list[int] = []
    sample_every = max(1, min(every, 1_000))
    start = time.perf_counter()
    for i in range(count):
        item(i)
        if i % every == every - 1:
            latencies.append(bench.normal())
        if i % sample_every == 0:
            sampled = max(sampled, status_kib()["VmRSS"])
    seconds = time.perf_counter() - start
    now = status_kib()
    peak = max(sampled, now["VmRSS"], now["VmHWM"] if by_hwm else 0)
    return Row(
        flood=flood,
        items=items,
        every=every,
        before=before / 1024,
        peak=peak / 1024,
        after=now["VmRSS"] / 1024,
        peak_by="VmHWM" if by_hwm else "VmRSS sampled",
        latencies=latencies,
        refusals=bench.tally.text(),
        seconds=seconds,
    )


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def us(values: list[int]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) / 1000:8.1f} {percentile(values, 0.99) / 1000:8.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.flood", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of each flood")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1

    bench = Bench()
    policy = bench.engine.policy
    for j in range(OTHERS):
        bench.talking(f"o{j}")
    for _ in range(4 * OTHERS):  # warm up every path of the normal requests
        bench.normal()
    rows: list[Row] = []

    print("baseline ...", file=sys.stderr)
    rows.append(run_phase(bench, "none (normal requests only)", "-", BASELINE_REQUESTS, 1, lambda i: None))
    baseline = rows[0].latencies

    # 1. switch events before init
    print("switch events before init ...", file=sys.stderr)
    bench.outside("offered", "f1")
    bench.outside("connected", "f1")
    toggles = [json.dumps({"kind": kind, "call": "f1"}).encode() for kind in ("held", "retrieved")]

    def switch_event(i: int) -> None:
        outputs = bench.drain(bench.engine.receive_switch(json.loads(toggles[i % 2])))
        if outputs:
            raise SystemExit(f"switch event before init gave output: {outputs}")

    events_count = 1_000_000 // scale
    rows.append(
        run_phase(bench, "switch events before init", f"{events_count:,}", events_count, 1_000, switch_event)
    )
    rid = bench.next_rid()
    outputs = bench.bridge(wire("interaction.query.init", interaction_target("f1"), rid))
    bench.expect(outputs, rid)
    snapshots = [o.message.body for o in outputs if isinstance(o, ToBridge)]
    after_events = f"f1 init after the flood: {snapshots[0]}"

    # 2. requests while one is pending
    print("requests while one is pending ...", file=sys.stderr)
    bench.outside("offered", "f2")
    rid = bench.next_rid()
    bench.expect(bench.bridge(wire("interaction.query.init", interaction_target("f2"), rid)), rid)
    bench.withheld.add("f2")
    accept = bench.bridge(wire("interaction.request.accept", interaction_target("f2"), "accept"))
    if [o for o in accept if isinstance(o, ToBridge)]:
        raise SystemExit(f"accept should be pending: {accept}")
    f2_target = interaction_target("f2")

    def pending_request(i: int) -> None:
        bench.tally.add(bench.bridge(wire("interaction.request.setdata", f2_target, f"p{i}", {"n": str(i)})))

    requests_count = 100_000 // scale
    rows.append(
        run_phase(
            bench,
            "requests while one is pending",
            f"{requests_count:,}",
            requests_count,
            100,
            pending_request,
        )
    )
    f2 = bench.engine.interactions["f2"]
    queued = len(f2.waiting)
    ids = len(f2.request_ids)
    bench.withheld.discard("f2")
    answered = bench.outside("connected", "f2")
    successes = sum(1 for o in answered if isinstance(o, ToBridge) and o.message.header.result == SUCCESS)
    dispose = bench.bridge(wire("interaction.request.dispose", f2_target, "bye"))
    dispose_text = [
        f"{o.message.header.result} {o.rule or ''} {o.message.header.error_message or ''}".strip()
        for o in dispose
        if isinstance(o, ToBridge)
    ]
    after_pending = (
        f"f2 after the flood: {queued} queued, {ids:,} requestIds remembered; on the switch's answer "
        f"{successes} responses SUCCESS (accept + queued); dispose answered: {dispose_text}"
    )

    # 3. messages at the maximum frame size
    print("messages at the maximum frame size ...", file=sys.stderr)
    limit = policy.max_frame_size
    bench.talking("f3")
    f3_target = interaction_target("f3")

    def framed(i: int, size: int) -> bytes:
        rid = "m0000000"
        overhead = len(wire("interaction.request.setdata", f3_target, rid, {"k": ""}))
        raw = wire("interaction.request.setdata", f3_target, rid, {"k": "ab"[i % 2] * (size - overhead)})
        assert len(raw) == size
        return raw

    frames = 1_000 // scale
    payloads = [framed(i, limit) for i in range(2)] + [framed(2, limit + 1)]

    def frame(i: int) -> None:
        # the two sizes alternate; the requestId is patched in place so that
        # building a 1 MiB message does not count as flood time
        size_ok = i % 2 == 0
        template = payloads[(i // 2) % 2] if size_ok else payloads[2]
        raw = template.replace(b'"m0000000"', f'"m{i + 10:07d}"'.encode(), 1)
        outputs = bench.bridge(raw)
        bench.tally.add(outputs)
        if size_ok:
            bench.expect(outputs, f"m{i + 10:07d}")

    rows.append(
        run_phase(
            bench,
            "messages at max_frame_size",
            f"{frames:,} x {limit:,} B + {frames:,} x {limit + 1:,} B",
            2 * frames,
            2,
            frame,
        )
    )

    print_table(rows, baseline)
    print()
    print(after_events)
    print(after_pending)
    print(
        f"policy: max_pending_requests={policy.max_pending_requests}, "
        f"max_request_ids={policy.max_request_ids:,}, max_frame_size={policy.max_frame_size:,}"
    )
    print(f"live interactions at the end: {len(bench.engine.interactions)}; bytes encoded: {bench.encoded:,}")
    return 0


def print_table(rows: list[Row], baseline: list[int]) -> None:
    print(
        f"{'flood':<32} {'items':>34} {'every':>6} {'RSS before':>10} {'peak':>8} {'after':>8}"
        f"  {'without: med   p99 (us)':>23}  {'with: med   p99 (us)':>20} {'n':>5} {'secs':>7}  refusals"
    )
    for row in rows:
        print(
            f"{row.flood:<32} {row.items:>34} {row.every:>6} {row.before:>10.1f} {row.peak:>8.1f}"
            f" {row.after:>8.1f}  {us(baseline):>23}  {us(row.latencies):>20} {len(row.latencies):>5}"
            f" {row.seconds:>7.1f}  {row.refusals}"
        )
    print(f"(RSS in MiB; peak from {rows[0].peak_by}; 'every': one normal request per that many flood items)")


if __name__ == "__main__":
    sys.exit(main())

"""What the measurements share: sizes, rows of the table, and small helpers.

Every timed figure is a median of ``time.perf_counter_ns`` samples. Work
that only sets a measurement up (building live interactions, checking
scripts) is untimed and runs with the garbage collector off; timed work
runs with it on, as a deployment does.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import attrs

from fsm.engine import Engine
from tests.benchmarks import floor as fl
from tests.benchmarks.workload import BenchError, Step, Writer, feed

ROOT: Final = Path(__file__).resolve().parents[2]
KB: Final = 1024
#: the switch legs of measured calls are numbered from here, apart from the
#: legs of the live interactions they run beside
REP_LEGS: Final = 10_000_000
#: engine seconds that pass between batches: deadlines of finished
#: requests are dropped, as in a deployment whose clock moves
TICK: Final = 31.0

ns = time.perf_counter_ns


@attrs.frozen
class Sizes:
    mix_calls: int
    warmup_calls: int
    demo_calls: int
    run_calls: int
    run_repeats: int
    live: tuple[int, ...]
    reps: int
    memory: tuple[int, ...]
    #: (few, many) logged-in agents of item 6
    agents: tuple[int, int] = (10, 10_000)


FULL: Final = Sizes(
    mix_calls=1_000,
    warmup_calls=50,
    demo_calls=1_000,
    run_calls=5_000,
    run_repeats=3,
    live=(0, 1_000, 10_000, 100_000),
    reps=300,
    memory=(10_000, 100_000),
)
QUICK: Final = Sizes(
    mix_calls=150,
    warmup_calls=20,
    demo_calls=150,
    run_calls=300,
    run_repeats=1,
    live=(0, 1_000, 3_000),
    reps=60,
    memory=(1_000, 3_000),
    agents=(10, 2_000),
)


@attrs.frozen
class Row:
    """One line of the table. ``unit`` "/s" is a rate (higher is better);
    the ratio column is then floor / figure, a ratio of times like the others."""

    item: str
    what: str
    figure: float
    floor: float | None
    unit: str
    target: str = "-"
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.unit == "x":
            return None
        return self.floor / self.figure if self.unit == "/s" else self.figure / self.floor


@attrs.define
class Report:
    rows: list[Row] = attrs.field(factory=list)
    details: list[str] = attrs.field(factory=list)


def median(samples: Iterable[float]) -> float:
    return float(statistics.median(samples))


def progress(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def rss() -> int:
    """VmRSS of this process, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KB
    raise BenchError("no VmRSS in /proc/self/status")


def live_calls(writer: Writer, start: int, stop: int) -> Iterable[list[Step]]:
    for i in range(start, stop):
        yield writer.live_call(f"b{i}")


def grow_engine(engine: Engine, writer: Writer, start: int, stop: int) -> None:
    for steps in live_calls(writer, start, stop):
        feed(engine, steps)
    engine.advance(TICK)


def grow_floor(floor: fl.Floor, writer: Writer, start: int, stop: int) -> None:
    for steps in live_calls(writer, start, stop):
        for step in steps:
            for source, raw in step.inputs:
                (floor.bridge if source == "bridge" else floor.switch)(json.loads(raw))


def check_live(engine: Engine, expected: int) -> None:
    if len(engine.interactions) != expected:
        raise BenchError(f"{len(engine.interactions)} live interactions, expected {expected}")

"""The engine's benchmark: ``python -m tests.benchmarks.bench [--quick]`` from the repo root.

Prints, for each figure of the project's performance targets, the figure,
the floor measured in the same run (see :mod:`tests.benchmarks.floor`),
their ratio, the target and whether it is met. ``--profile request``,
``--profile create`` and ``--profile run`` print the 25 costliest functions
(cProfile, by own time) of the request mix, of creating and disposing
interactions with two conversations (item 3, all inputs) and of the ``run``
loop instead. See README.md here.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from adapters.runner import Runner
from adapters.simulated import SimulatedSwitch
from fsm import codec
from tests.benchmarks import agents, growth, throughput
from tests.benchmarks import floor as fl
from tests.benchmarks.report import FULL, QUICK, Report, Row, Sizes
from tests.benchmarks.workload import Checker, Writer, demo_lines, play
from tests.driver import logged_in


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (well under 30 s)")
    parser.add_argument(
        "--profile", choices=("request", "create", "run"), help="profile one hot path instead"
    )
    parser.add_argument("--floor-run", metavar="TEMPLATE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_run:
        template = json.loads(Path(args.floor_run).read_text(encoding="utf-8"))
        fl.run_lines(sys.stdin, sys.stdout, template["call"], template["login"])
        return 0
    sizes = QUICK if args.quick else FULL
    if args.profile:
        profile(args.profile, sizes)
        return 0
    started = time.perf_counter()
    report = Report()
    growth.bench_growth(sizes, report)  # first: RSS is read against a fresh process
    throughput.bench_requests(sizes, report)
    throughput.bench_full_calls(sizes, report)
    throughput.bench_run(sizes, report)
    throughput.bench_codecs(report)
    agents.bench_agents(sizes, report)
    agents.bench_store(sizes, report)
    growth.bench_traced_memory(sizes, report)
    print(header(sizes, args.quick, time.perf_counter() - started))
    print(table(sorted(report.rows, key=lambda row: row.item)))
    for detail in sorted(report.details, key=lambda text: text[:1]):
        print()
        print(detail)
    return 0


def header(sizes: Sizes, quick: bool, seconds: float) -> str:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("transitions", "cattrs", "attrs"))
    return "\n".join(
        [
            f"telephony-fsm benchmark ({'--quick' if quick else 'full'}, {seconds:.0f} s)",
            f"python {platform.python_version()} on {platform.platform()}, {_cpu()}, {os.cpu_count()} CPUs",
            f"{versions}",
            f"json: {codec.LIBRARY} (fsm.codec; the standard json module where orjson would answer "
            "otherwise), for the engine and the floor alike",
            f"sizes: {sizes}",
            "floor: dict-table machine of the same states and triggers, same JSON decode/encode, "
            "no validation (tests/benchmarks/floor.py)",
            "ratio: figure time / floor time (for rates: floor rate / rate; for memory: bytes / floor bytes)",
            "",
        ]
    )


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "cpu unknown"


_UNITS: dict[str, Callable[[float], str]] = {
    "us": lambda v: f"{v:,.2f} us",
    "/s": lambda v: f"{v:,.0f}/s",
    "B": lambda v: f"{v:,.0f} B",
    "x": lambda v: f"{v:.2f}x",
}


def table(rows: Sequence[Row]) -> str:
    cells = [("#", "measure", "figure", "floor", "ratio", "target", "met?")]
    for row in rows:
        fmt = _UNITS[row.unit]
        ratio = row.ratio
        verdict = "-" if row.met is None else ("met" if row.met else "MISSED")
        if row.note:
            verdict = f"{verdict}  ({row.note})"
        cells.append(
            (
                row.item,
                row.what,
                fmt(row.figure),
                "-" if row.floor is None else fmt(row.floor),
                "-" if ratio is None else f"{ratio:.1f}x",
                row.target,
                verdict,
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    lines = []
    for n, c in enumerate(cells):
        left = f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}"
        right = "  ".join(f"{c[i]:>{widths[i]}}" for i in range(2, 6))
        lines.append(f"{left}  {right}  {c[6]}".rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def profile(path: str, sizes: Sizes) -> None:
    """cProfile of one hot path, top 25 by own time."""
    profiler = cProfile.Profile()
    if path in ("request", "create"):
        writer, checker = Writer(prefix="p"), Checker()
        if path == "request":
            calls = [writer.mix_call(f"p{i}") for i in range(sizes.mix_calls)]
        else:  # item 3's script: a consult request, then dispose
            calls = [[*writer.live_call(f"p{i}"), writer.dispose(f"p{i}")] for i in range(sizes.mix_calls)]
        for steps in calls:
            checker.check_all(steps)
        engine = logged_in()

        def work() -> None:
            for steps in calls:
                for step in steps:
                    play(engine, step)

    else:
        text = "".join(line + "\n" for line in demo_lines(sizes.demo_calls))

        def work() -> None:
            with open(os.devnull, "w", encoding="utf-8") as sink:
                Runner(logged_in(), SimulatedSwitch()).run(io.StringIO(text), sink)

    gc.collect()
    profiler.runcall(work)
    stats = pstats.Stats(profiler)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(25)


if __name__ == "__main__":
    sys.exit(main())

"""Items 1, 2 and 5: a request, the `run` line protocol, a full call; and the
JSON context. Each beside its same-run floor (see :mod:`tests.benchmarks.report`)."""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from adapters.runner import Runner
from adapters.simulated import SimulatedSwitch
from fsm import codec
from fsm.codec import dumps
from fsm.engine import Engine
from tests.benchmarks import floor as fl
from tests.benchmarks.report import ROOT, Report, Row, Sizes, check_live, median, ns, progress
from tests.benchmarks.workload import (
    BenchError,
    Checker,
    Wire,
    Writer,
    demo_lines,
    encode_wire,
    login_lines,
    play,
)
from tests.driver import logged_in

# --------------------------------------------------------------------------
# 1. A bridge request, bytes in to bytes out, through the sans-IO API.

REQUEST_KINDS: Final = (
    "init",
    "accept",
    "consult",
    "createconversation",
    "alternate",
    "conference",
    "transfer",
    "setdata",
    "complete",
    "dispose",
    "refused",
)


def bench_requests(sizes: Sizes, report: Report) -> None:
    progress(f"1. request mix: {sizes.mix_calls} demo calls with 3 refusals each")
    writer, checker = Writer(prefix="m"), Checker()
    calls = [writer.mix_call(f"m{i}") for i in range(sizes.warmup_calls + sizes.mix_calls)]
    outputs = [checker.check_all(steps) for steps in calls]
    engine, floor = logged_in(), fl.Floor()
    by_kind: dict[str, tuple[list[int], list[int]]] = {k: ([], []) for k in REQUEST_KINDS}
    per_call: tuple[list[int], list[int]] = ([], [])
    gc.collect()
    for n, (steps, outs) in enumerate(zip(calls, outputs, strict=True)):
        call_engine = call_floor = 0
        for step, out in zip(steps, outs, strict=True):
            t0 = ns()
            play(engine, step)
            t1 = ns()
            fl.play(floor, step, out)
            t2 = ns()
            call_engine += t1 - t0
            call_floor += t2 - t1
            if n >= sizes.warmup_calls and step.expect is not None:
                by_kind[step.label][0].append(t1 - t0)
                by_kind[step.label][1].append(t2 - t1)
        engine.advance(1.0)
        if n >= sizes.warmup_calls:
            per_call[0].append(call_engine)
            per_call[1].append(call_floor)
    check_live(engine, 0)
    every = [sample for e, _ in by_kind.values() for sample in e]
    every_floor = [sample for _, f in by_kind.values() for sample in f]
    figure, floor_us = median(every) / 1e3, median(every_floor) / 1e3
    ratio = figure / floor_us
    report.rows.append(
        Row(
            "1",
            f"request, sans-IO, median of {len(every)} (mix)",
            figure,
            floor_us,
            "us",
            "<= 5x, <= 10 us",
            ratio <= 5 and figure <= 10,
            _missed(("ratio", ratio <= 5), ("absolute", figure <= 10)),
        )
    )
    report.rows.append(
        Row(
            "1",
            "request, sans-IO, mean per request (mix)",
            statistics.fmean(every) / 1e3,
            statistics.fmean(every_floor) / 1e3,
            "us",
        )
    )
    report.rows.append(
        Row(
            "5",
            "mix call (demo + 3 refusals), sans-IO, calls/s",
            1e9 / median(per_call[0]),
            1e9 / median(per_call[1]),
            "/s",
            note=f"{len(every) // len(per_call[0])} requests and their switch events",
        )
    )
    lines = ["1. per request kind (median us, sans-IO, bytes in -> response and commands out)"]
    lines.append(f"   {'kind':<20}{'n':>7}{'engine':>10}{'floor':>9}{'ratio':>8}")
    for kind, (e, f) in by_kind.items():
        if e:
            em, fm = median(e) / 1e3, median(f) / 1e3
            lines.append(f"   {kind:<20}{len(e):>7}{em:>10.2f}{fm:>9.2f}{em / fm:>7.1f}x")
    report.details.append("\n".join(lines))


def _missed(*checks: tuple[str, bool]) -> str:
    missed = [name for name, ok in checks if not ok]
    return f"missed: {' and '.join(missed)}" if missed else ""


# --------------------------------------------------------------------------
# 5. The demo's call, as `run` processes it (in process, outputs encoded).


def login_template() -> list[list[Wire]]:
    """The outputs of each line of the login (done markers aside), checked."""
    runner = Runner(Engine(), SimulatedSwitch())
    template = [runner.feed(line, n)[:-1] for n, line in enumerate(login_lines(), start=1)]
    if '"FAILURE"' in dumps(template):
        raise BenchError("the login no longer succeeds")
    return template


def demo_template() -> list[list[Wire]]:
    """The outputs of each line of the demo's call (done markers aside), checked."""
    runner = Runner(logged_in(), SimulatedSwitch())
    template = [runner.feed(line, n)[:-1] for n, line in enumerate(demo_lines(1), start=1)]
    text = dumps(template)
    if '"FAILURE"' in text or '"error"' in text:
        raise BenchError(f"the demo call no longer succeeds: {text[:500]}")
    return template


def _discard(_: str) -> None:
    return None


def bench_full_calls(sizes: Sizes, report: Report) -> None:
    progress(f"5. the demo's call: {sizes.demo_calls} calls through the run line protocol, in process")
    template = demo_template()
    period = len(template)
    runner = Runner(logged_in(), SimulatedSwitch())
    floor = fl.Floor()
    total = sizes.warmup_calls + sizes.demo_calls
    lines = list(demo_lines(total))
    engine_ns: list[int] = []
    floor_ns: list[int] = []
    out = _discard
    gc.collect()
    for call in range(total):
        chunk = lines[call * period : (call + 1) * period]
        first = call * period + 1
        t0 = ns()
        for n, line in enumerate(chunk, start=first):
            for entry in runner.feed(line, n):
                out(dumps(entry, floats=False) + "\n")  # as Runner.run writes them
        t1 = ns()
        for n, line in enumerate(chunk, start=first):
            fl.feed_line(floor, line)
            for wire in template[n - first]:
                out(dumps(wire, floats=False) + "\n")
            out(dumps({"done": n}, floats=False) + "\n")
        t2 = ns()
        if call >= sizes.warmup_calls:
            engine_ns.append(t1 - t0)
            floor_ns.append(t2 - t1)
    if runner.engine.interactions:
        raise BenchError("demo calls left interactions live")
    report.rows.append(
        Row(
            "5",
            "full call (demo), run protocol in process, calls/s",
            1e9 / median(engine_ns),
            1e9 / median(floor_ns),
            "/s",
            note=f"{period} input lines each",
        )
    )


# --------------------------------------------------------------------------
# 2. `telephony-fsm run`, stdin to stdout, as a subprocess.


def bench_run(sizes: Sizes, report: Report) -> None:
    template = demo_template()
    period = len(template)
    count = sizes.run_calls * period
    progress(f"2. telephony-fsm run: {count:,} input lines x {sizes.run_repeats}")
    login = login_template()
    expected_lines = sizes.run_calls * (sum(len(t) for t in template) + period) + sum(
        len(t) + 1 for t in login
    )
    with tempfile.TemporaryDirectory(prefix="telephony-fsm-bench-") as tmp:
        folder = Path(tmp)
        inputs, empty, template_file = folder / "in.jsonl", folder / "empty.jsonl", folder / "template.json"
        lines = [*login_lines(), *demo_lines(sizes.run_calls)]
        inputs.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        empty.write_text("", encoding="utf-8")
        template_file.write_text(json.dumps({"login": login, "call": template}), encoding="utf-8")
        real = [sys.executable, "-m", "adapters.cli", "run"]
        floor = [sys.executable, "-m", "tests.benchmarks.bench", "--floor-run", str(template_file)]
        start_real = median(_wall(real, empty, folder / "out", 0) for _ in range(3))
        start_floor = median(_wall(floor, empty, folder / "out", 0) for _ in range(3))
        walls_real, walls_floor = [], []
        for _ in range(sizes.run_repeats):
            walls_real.append(_wall(real, inputs, folder / "out", expected_lines))
            walls_floor.append(_wall(floor, inputs, folder / "out", expected_lines))
    wall_real, wall_floor = median(walls_real), median(walls_floor)
    steady = (count + len(login)) / (wall_real - start_real)
    steady_floor = (count + len(login)) / (wall_floor - start_floor)
    report.rows.append(
        Row(
            "2",
            "run, input lines/s, startup excluded",
            steady,
            steady_floor,
            "/s",
            ">= 50,000/s",
            steady >= 50_000,
            f"startup {start_real * 1e3:.0f} ms (floor {start_floor * 1e3:.0f} ms)",
        )
    )
    report.rows.append(
        Row(
            "2",
            f"run, input lines/s, whole process, {count:,} lines",
            count / wall_real,
            count / wall_floor,
            "/s",
            ">= 50,000/s",
            count / wall_real >= 50_000,
        )
    )
    report.rows.append(
        Row(
            "5",
            "full call (demo), through run, calls/s",
            steady / period,
            steady_floor / period,
            "/s",
            note="startup excluded",
        )
    )


def _wall(command: list[str], stdin: Path, stdout: Path, expected_lines: int) -> float:
    """Seconds for ``command`` to process ``stdin``; checks what it wrote."""
    with stdin.open("rb") as source, stdout.open("wb") as sink:
        t0 = ns()
        proc = subprocess.run(
            command, stdin=source, stdout=sink, stderr=subprocess.PIPE, cwd=ROOT, check=False
        )
        elapsed = (ns() - t0) / 1e9
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    written = stdout.read_bytes()
    lines = written.count(b"\n")
    if lines != expected_lines or b'"FAILURE"' in written or b'"error"' in written:
        raise BenchError(f"{command[-1]}: {lines} output lines, expected {expected_lines}, or a failure")
    return elapsed


# --------------------------------------------------------------------------
# Context: what the JSON alternatives cost on the same messages.


def bench_codecs(report: Report) -> None:
    writer, checker = Writer(prefix="j"), Checker()
    steps = writer.mix_call("j1")
    outs = checker.check_all(steps)
    raws = [raw for step in steps for _, raw in step.inputs]
    wires = [w for out in outs for per_input in out for w in per_input]
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    codecs: list[tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]] = [
        (
            "json (json.loads, one prebuilt compact JSONEncoder)",
            json.loads,
            lambda w: encoder.encode(w).encode(),
        ),
        ("orjson alone (orjson.loads, orjson.dumps)", orjson.loads, orjson.dumps),
        ("fsm.codec, exact (loads, dumpb: json where orjson differs)", codec.loads, codec.dumpb),
        ("as the engine reads and writes valid messages (orjson)", orjson.loads, encode_wire),
    ]
    lines = [f"context: decode {len(raws)} inputs + encode {len(wires)} outputs of one mix call (median us)"]
    for name, loads, encode in codecs:
        samples = []
        for _ in range(300):
            t0 = ns()
            for raw in raws:
                loads(raw)
            for w in wires:
                encode(w)
            samples.append(ns() - t0)
        lines.append(f"   {name:<60}{median(samples) / 1e3:>9.1f}")
    report.details.append("\n".join(lines))

"""Items 3 and 4: create and dispose an interaction with two conversations
beside 0 .. 100k live ones, and the memory of each live one (RSS and
tracemalloc). Each beside its same-run floor (see :mod:`tests.benchmarks.report`)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Final

from fsm.engine import Engine
from tests.benchmarks import floor as fl
from tests.benchmarks.report import (
    KB,
    REP_LEGS,
    TICK,
    Report,
    Row,
    Sizes,
    check_live,
    grow_engine,
    grow_floor,
    median,
    ns,
    progress,
    rss,
)
from tests.benchmarks.workload import Checker, Step, Wire, Writer, play
from tests.driver import logged_in

# --------------------------------------------------------------------------
# 3 and 4 (RSS). Create and dispose an interaction with two conversations
# beside 0 .. 100k live ones; RSS per live interaction.

VARIANTS: Final = ("consult request", "phone consult")
#: the steps that register and remove destinations: the call offered (the
#: interaction), createconversation (each conversation), dispose (all three)
REGISTRATION: Final = frozenset({"offered", "createconversation", "dispose"})
#: (whole script, registration steps) per rep
Samples = tuple[list[int], list[int]]
Scripts = list[tuple[list[Step], list[list[list[Wire]]]]]


def _rep_scripts(sizes: Sizes) -> dict[tuple[str, int], Scripts]:
    writer, checker = Writer(REP_LEGS, prefix="x"), Checker(REP_LEGS)
    scripts: dict[tuple[str, int], Scripts] = {}
    k = 0
    for live in sizes.live:
        for variant in VARIANTS:
            batch: Scripts = []
            for _ in range(sizes.reps):
                k += 1
                call = f"x{k}"
                make = writer.live_call if variant == VARIANTS[0] else writer.phone_consult_call
                steps = [*make(call), writer.dispose(call)]
                batch.append((steps, checker.check_all(steps)))
            scripts[variant, live] = batch
    check_live(checker.engine, 0)
    return scripts


def bench_growth(sizes: Sizes, report: Report) -> None:
    """One engine and one floor per number of live interactions, all alive
    at once; the measured calls go round-robin over them, so that whatever
    else the machine does weighs on every size alike."""
    top = max(sizes.live)
    progress(f"3. create + dispose beside {', '.join(f'{n:,}' for n in sizes.live)} live interactions")
    scripts = _rep_scripts(sizes)
    gc.disable()
    engines = {n: logged_in() for n in sizes.live}
    floors = {n: fl.Floor() for n in sizes.live}
    for n in sizes.live:
        if n != top:
            grow_engine(engines[n], Writer(prefix="s"), 0, n)
            grow_floor(floors[n], Writer(prefix="s"), 0, n)
    stages = sorted({*sizes.memory, top})
    writers = (Writer(prefix="f"), Writer(prefix="b"))
    progress(f"   floor: growing to {top:,} live interactions")
    floor_rss = _grow_measuring(stages, lambda a, b: grow_floor(floors[top], writers[0], a, b))
    progress(f"   engine: growing to {top:,} live interactions")
    engine_rss = _grow_measuring(stages, lambda a, b: grow_engine(engines[top], writers[1], a, b))
    for n, engine in engines.items():
        check_live(engine, n)
    gc.collect()
    gc.enable()
    progress(f"   {sizes.reps} create + dispose per size and variant, round-robin")
    engine_ns: dict[tuple[str, int], Samples] = {}
    floor_ns: dict[tuple[str, int], Samples] = {}
    per_step: dict[tuple[str, int], dict[str, list[int]]] = {}
    for key in scripts:
        engine_ns[key], floor_ns[key], per_step[key] = ([], []), ([], []), {}
    for rep in range(sizes.reps):
        for live in sizes.live:
            for variant in VARIANTS:
                key = (variant, live)
                steps, outs = scripts[key][rep]
                _rep(engines[live], floors[live], steps, outs, engine_ns[key], floor_ns[key], per_step[key])
    for n, engine in engines.items():
        engine.advance(TICK)
        check_live(engine, n)
    for variant, part in ((VARIANTS[0], 0), (VARIANTS[0], 1), (VARIANTS[1], 0)):
        what = "registration steps only" if part else "all inputs"
        at = {
            n: (median(engine_ns[variant, n][part]), median(floor_ns[variant, n][part])) for n in sizes.live
        }
        for live, (figure, floor_median) in at.items():
            report.rows.append(
                Row(
                    "3",
                    f"create+dispose, {variant}, {what}, {live:,} live",
                    figure / 1e3,
                    floor_median / 1e3,
                    "us",
                    "<= 50 us",
                    figure / 1e3 <= 50,
                )
            )
        flat, flat_floor = at[top][0] / at[0][0], at[top][1] / at[0][1]
        report.rows.append(
            Row("3", f"  same, {top:,} live / 0 live", flat, flat_floor, "x", "<= 1.20", flat <= 1.2)
        )
    for n in sizes.memory:
        figure = engine_rss[n][0] / n
        report.rows.append(
            Row(
                "4",
                f"memory per live interaction, RSS, {n:,} live",
                figure,
                floor_rss[n][0] / n,
                "B",
                "<= 4 KB",
                figure <= 4 * KB,
            )
        )
    report.details.append(_step_table(per_step, sizes.live))
    report.details.append(
        f"4. one full gc.collect() while the {top:,}-interaction engine grows (ms; the floors and "
        f"smaller engines live too): " + ", ".join(f"{n:,} live: {engine_rss[n][1]:.0f}" for n in stages)
    )
    engines.clear()
    floors.clear()
    gc.collect()


def _grow_measuring(stages: list[int], grow: Callable[[int, int], None]) -> dict[int, tuple[int, float]]:
    """Grow through ``stages`` with the garbage collector off; at each, the
    RSS growth and the milliseconds of one full collection."""
    gc.collect()
    base = rss()
    out: dict[int, tuple[int, float]] = {}
    done = 0
    for n in stages:
        grow(done, n)
        done = n
        gc.collect()
        out[n] = (rss() - base, _time_collect())
    return out


def _time_collect() -> float:
    t0 = ns()
    gc.collect()
    return (ns() - t0) / 1e6


def _rep(
    engine: Engine,
    floor: fl.Floor,
    steps: list[Step],
    outs: list[list[list[Wire]]],
    engine_ns: Samples,
    floor_ns: Samples,
    per_step: dict[str, list[int]],
) -> None:
    """Time one script step by step on the engine and on the floor; append
    the whole script and its registration steps, and each engine step."""
    e_total = e_reg = f_total = f_reg = 0
    for step, out in zip(steps, outs, strict=True):
        t0 = ns()
        play(engine, step)
        t1 = ns()
        fl.play(floor, step, out)
        t2 = ns()
        e_total += t1 - t0
        f_total += t2 - t1
        if step.label in REGISTRATION:
            e_reg += t1 - t0
            f_reg += t2 - t1
        per_step.setdefault(step.label, []).append(t1 - t0)
    engine_ns[0].append(e_total)
    engine_ns[1].append(e_reg)
    floor_ns[0].append(f_total)
    floor_ns[1].append(f_reg)


def _step_table(steps_at: dict[tuple[str, int], dict[str, list[int]]], live: tuple[int, ...]) -> str:
    lines = ["3. per step of create+dispose (median us, engine), by live interactions"]
    head = "".join(f"{n:>10,}" for n in live)
    for variant in VARIANTS:
        lines.append(f"   {variant:<20}{head}")
        for label in steps_at[variant, live[0]]:
            cells = "".join(f"{median(steps_at[variant, n][label]) / 1e3:>10.2f}" for n in live)
            lines.append(f"     {label:<18}{cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# 4 (tracemalloc). Traced bytes per live interaction.


def bench_traced_memory(sizes: Sizes, report: Report) -> None:
    top = max(sizes.memory)
    progress(f"4. tracemalloc: {top:,} live interactions (tracing is slow)")
    gc.disable()
    gc.collect()
    tracemalloc.start()
    try:
        floor_b = _traced_growth(sizes.memory, lambda: _FloorGrower())
        engine_b = _traced_growth(sizes.memory, lambda: _EngineGrower())
    finally:
        tracemalloc.stop()
        gc.enable()
    for n in sizes.memory:
        figure = engine_b[n] / n
        report.rows.append(
            Row(
                "4",
                f"memory per live interaction, tracemalloc, {n:,} live",
                figure,
                floor_b[n] / n,
                "B",
                "<= 4 KB",
                figure <= 4 * KB,
            )
        )


class _EngineGrower:
    def __init__(self) -> None:
        self.engine, self.writer = logged_in(), Writer(prefix="t")

    def grow(self, start: int, stop: int) -> None:
        grow_engine(self.engine, self.writer, start, stop)
        check_live(self.engine, stop)


class _FloorGrower:
    def __init__(self) -> None:
        self.floor, self.writer = fl.Floor(), Writer(prefix="t")

    def grow(self, start: int, stop: int) -> None:
        grow_floor(self.floor, self.writer, start, stop)


def _traced_growth(
    sizes: tuple[int, ...], make: Callable[[], _EngineGrower | _FloorGrower]
) -> dict[int, int]:
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    grower = make()
    out: dict[int, int] = {}
    done = 0
    for n in sizes:
        grower.grow(done, n)
        done = n
        gc.collect()
        out[n] = tracemalloc.get_traced_memory()[0] - base
    del grower
    return out

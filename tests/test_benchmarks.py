"""The benchmark runs and prints every figure (design.md: benchmarks are not
tests; a test only checks that they run). Nothing here looks at a time:
the figures are printed for a person to read, beside the same-run floor.

Assertions are written ``expected == actual``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_quick_benchmark_prints_every_item_beside_its_floor() -> None:
    done = _bench("--quick")
    assert 0 == done.returncode, done.stderr
    rows = [line for line in done.stdout.splitlines() if re.match(r"[1-5]  \S", line)]
    assert ["1", "2", "3", "4", "5"] == sorted({row[0] for row in rows})
    for row in rows:
        if "same, " in row:  # the flatness rows: a ratio of the figure at the largest size to 0 live
            continue
        figure_and_floor = re.findall(r"\d[\d,]*(?:\.\d+)? (?:us|B)|\d[\d,]*/s", row)
        assert 2 <= len(figure_and_floor), f"no figure and floor in: {row}"
    for item in ("1. per request kind", "3. per step of create+dispose", "context: decode"):
        assert item in done.stdout


def test_each_profile_prints_its_costliest_functions() -> None:
    for path in ("request", "create", "run"):
        done = _bench("--quick", "--profile", path)
        assert 0 == done.returncode, done.stderr
        assert "Ordered by: internal time" in done.stdout
        assert "fsm/engine.py" in done.stdout

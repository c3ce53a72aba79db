"""Bounded atheris fuzzing (D-BAD: nothing raises out of an entry point).
Skipped, saying why, where atheris is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_atheris_finds_no_crash_in_the_entry_points(tmp_path: Path) -> None:
    """D-BAD, D-WIRE: frame decoder, bridge intake, switch events and the run
    line protocol survive coverage-guided inputs."""
    pytest.importorskip("atheris", reason="atheris is not installed here (optional: pip install atheris)")
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, "-m", "tests.fuzz_atheris", "--seed", str(corpus)], cwd=ROOT, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_atheris", "-runs=20000", "-max_len=2048", "-seed=1", str(corpus)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    assert "Done 20000 runs" in done.stderr

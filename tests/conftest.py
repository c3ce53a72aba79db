"""Hypothesis profiles for the property tests (tests/test_properties.py).

``ci`` (the default): deterministic and small enough that the property
tests run in well under a minute on two cores. ``thorough``: many more and
longer runs, for a bounded soak. Choose one with ``--hypothesis-profile=NAME``
or the ``HYPOTHESIS_PROFILE`` environment variable.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def postgresql() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the session (tests/pg.py)."""
    from tests.pg import postgresql_server

    with postgresql_server() as conninfo:
        yield conninfo


def _our_children() -> list[int]:
    """This process's children that are telephony-fsm commands."""
    found = []
    for tasks in Path("/proc/self/task").glob("*/children"):
        for pid in tasks.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"adapters.cli" in cmdline or b"tests.crashing_serve" in cmdline:
                found.append(int(pid))
    return found


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way may leave the bridge, serve or pbx it
    started running: they are killed when the test ends, so that the suite
    stops by itself and no process holds a port or a file."""
    yield
    if not Path("/proc/self/task").is_dir():
        return
    for pid in _our_children():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

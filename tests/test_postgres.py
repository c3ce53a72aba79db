"""Durable state in a real PostgreSQL server (adapters/postgres.py), started
on loopback by the test session (tests/pg.py; skipped with the reason where
Debian's postgresql package or psycopg is missing).

- Restart from the database at inputs of the full call: the same outputs
  and the same final state as a process that never stopped.
- Several processors share one database, each its own rows; a second
  process for the same processor is refused while the first one lives.
- ``serve --state postgresql://...`` killed with SIGKILL right after a
  commit and restarted: the bridge sees the call it sees without a kill
  (tests/test_durable.py's judgement).
- Bad connection strings are a usage error naming the problem.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters.simulated import SimulatedSwitch
from adapters.state import StateError, resume
from fsm.outputs import Targets
from tests.pg import fresh_database
from tests.scenario import full_call, make_runner
from tests.test_durable import CLI, ROOT, CallRun, assert_same_call, baseline, call, feed_and_save, restart_at

__all__ = ["baseline"]  # the fixture of tests/test_durable.py, shared

pytest.importorskip("psycopg")
from adapters.postgres import PostgresStore


@pytest.fixture
def database(postgresql: str, request: pytest.FixtureRequest) -> str:
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return fresh_database(postgresql, name)


@pytest.mark.parametrize("k", [0, 1, 7, 15, len(full_call())])
def test_restart_from_the_database_at_inputs_of_the_full_call(database: str, k: int) -> None:
    """As tests/test_durable.py's restart at every input, from PostgreSQL."""
    restart_at(lambda: PostgresStore(database, "proc-1"), k)


def test_processors_share_a_database_and_each_is_held_by_one_process(database: str) -> None:
    lines = full_call()
    with PostgresStore(database, "proc-1") as one, PostgresStore(database, "proc-2") as two:
        feed_and_save(make_runner(), one, lines[:5], 1)
        assert two.load() is None  # its own rows: nothing yet
        feed_and_save(make_runner(), two, lines[:3], 1)
        with pytest.raises(StateError, match=r"processor 'proc-1' .* is in use by another process"):
            PostgresStore(database, "proc-1")
        saved_one, saved_two = one.load(), two.load()
        assert saved_one is not None and saved_two is not None
        assert (5, 3) == (saved_one.inputs, saved_two.inputs)
        assert one.count("record") > 0 and two.count("record") > 0
    with PostgresStore(database, "proc-1") as again:  # the lock died with its connection
        saved = again.load()
        assert saved is not None and 5 == saved.inputs
        with pytest.raises(StateError, match="written for processor 'proc-1', not 'proc-2'"):
            resume(saved, SimulatedSwitch(), Targets("proc-2"))


def test_the_outbox_in_postgres_keeps_order_and_its_bound(database: str) -> None:
    runner = make_runner()
    messages: list[dict[str, Any]] = [
        {"header": {"type": "cti.event", "name": f"e{n}", "target": "T"}} for n in range(4)
    ]
    with PostgresStore(database, "proc-1") as store:
        store.save(runner.engine, runner.switch, inputs=1, switch_events=0, outputs=messages[:2])
        store.save(runner.engine, runner.switch, inputs=2, switch_events=0, outputs=messages[2:3])
        first, *_ = store.unsent()
        store.mark_sent(first[0])
        assert messages[1:3] == [m for _, m in store.unsent()]
        dropped = store.save(
            runner.engine, runner.switch, inputs=3, switch_events=0, outputs=messages[3:], max_unsent=2
        )
        assert 1 == dropped
        assert messages[2:] == [m for _, m in store.unsent()]


@pytest.mark.parametrize("n", [1, 12, 20])
def test_serve_with_postgres_killed_after_input_n_and_restarted(
    tmp_path: Path, baseline: tuple[CallRun, dict[str, Any]], database: str, n: int
) -> None:
    assert_same_call(call(tmp_path, n, state=database), baseline, 1, in_flight=n <= 11)


def test_serve_refuses_a_database_it_cannot_reach(postgresql: str) -> None:
    unreachable = postgresql.rsplit("/", 1)[0].rsplit(":", 1)[0] + ":9/none"
    done = subprocess.run(
        [
            *CLI,
            "serve",
            "--connect",
            "127.0.0.1:9",
            "--state",
            unreachable.replace("postgres@", "postgres:secret@"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode, done.stderr
    assert "--state: cannot connect to postgresql://postgres@127.0.0.1:9/none" in done.stderr
    assert "secret" not in done.stderr

"""Durable state for ``telephony-fsm serve --state FILE``: SQLite, WAL, one
transaction per processed input.

What the file holds (schema version :data:`SCHEMA_VERSION`, tagged with
:data:`APPLICATION_ID` so that another SQLite file is refused):

- ``engine``: the whole engine (:func:`fsm.snapshot.snapshot`): live
  interactions and legs, pending requests, every requestId seen (D-DUP),
  the clock, the policy;
- ``switch``: the switch driver's kind and its state, when the driver is an
  attrs class (the simulated PBX's calls and leg counter);
- ``progress``: how many inputs were processed (the ``seq`` of the trace),
  how many switch events came from outside (``--switch-events``), and the
  wall-clock time of the commit;
- ``outbox``: the messages for the bridge that inputs produced and that were
  not yet handed to a connection, in order.

:meth:`StateStore.save` writes the new engine and switch state, the counters
and the input's outputs in ONE transaction; the caller sends the outbox only
after it returns, and deletes each entry (:meth:`StateStore.mark_sent`) once
it was handed to the transport. A process killed at any point therefore
restarts from its last committed input: what that input changed is kept
(a requestId answered once is never executed again, D-DUP), and what it
produced is still sent, in order (at least once: an entry sent just before
the kill, and not yet marked, is sent again).

The file is opened in exclusive locking mode: a second process on the same
file is refused while the first one lives; the lock dies with the process.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.switch import Switch
from fsm.codec import JSONDecodeError, dumps, loads
from fsm.engine import Engine, Targets
from fsm.messages import converter
from fsm.snapshot import restore, snapshot

#: ``PRAGMA application_id`` of a state file: ASCII "tfsm"
APPLICATION_ID: Final = 0x7466736D
#: ``PRAGMA user_version``: the layout below
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    "CREATE TABLE engine (id INTEGER PRIMARY KEY CHECK (id = 1), snapshot TEXT NOT NULL)",
    "CREATE TABLE switch (id INTEGER PRIMARY KEY CHECK (id = 1), kind TEXT NOT NULL, state TEXT NOT NULL)",
    "CREATE TABLE progress (id INTEGER PRIMARY KEY CHECK (id = 1), inputs INTEGER NOT NULL,"
    " switch_events INTEGER NOT NULL, saved_at REAL NOT NULL)",
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, input INTEGER NOT NULL,"
    " message TEXT NOT NULL)",
)
_TABLES: Final = frozenset({"engine", "switch", "progress", "outbox"})


class StateError(Exception):
    """A state file that cannot be used: not ours, an unknown schema version,
    corrupt, in use, or written for another switch or channel."""


@attrs.frozen(kw_only=True)
class Saved:
    """What the last committed input left in the file."""

    engine: dict[str, Any]
    switch_kind: str
    switch: Any
    inputs: int
    switch_events: int
    saved_at: float


def switch_kind(driver: Switch) -> str:
    """How a driver is named in the file (as ``--switch`` names it)."""
    if isinstance(driver, SimulatedSwitch):
        return "simulated"
    if isinstance(driver, ScriptedSwitch):
        return "scripted"
    return f"{type(driver).__module__}.{type(driver).__qualname__}"


def switch_state(driver: Switch) -> Any:
    """The driver's state as JSON-ready data (None: it keeps none)."""
    return converter.unstructure(driver) if attrs.has(type(driver)) else None


class StateStore:
    """One state file, open for one process."""

    def __init__(self, path: str | Path, *, timeout: float = 0.5) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state file {self.path}: {exc}") from None
        try:
            self._open()
        except sqlite3.OperationalError as exc:
            self._db.close()
            if "locked" in str(exc):
                raise StateError(f"state file {self.path} is in use by another process") from None
            raise StateError(f"cannot use state file {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateError(f"{self.path} is not a telephony-fsm state file ({exc})") from None
        except StateError:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"state file {self.path}: SQLite refused WAL mode (journal mode {mode!r})")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now, not at the first input
        try:
            self._check_or_create()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _check_or_create(self) -> None:
        db = self._db
        app = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if app == 0 and version == 0 and not tables:  # a new file
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return
        if app != APPLICATION_ID:
            raise StateError(
                f"{self.path} is an SQLite file but not a telephony-fsm state file "
                f"(application_id {app:#x}, expected {APPLICATION_ID:#x})"
            )
        if version != SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version}; "
                f"this telephony-fsm reads version {SCHEMA_VERSION} only"
            )
        if not _TABLES <= tables:
            missing = ", ".join(sorted(_TABLES - tables))
            raise StateError(f"state file {self.path} is corrupt: table(s) {missing} missing")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StateError(f"state file {self.path} is corrupt: {check}")

    # ------------------------------------------------------------------
    # Reading.

    @property
    def settings(self) -> dict[str, str]:
        """The SQLite settings durability rests on, as SQLite reports them."""
        names = ("journal_mode", "synchronous", "locking_mode")
        return {name: str(self._db.execute(f"PRAGMA {name}").fetchone()[0]) for name in names}

    def load(self) -> Saved | None:
        """The last committed state, or None when no input was committed yet."""
        db = self._db
        progress = db.execute("SELECT inputs, switch_events, saved_at FROM progress WHERE id = 1").fetchone()
        if progress is None:
            return None
        engine = db.execute("SELECT snapshot FROM engine WHERE id = 1").fetchone()
        switch = db.execute("SELECT kind, state FROM switch WHERE id = 1").fetchone()
        if engine is None or switch is None:
            raise StateError(f"state file {self.path} is corrupt: progress without engine or switch state")
        try:
            data = loads(engine[0])
            state = loads(switch[1])
        except (TypeError, JSONDecodeError) as exc:
            raise StateError(f"state file {self.path} is corrupt: {exc}") from None
        if not isinstance(data, dict):
            raise StateError(f"state file {self.path} is corrupt: the engine snapshot is not an object")
        inputs, events, saved_at = progress
        return Saved(
            engine=data,
            switch_kind=str(switch[0]),
            switch=state,
            inputs=int(inputs),
            switch_events=int(events),
            saved_at=float(saved_at),
        )

    def unsent(self) -> list[tuple[int, dict[str, Any]]]:
        """The outbox: (entry id, message) of every message not yet handed to
        a connection, oldest first."""
        rows = self._db.execute("SELECT id, message FROM outbox ORDER BY id").fetchall()
        return [(int(entry), loads(text)) for entry, text in rows]

    # ------------------------------------------------------------------
    # Writing.

    def save(
        self,
        engine: Engine,
        driver: Switch,
        *,
        inputs: int,
        switch_events: int,
        outputs: Sequence[Mapping[str, Any]] = (),
        max_unsent: int | None = None,
    ) -> int:
        """Commit one processed input: the engine and switch state, the
        counters, and the messages it produced for the bridge (appended to
        the outbox), in one transaction. With ``max_unsent`` (D-BOUND) the
        oldest unsent messages beyond it are dropped; returns how many."""
        engine_text = dumps(snapshot(engine), ascii=True)
        kind, state = switch_kind(driver), dumps(switch_state(driver), ascii=True)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO engine (id, snapshot) VALUES (1, ?)", (engine_text,))
            db.execute("INSERT OR REPLACE INTO switch (id, kind, state) VALUES (1, ?, ?)", (kind, state))
            db.execute(
                "INSERT OR REPLACE INTO progress (id, inputs, switch_events, saved_at) VALUES (1, ?, ?, ?)",
                (inputs, switch_events, time.time()),
            )
            db.executemany(
                "INSERT INTO outbox (input, message) VALUES (?, ?)",
                [(inputs, dumps(message, ascii=True)) for message in outputs],
            )
            dropped = 0
            if max_unsent is not None:
                dropped = db.execute(
                    "DELETE FROM outbox WHERE id NOT IN (SELECT id FROM outbox ORDER BY id DESC LIMIT ?)",
                    (max_unsent,),
                ).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return dropped

    def mark_sent(self, entry: int) -> None:
        """An outbox entry was handed to the transport: it leaves the outbox."""
        self._db.execute("DELETE FROM outbox WHERE id = ?", (entry,))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def resume(saved: Saved, driver: Switch, targets: Targets) -> tuple[Engine, Switch]:
    """The engine and switch driver of a state file, for a process started
    with ``driver`` (a fresh one of the kind it was asked for) for the
    processor of ``targets``. Refuses a file written for another switch kind
    or another processor. The agent directory is the one saved."""
    kind = switch_kind(driver)
    if saved.switch_kind != kind:
        raise StateError(f"the state file was written with the {saved.switch_kind} switch, not {kind}")
    processor = saved.engine.get("processor")
    if processor != targets.processor:
        raise StateError(f"the state file was written for processor {processor!r}, not {targets.processor!r}")
    try:
        engine = restore(saved.engine, targets)
        if saved.switch is not None:
            driver = converter.structure(saved.switch, type(driver))
    except Exception as exc:  # cattrs' errors (ClassValidationError, ...) or a bad format
        raise StateError(f"the state file's snapshot cannot be restored: {exc}") from None
    if engine.switch_acknowledges != driver.acknowledges:
        raise StateError("the state file's engine does not match the switch kind")
    return engine, driver

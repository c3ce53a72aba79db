"""Durable state for ``telephony-fsm serve --state FILE|postgresql://...``:
one transaction per processed input, writing what that input changed.

The engine is kept as records (:mod:`fsm.snapshot`, :mod:`fsm.changes`):
one per device, per live interaction, per session, and the processor's
own; the memories of disposed destinations as rows. A save writes the
records the input changed (deleting those no longer live) and the memory
entries it added, never the whole client: its cost does not grow with the
number of agents. The first save of a process writes every record.

Beside them a store holds:

- ``switch``: the switch driver's kind and its state, when the driver is an
  attrs class (the simulated PBX's calls, devices and leg counter): a row
  per scalar field and per entry of each map, those of the entries the
  driver reports changed (``take_changed()``) rewritten;
- ``progress``: how many inputs were processed (the ``seq`` of the trace),
  how many switch events came from outside (``--switch-events``), and the
  wall-clock time of the commit;
- ``outbox``: the messages for the bridge that inputs produced and that were
  not yet handed to a connection, in order.

:meth:`StateStore.save` writes the changed records, the switch state, the
counters and the input's outputs in ONE transaction; the caller sends the
outbox only after it returns, and deletes each entry
(:meth:`StateStore.mark_sent`) once it was handed to the transport. A
process killed at any point therefore restarts from its last committed
input: what that input changed is kept (a requestId answered once is never
executed again, D-DUP), and what it produced is still sent, in order (at
least once: an entry sent just before the kill, and not yet marked, is
sent again).

Two backends share that logic (:class:`Writer`): SQLite (:class:`StateStore`,
the embedded default; a file tagged with :data:`APPLICATION_ID`, WAL, opened
in exclusive locking mode so that a second process on the same file is
refused while the first one lives) and PostgreSQL
(:class:`adapters.postgres.PostgresStore`, where several processes share
one database, each processor its own rows, guarded by an advisory lock).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import attrs
import cattrs

from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.switch import Switch
from fsm.codec import JSONDecodeError, dumps, loads
from fsm.engine import Engine, Targets
from fsm.messages import converter
from fsm.snapshot import CONFIG, MEMORIES, Delta, RecordKey, Saver, from_records, restore

#: ``PRAGMA application_id`` of a state file: ASCII "tfsm"
APPLICATION_ID: Final = 0x7466736D
#: ``PRAGMA user_version``: the layout below (1: one row of the whole engine)
SCHEMA_VERSION: Final = 2

_SCHEMA: Final = (
    "CREATE TABLE record (kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,"
    " PRIMARY KEY (kind, key)) WITHOUT ROWID",
    "CREATE TABLE memory (name TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,"
    " PRIMARY KEY (name, seq)) WITHOUT ROWID",
    "CREATE TABLE switch (part TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL,"
    " PRIMARY KEY (part, key)) WITHOUT ROWID",
    "CREATE TABLE progress (id INTEGER PRIMARY KEY CHECK (id = 1), inputs INTEGER NOT NULL,"
    " switch_events INTEGER NOT NULL, saved_at REAL NOT NULL)",
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, input INTEGER NOT NULL,"
    " message TEXT NOT NULL)",
)
_TABLES: Final = frozenset({"record", "memory", "switch", "progress", "outbox"})


class StateError(Exception):
    """A store that cannot be used: not ours, an unknown schema version,
    corrupt, in use, unreachable, or written for another switch or processor."""


@attrs.frozen(kw_only=True)
class Saved:
    """What the last committed input left in a store."""

    #: every live record by (kind, key), decoded
    records: dict[RecordKey, dict[str, Any]]
    #: each memory's entries, oldest first
    memories: dict[str, list[str]]
    switch_kind: str
    switch: Any
    inputs: int
    switch_events: int
    saved_at: float

    @property
    def processor(self) -> object:
        return self.records.get((CONFIG, ""), {}).get("processor")


def switch_kind(driver: Switch) -> str:
    """How a driver is named in a store (as ``--switch`` names it)."""
    if isinstance(driver, SimulatedSwitch):
        return "simulated"
    if isinstance(driver, ScriptedSwitch):
        return "scripted"
    named = getattr(type(driver), "switch_kind", None)
    if isinstance(named, str):
        return named
    return f"{type(driver).__module__}.{type(driver).__qualname__}"


def switch_state(driver: Switch) -> Any:
    """The driver's state as JSON-ready data (None: it keeps none), without
    its ``transient`` fields."""
    cls: Any = type(driver)
    if not attrs.has(cls):
        return None
    return {
        field.name: converter.unstructure(getattr(driver, field.name))
        for field in attrs.fields(cls)
        if not field.metadata.get("transient")
    }


#: the switch row naming the driver's kind (part "", key "kind")
KIND_ROW: Final = ("", "kind")


def switch_rows(driver: Switch, everything: bool) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """The rows of the driver's state to write and to delete: every row if
    ``everything`` or the driver does not say what changed, else its scalar
    fields and the map entries it names (``take_changed()``)."""
    cls: Any = type(driver)
    kind = dumps({"kind": switch_kind(driver), "stateful": attrs.has(cls)}, ascii=True)
    upserts = [(*KIND_ROW, kind)]
    deletes: list[tuple[str, str]] = []
    if not attrs.has(cls):
        return upserts, deletes
    take = getattr(driver, "take_changed", None)
    changed: list[str] | None = take() if callable(take) else None
    for field in attrs.fields(cls):
        if field.metadata.get("transient"):
            continue
        value = getattr(driver, field.name)
        if not isinstance(value, dict):
            upserts.append(("", field.name, dumps(converter.unstructure(value), ascii=True)))
            continue
        for key in value if everything or changed is None else changed:
            if key in value:
                upserts.append((field.name, key, dumps(converter.unstructure(value[key]), ascii=True)))
            else:
                deletes.append((field.name, key))
    return upserts, deletes


def switch_from_rows(rows: Sequence[tuple[str, str, str]]) -> tuple[str, Any]:
    """The driver's kind and state (None: it keeps none) from its rows."""
    state: dict[str, Any] = {}
    kind: Any = None
    for part, key, text in rows:
        value = loads(text)
        if (part, key) == KIND_ROW:
            kind = value
        elif part:
            state.setdefault(part, {})[key] = value
        else:
            state[key] = value
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise TypeError("the switch rows do not name the driver's kind")
    return kind["kind"], state if kind.get("stateful") else None


@attrs.frozen(kw_only=True)
class Rows:
    """What one save writes, as text rows, for a backend to execute."""

    #: every record row is deleted first (the first save of an engine)
    replace_all: bool
    upserts: list[tuple[str, str, str]]
    deletes: list[tuple[str, str]]
    added: list[tuple[str, int, str]]
    #: memory name -> the first sequence number kept
    kept_from: list[tuple[str, int]]
    #: the switch's rows to write (part, key, data) and to delete (part, key)
    switch_upserts: list[tuple[str, str, str]]
    switch_deletes: list[tuple[str, str]]
    inputs: int
    switch_events: int
    saved_at: float
    outputs: list[tuple[int, str]]

    def steps(self) -> list[tuple[str, Sequence[tuple[Any, ...]]]]:
        """The writes of one save in the order they run: each step's name
        and its parameter rows (none: the step is skipped). Each backend
        holds one statement per step, in its dialect, keyed by the name."""
        clear: list[tuple[()]] = [()] if self.replace_all else []
        return [
            ("clear records", clear),
            ("clear memories", clear),
            ("clear switch", clear),
            ("delete records", self.deletes),
            ("write records", self.upserts),
            ("add memories", self.added),
            ("trim memories", self.kept_from),
            ("delete switch", self.switch_deletes),
            ("write switch", self.switch_upserts),
            ("progress", [(self.inputs, self.switch_events, self.saved_at)]),
            ("outbox", self.outputs),
        ]


@attrs.define(eq=False)
class Writer:
    """The backends' shared half: an engine's changes as :class:`Rows`. A new
    engine (the first save, or another engine object) has all its records
    written; after that, what :meth:`fsm.engine.Engine.take_changes` names."""

    engine: Engine | None = None
    saver: Saver = attrs.field(factory=Saver)

    def rows(
        self,
        engine: Engine,
        driver: Switch,
        *,
        inputs: int,
        switch_events: int,
        outputs: Sequence[Mapping[str, Any]],
    ) -> Rows:
        if engine is not self.engine:
            engine.track_changes()
            engine.take_changes()
            self.engine, self.saver = engine, Saver()
        replace_all = self.saver.fresh
        delta: Delta = self.saver.delta(engine, engine.take_changes())
        upserts, deletes = [], []
        for (kind, key), record in delta.records.items():
            if record is None:
                deletes.append((kind, key))
            else:
                upserts.append((kind, key, dumps(record, ascii=True)))
        switch_upserts, switch_deletes = switch_rows(driver, replace_all)
        return Rows(
            replace_all=replace_all,
            upserts=upserts,
            deletes=deletes,
            added=[(name, seq, key) for name, rows in delta.added.items() for seq, key in rows],
            kept_from=sorted(delta.kept_from.items()),
            switch_upserts=switch_upserts,
            switch_deletes=switch_deletes,
            inputs=inputs,
            switch_events=switch_events,
            saved_at=time.time(),
            outputs=[(inputs, dumps(message, ascii=True)) for message in outputs],
        )


def decode_saved(
    path: object,
    record_rows: Sequence[tuple[str, str, str]],
    memory_rows: Sequence[tuple[str, int, str]],
    switch: Sequence[tuple[str, str, str]],
    progress: tuple[int, int, float],
) -> Saved:
    """A backend's rows as :class:`Saved` (memory rows in sequence order)."""
    try:
        records = {(kind, key): loads(text) for kind, key, text in record_rows}
        kind, state = switch_from_rows(switch)
    except (TypeError, JSONDecodeError) as exc:
        raise StateError(f"state {path} is corrupt: {exc}") from None
    if (CONFIG, "") not in records or not all(isinstance(r, dict) for r in records.values()):
        raise StateError(f"state {path} is corrupt: the engine's records are incomplete")
    memories: dict[str, list[str]] = {name: [] for name in MEMORIES}
    for name, _, key in memory_rows:
        memories.setdefault(name, []).append(key)
    inputs, events, saved_at = progress
    return Saved(
        records=records,
        memories=memories,
        switch_kind=kind,
        switch=state,
        inputs=int(inputs),
        switch_events=int(events),
        saved_at=float(saved_at),
    )


class Store(Protocol):
    """What ``serve`` needs of a store (SQLite or PostgreSQL)."""

    @property
    def where(self) -> str: ...

    def load(self) -> Saved | None: ...

    def unsent(self) -> list[tuple[int, dict[str, Any]]]: ...

    def save(
        self,
        engine: Engine,
        driver: Switch,
        *,
        inputs: int,
        switch_events: int,
        outputs: Sequence[Mapping[str, Any]] = (),
        max_unsent: int | None = None,
    ) -> int: ...

    def mark_sent(self, entry: int) -> None: ...

    def close(self) -> None: ...


#: each step of a save (:meth:`Rows.steps`) as SQLite executes it
_SQLITE_STEPS: Final = {
    "clear records": "DELETE FROM record",
    "clear memories": "DELETE FROM memory",
    "clear switch": "DELETE FROM switch",
    "delete records": "DELETE FROM record WHERE kind = ? AND key = ?",
    "write records": "INSERT INTO record (kind, key, data) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data",
    "add memories": "INSERT INTO memory (name, seq, key) VALUES (?, ?, ?)",
    "trim memories": "DELETE FROM memory WHERE name = ? AND seq < ?",
    "delete switch": "DELETE FROM switch WHERE part = ? AND key = ?",
    "write switch": "INSERT INTO switch (part, key, data) VALUES (?, ?, ?)"
    " ON CONFLICT (part, key) DO UPDATE SET data = excluded.data",
    "progress": "INSERT OR REPLACE INTO progress (id, inputs, switch_events, saved_at) VALUES (1, ?, ?, ?)",
    "outbox": "INSERT INTO outbox (input, message) VALUES (?, ?)",
}


class StateStore:
    """One SQLite state file, open for one process."""

    def __init__(self, path: str | Path, *, timeout: float = 0.5) -> None:
        self.path = Path(path)
        self.writer = Writer()
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

    @property
    def where(self) -> str:
        return str(self.path)

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
        if version == 1 and {"engine", "switch", "progress", "outbox"} <= tables:
            self._upgrade_from_1()
            tables = set(_TABLES)
        elif version != SCHEMA_VERSION:
            raise StateError(
                f"state file {self.path} has schema version {version}; "
                f"this telephony-fsm reads version {SCHEMA_VERSION} (and upgrades version 1)"
            )
        if not _TABLES <= tables:
            missing = ", ".join(sorted(_TABLES - tables))
            raise StateError(f"state file {self.path} is corrupt: table(s) {missing} missing")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StateError(f"state file {self.path} is corrupt: {check}")

    def _upgrade_from_1(self) -> None:
        """A file of schema version 1 (the whole engine in one row) becomes
        version 2 in the opening transaction: its engine and switch state
        are written as records and rows; the progress and the outbox stay."""
        db = self._db
        engine_row = db.execute("SELECT snapshot FROM engine WHERE id = 1").fetchone()
        switch_row = db.execute("SELECT kind, state FROM switch WHERE id = 1").fetchone()
        progress = db.execute("SELECT inputs, switch_events, saved_at FROM progress WHERE id = 1").fetchone()
        db.execute("ALTER TABLE switch RENAME TO switch_v1")
        for statement in _SCHEMA[:3]:  # record, memory, switch
            db.execute(statement)
        if engine_row is not None and switch_row is not None and progress is not None:
            kind, state = str(switch_row[0]), switch_row[1]
            driver: Switch
            try:
                engine = restore(loads(engine_row[0]))
                if kind == "simulated":
                    driver = converter.structure(loads(state), SimulatedSwitch)
                elif kind == "scripted":
                    driver = ScriptedSwitch()
                else:
                    raise StateError(f"state file {self.path}: cannot upgrade the state of the {kind} switch")
            except (TypeError, ValueError, JSONDecodeError, cattrs.BaseValidationError) as exc:
                raise StateError(f"state file {self.path} (version 1) is corrupt: {exc}") from None
            rows = Writer().rows(
                engine, driver, inputs=int(progress[0]), switch_events=int(progress[1]), outputs=()
            )
            self._write(attrs.evolve(rows, saved_at=float(progress[2])), None)
        db.execute("DROP TABLE engine")
        db.execute("DROP TABLE switch_v1")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

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
        return decode_saved(
            self.path,
            db.execute("SELECT kind, key, data FROM record").fetchall(),
            db.execute("SELECT name, seq, key FROM memory ORDER BY name, seq").fetchall(),
            db.execute("SELECT part, key, data FROM switch").fetchall(),
            progress,
        )

    def unsent(self) -> list[tuple[int, dict[str, Any]]]:
        """The outbox: (entry id, message) of every message not yet handed to
        a connection, oldest first."""
        rows = self._db.execute("SELECT id, message FROM outbox ORDER BY id").fetchall()
        return [(int(entry), loads(text)) for entry, text in rows]

    def count(self, table: str) -> int:
        """Rows in one of the store's tables (for tests and benchmarks)."""
        if table not in _TABLES:
            raise ValueError(f"no table {table!r}")
        return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

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
        """Commit one processed input: the records it changed, the switch
        state, the counters, and the messages it produced for the bridge
        (appended to the outbox), in one transaction. With ``max_unsent``
        (D-BOUND) the oldest unsent messages beyond it are dropped; returns
        how many."""
        rows = self.writer.rows(engine, driver, inputs=inputs, switch_events=switch_events, outputs=outputs)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            dropped = self._write(rows, max_unsent)
        except BaseException:
            db.execute("ROLLBACK")
            self.writer.engine = None  # what was not committed is written again, whole
            raise
        db.execute("COMMIT")
        return dropped

    def _write(self, rows: Rows, max_unsent: int | None) -> int:
        """Execute ``rows`` in the transaction open; how many outbox entries were dropped."""
        db = self._db
        for step, params in rows.steps():
            if params:
                db.executemany(_SQLITE_STEPS[step], params)
        if max_unsent is None:
            return 0
        return int(
            db.execute(
                "DELETE FROM outbox WHERE id NOT IN (SELECT id FROM outbox ORDER BY id DESC LIMIT ?)",
                (max_unsent,),
            ).rowcount
        )

    def mark_sent(self, entry: int) -> None:
        """An outbox entry was handed to the transport: it leaves the outbox."""
        self._db.execute("DELETE FROM outbox WHERE id = ?", (entry,))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_store(where: str | Path, processor: str) -> Store:
    """The store ``--state`` names: a ``postgresql://`` (or ``postgres://``)
    connection string, or the path of an SQLite file."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        from adapters.postgres import PostgresStore

        return PostgresStore(text, processor)
    return StateStore(where)


def resume(saved: Saved, driver: Switch, targets: Targets) -> tuple[Engine, Switch]:
    """The engine and switch driver of a store, for a process started with
    ``driver`` (a fresh one of the kind it was asked for) for the processor
    of ``targets``. Refuses a store written for another switch kind or
    another processor. The agent directory is the one saved."""
    kind = switch_kind(driver)
    if saved.switch_kind != kind:
        raise StateError(f"the state was written with the {saved.switch_kind} switch, not {kind}")
    if saved.processor != targets.processor:
        raise StateError(
            f"the state was written for processor {saved.processor!r}, not {targets.processor!r}"
        )
    try:
        engine = from_records(saved.records, saved.memories, targets)
        if saved.switch is not None:
            driver = converter.structure(saved.switch, type(driver))
    except Exception as exc:  # cattrs' errors (ClassValidationError, ...) or a bad format
        raise StateError(f"the state's records cannot be restored: {exc}") from None
    if engine.switch_acknowledges != driver.acknowledges:
        raise StateError("the state's engine does not match the switch kind")
    return engine, driver

"""Durable state in PostgreSQL (``serve --state postgresql://...``), for
deployments where several adapter processes share one database.

The same records, memories, switch state, progress and outbox as the SQLite
store (:mod:`adapters.state`, whose :class:`~adapters.state.Writer` makes
the rows), in tables prefixed ``tfsm_`` with the processor's name as the
first column of every key: each processor has its own rows, and a process
holds a session-level advisory lock on its processor for as long as it
lives, so that a second process for the same processor is refused while
the first one runs (the lock dies with its connection). Each save is one
transaction; the tables are created on first use. psycopg 3 (extra
``postgresql``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from adapters.state import Saved, StateError, Writer, decode_saved
from adapters.switch import Switch
from fsm.codec import loads
from fsm.engine import Engine

#: the layout below; kept in ``tfsm_schema``
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS tfsm_schema (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tfsm_record (processor TEXT NOT NULL, kind TEXT NOT NULL,"
    " key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (processor, kind, key))",
    "CREATE TABLE IF NOT EXISTS tfsm_memory (processor TEXT NOT NULL, name TEXT NOT NULL,"
    " seq BIGINT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (processor, name, seq))",
    "CREATE TABLE IF NOT EXISTS tfsm_switch (processor TEXT NOT NULL, part TEXT NOT NULL,"
    " key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (processor, part, key))",
    "CREATE TABLE IF NOT EXISTS tfsm_progress (processor TEXT PRIMARY KEY, inputs BIGINT NOT NULL,"
    " switch_events BIGINT NOT NULL, saved_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tfsm_outbox (id BIGSERIAL PRIMARY KEY, processor TEXT NOT NULL,"
    " input BIGINT NOT NULL, message TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS tfsm_outbox_processor ON tfsm_outbox (processor, id)",
)
#: the advisory lock's first key: hashtext('telephony-fsm') is computed by the server
_LOCK: Final = "SELECT pg_try_advisory_lock(hashtext('telephony-fsm'), hashtext(%s))"


#: each step of a save (:meth:`adapters.state.Rows.steps`) as PostgreSQL
#: executes it, for one processor (the first parameter)
_STEPS: Final = {
    "clear records": "DELETE FROM tfsm_record WHERE processor = %s",
    "clear memories": "DELETE FROM tfsm_memory WHERE processor = %s",
    "clear switch": "DELETE FROM tfsm_switch WHERE processor = %s",
    "delete records": "DELETE FROM tfsm_record WHERE processor = %s AND kind = %s AND key = %s",
    "write records": "INSERT INTO tfsm_record (processor, kind, key, data) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (processor, kind, key) DO UPDATE SET data = excluded.data",
    "add memories": "INSERT INTO tfsm_memory (processor, name, seq, key) VALUES (%s, %s, %s, %s)",
    "trim memories": "DELETE FROM tfsm_memory WHERE processor = %s AND name = %s AND seq < %s",
    "delete switch": "DELETE FROM tfsm_switch WHERE processor = %s AND part = %s AND key = %s",
    "write switch": "INSERT INTO tfsm_switch (processor, part, key, data) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (processor, part, key) DO UPDATE SET data = excluded.data",
    "progress": "INSERT INTO tfsm_progress (processor, inputs, switch_events, saved_at)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (processor) DO UPDATE SET inputs = excluded.inputs,"
    " switch_events = excluded.switch_events, saved_at = excluded.saved_at",
    "outbox": "INSERT INTO tfsm_outbox (processor, input, message) VALUES (%s, %s, %s)",
}


class PostgresStore:
    """One processor's state in a PostgreSQL database, open for one process."""

    def __init__(self, conninfo: str, processor: str, *, connect_timeout: float = 5.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise StateError(
                "a postgresql:// store needs psycopg 3: pip install 'telephony-fsm[postgresql]'"
            ) from None
        self.processor = processor
        self.writer = Writer()
        self._where = _redacted(conninfo)
        try:
            self._db = psycopg.connect(
                conninfo, autocommit=True, connect_timeout=max(1, round(connect_timeout))
            )
        except psycopg.Error as exc:
            raise StateError(f"cannot connect to {self._where}: {_first_line(exc)}") from None
        try:
            self._open()
        except psycopg.Error as exc:
            self._db.close()
            raise StateError(f"cannot use {self._where}: {_first_line(exc)}") from None
        except StateError:
            self._db.close()
            raise

    @property
    def where(self) -> str:
        return f"{self._where} (processor {self.processor})"

    def _open(self) -> None:
        db = self._db
        [locked] = db.execute(_LOCK, (self.processor,)).fetchone() or (False,)
        if not locked:
            raise StateError(
                f"the state of processor {self.processor!r} at {self._where} is in use by another process"
            )
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('telephony-fsm'), 0)")  # one creator at a time
            for statement in _SCHEMA:
                db.execute(statement)
            versions = [row[0] for row in db.execute("SELECT version FROM tfsm_schema").fetchall()]
            if not versions:
                db.execute("INSERT INTO tfsm_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif versions != [SCHEMA_VERSION]:
                raise StateError(
                    f"{self._where} has telephony-fsm schema version(s) {versions}; "
                    f"this telephony-fsm reads version {SCHEMA_VERSION} only"
                )

    # ------------------------------------------------------------------
    # Reading.

    def load(self) -> Saved | None:
        db, p = self._db, (self.processor,)
        progress = db.execute(
            "SELECT inputs, switch_events, saved_at FROM tfsm_progress WHERE processor = %s", p
        ).fetchone()
        if progress is None:
            return None
        return decode_saved(
            self.where,
            db.execute("SELECT kind, key, data FROM tfsm_record WHERE processor = %s", p).fetchall(),
            db.execute(
                "SELECT name, seq, key FROM tfsm_memory WHERE processor = %s ORDER BY name, seq", p
            ).fetchall(),
            db.execute("SELECT part, key, data FROM tfsm_switch WHERE processor = %s", p).fetchall(),
            progress,
        )

    def unsent(self) -> list[tuple[int, dict[str, Any]]]:
        rows = self._db.execute(
            "SELECT id, message FROM tfsm_outbox WHERE processor = %s ORDER BY id", (self.processor,)
        ).fetchall()
        return [(int(entry), loads(text)) for entry, text in rows]

    def count(self, table: str) -> int:
        """This processor's rows in one of the tables (for tests and benchmarks)."""
        if table not in ("record", "memory", "switch", "progress", "outbox"):
            raise ValueError(f"no table {table!r}")
        row = self._db.execute(f"SELECT count(*) FROM tfsm_{table} WHERE processor = %s", (self.processor,))
        return int((row.fetchone() or (0,))[0])

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
        """As :meth:`adapters.state.StateStore.save`, in one transaction."""
        rows = self.writer.rows(engine, driver, inputs=inputs, switch_events=switch_events, outputs=outputs)
        proc = self.processor
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                for step, params in rows.steps():
                    if params:
                        cur.executemany(_STEPS[step], [(proc, *row) for row in params])
                dropped = 0
                if max_unsent is not None:
                    cur.execute(
                        "DELETE FROM tfsm_outbox WHERE processor = %s AND id NOT IN"
                        " (SELECT id FROM tfsm_outbox WHERE processor = %s ORDER BY id DESC LIMIT %s)",
                        (proc, proc, max_unsent),
                    )
                    dropped = cur.rowcount
        except BaseException:
            self.writer.engine = None  # what was not committed is written again, whole
            raise
        return dropped

    def mark_sent(self, entry: int) -> None:
        self._db.execute("DELETE FROM tfsm_outbox WHERE processor = %s AND id = %s", (self.processor, entry))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _redacted(conninfo: str) -> str:
    """A connection string without its password, for messages."""
    scheme, sep, rest = conninfo.partition("://")
    if not sep or "@" not in rest:
        return conninfo
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

"""A store in memory for the tests: it keeps what :class:`fsm.snapshot.Saver`
deltas write, as a real store does, and rebuilds the engine from it, so that
a test can check after every input that the records written so far describe
exactly the engine (fsm.changes: a store writes what one input changed)."""

from __future__ import annotations

import json
from typing import Any

from fsm.engine import Engine
from fsm.snapshot import MEMORIES, Delta, RecordKey, Saver, from_records, snapshot

Json = dict[str, Any]

#: the lists of a snapshot whose order carries no meaning, and their keys
UNORDERED = {
    "sessions": "target",
    "groups": "target",
    "channels": "target",
    "devices": "end_point",
    "interactions": "id",
}


def normalized(data: Json) -> Json:
    """A snapshot as plain JSON with its unordered lists sorted."""
    plain: Json = json.loads(json.dumps(data))
    for name, key in UNORDERED.items():
        plain[name] = sorted(plain[name], key=lambda item: str(item[key]))
    return plain


class RecordMirror:
    """Every record and memory entry written, by key."""

    def __init__(self, engine: Engine) -> None:
        engine.track_changes()
        self.engine = engine
        self.saver = Saver()
        self.records: dict[RecordKey, Json] = {}
        self.memories: dict[str, dict[int, str]] = {name: {} for name in MEMORIES}
        self.written = 0

    def save(self) -> Delta:
        delta = self.saver.delta(self.engine, self.engine.take_changes())
        for key, record in delta.records.items():
            self.written += 1
            if record is None:
                self.records.pop(key, None)
            else:
                self.records[key] = json.loads(json.dumps(record))
        for name, rows in delta.added.items():
            self.memories[name].update(rows)
        for name, first in delta.kept_from.items():
            memory = self.memories[name]
            for seq in [seq for seq in memory if seq < first]:
                del memory[seq]
        return delta

    def rebuilt(self) -> Engine:
        memories = {name: [rows[seq] for seq in sorted(rows)] for name, rows in self.memories.items()}
        return from_records(self.records, memories, self.engine.targets)

    def check(self) -> None:
        """The records written so far rebuild the engine's full snapshot."""
        self.save()
        expected = normalized(snapshot(self.engine))
        got = normalized(snapshot(self.rebuilt()))
        for name in expected:
            assert expected[name] == got[name], f"the records written disagree with the engine on {name}"

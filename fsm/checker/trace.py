"""Reading a trace (``spec/harness.md``, "Traces") line by line into a
:class:`~fsm.checker.watcher.Watcher`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fsm.checker.model import TargetRule
from fsm.checker.state import Violation
from fsm.checker.watcher import Watcher
from fsm.codec import JSONDecodeError, loads
from fsm.policy import Policy


class UnreadableTrace(Exception):
    """A trace line that is not JSON or not a JSON object."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def watch_entry(watcher: Watcher, entry: dict[str, Any], line: int) -> list[Violation]:
    """One trace line (spec/harness.md, "Traces"). A ``connection`` line
    starts a connection; other lines that are neither a bridge message nor
    a switch line (error, protocol_error, done, clock) tell the checker
    nothing."""
    if entry.get("from") == "bridge":
        malformed = entry.get("malformed")
        return watcher.from_bridge(
            entry.get("message"), line, malformed if isinstance(malformed, str) else None
        )
    if entry.get("to") == "bridge":
        rule = entry.get("rule")
        return watcher.from_client(entry.get("message"), line, rule if isinstance(rule, str) else None)
    if entry.get("from") == "switch" or entry.get("to") == "switch":
        return watcher.switch(entry, line)
    if "connection" in entry:
        watcher.connected()
    return []


def check_lines(
    lines: Iterable[str],
    *,
    policy: Policy | None = None,
    targets: TargetRule | None = None,
    end_of_run: bool = True,
) -> list[Violation]:
    """Check a whole trace; its end is the end of the run (S-REQ-1), unless
    ``end_of_run`` is False (a run still going: what awaits a response is
    not reported). Violations come in line order. Raises
    :class:`UnreadableTrace` for a line that is not a JSON object (blank
    lines are skipped)."""
    watcher = Watcher(policy, targets)
    found: list[Violation] = []
    last = 0
    for number, text in enumerate(lines, start=1):
        last = number
        if not text.strip():
            continue
        try:
            entry = loads(text)
        except JSONDecodeError as exc:
            raise UnreadableTrace(number, f"not JSON: {exc.msg} at column {exc.colno}") from None
        except RecursionError:
            raise UnreadableTrace(number, "not JSON: nested too deeply") from None
        if not isinstance(entry, dict):
            raise UnreadableTrace(number, "not a JSON object")
        found += watch_entry(watcher, entry, number)
    if end_of_run:
        found += watcher.finish(last)
    return sorted(found, key=lambda v: v.line)

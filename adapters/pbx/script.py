"""The PBX process's script: its customers and far parties (``pbx --script
FILE``, ``-`` for stdin).

One JSON object per line; blank lines and lines starting with ``#`` are
skipped:

- a switch event (harness.md "Switch events", H-SW-1; not ``link`` or
  ``result``): applied to the PBX and sent to the adapter holding its device
  (``offered``, ``ended``, ``connected``, ``alerting``, ``failed``, ... for
  calls; ``agent`` ``taken`` / ``free`` / ``removed`` for devices). A call
  event without ``device`` must name a live call of the PBX when it is
  played;
- ``{"wait": {"device": D, "state": S}, "timeout": T}``: until device D's
  last agent state is S (``loggedin``, ``loggedout``, ``ready``,
  ``notready``, ``taken``, ``free``, ``removed``; a device never reported is
  ``loggedout``);
  ``{"wait": {"call": C, "state": S}, "timeout": T}``: until call C is S
  (``DIALING``, ``ALERTING``, ``TALKING``, ``HELD``, or ``ended``, which a
  failed call is too);
  ``{"wait": {"connected": D}, "timeout": T}``: until an adapter holds
  device D. ``timeout``: seconds, default 30, at most 3600;
- ``{"sleep": SECONDS}``: a pause (at most 3600 s).

A file (or a stdin that is a file) is read and checked whole before
anything is played; a stdin that is a pipe or a terminal is played as its
lines come. A bad line is a :class:`ScriptError` naming the line.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Final

from adapters.pbx.core import LinkError, parse_event
from fsm.codec import JSONDecodeError, loads
from fsm.messages import unclean
from fsm.switch_events import AGENT_STATES

#: a wait's bound when the step gives none, in seconds
WAIT_TIMEOUT: Final = 30.0
#: the longest wait or sleep, in seconds
MAX_SECONDS: Final = 3600.0
#: the longest line read from stdin (D-BOUND)
MAX_LINE: Final = 1 << 20
#: what a call can be waited for: the simulated PBX's call states, and ``ended``
CALL_STATES: Final = ("DIALING", "ALERTING", "TALKING", "HELD", "ended")
#: what a device can be waited for: its last agent state
DEVICE_STATES: Final = AGENT_STATES

Step = dict[str, Any]
_WAITS: Final = ({"device", "state"}, {"call", "state"}, {"connected"})
_WAIT_FORM: Final = (
    'a wait is {"wait": {"device": D, "state": S} | {"call": C, "state": S} | {"connected": D}, '
    '"timeout": SECONDS}'
)


class ScriptError(Exception):
    """A script line that cannot be played; its text names the line."""


def _seconds(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= MAX_SECONDS


def check_step(step: object, where: str) -> Step:
    """A script step, checked; raises ScriptError naming ``where``."""
    if not isinstance(step, dict):
        raise ScriptError(f"{where}: a step must be a JSON object")
    defect = unclean(step)
    if defect is not None:
        raise ScriptError(f"{where}: {defect}")
    if "wait" in step:
        wait = step["wait"]
        if set(step) - {"wait", "timeout"} or not isinstance(wait, dict) or set(wait) not in _WAITS:
            raise ScriptError(f"{where}: {_WAIT_FORM}")
        if not all(isinstance(v, str) and v for v in wait.values()):
            raise ScriptError(f"{where}: a wait's values must be non-empty strings")
        if "state" in wait:
            known = DEVICE_STATES if "device" in wait else CALL_STATES
            if wait["state"] not in known:
                raise ScriptError(f"{where}: unknown state {wait['state']!r} (known: {', '.join(known)})")
        timeout = step.get("timeout", WAIT_TIMEOUT)
        if not _seconds(timeout) or timeout == 0:
            raise ScriptError(f"{where}: timeout must be a number of seconds in (0, {MAX_SECONDS:g}]")
    elif "sleep" in step:
        if set(step) != {"sleep"} or not _seconds(step["sleep"]):
            raise ScriptError(f'{where}: a pause is {{"sleep": SECONDS}}, at most {MAX_SECONDS:g}')
    elif "kind" in step:
        try:
            parse_event(step)
        except LinkError as exc:
            raise ScriptError(f"{where}: {exc}") from None
    else:
        raise ScriptError(f"{where}: a step is a switch event (with 'kind'), a wait or a sleep")
    return step


def parse_line(text: str, where: str) -> Step | None:
    """One script line: a step, or None for a blank line or a comment."""
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    try:
        step = loads(text, strict=True)
    except (JSONDecodeError, ValueError, RecursionError) as exc:
        raise ScriptError(f"{where}: not JSON ({exc})") from None
    return check_step(step, where)


def parse_lines(lines: Iterable[str], name: str) -> list[tuple[int, Step]]:
    """Every line checked: (line number, step), blank lines and comments left out."""
    steps = []
    for number, line in enumerate(lines, 1):
        step = parse_line(line, f"{name}:{number}")
        if step is not None:
            steps.append((number, step))
    return steps


def _lines(text: str) -> list[str]:
    """The lines of a text: split at LF only (a JSON string may hold U+2028)."""
    return text.removesuffix("\n").split("\n") if text else []


def load_script(path: Path) -> list[tuple[int, Step]]:
    """A script file, checked whole: (line number, step)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read the script {path}: {exc}") from None
    return parse_lines(_lines(text), str(path))


async def listed(steps: list[tuple[int, Step]]) -> AsyncIterator[tuple[int, Step]]:
    for item in steps:
        yield item


async def stdin_script() -> AsyncIterator[tuple[int, Step]]:
    """The script from stdin: checked whole first when stdin is a file,
    else line by line as the lines arrive."""
    reader = asyncio.StreamReader(limit=MAX_LINE)
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # a regular file: read and check it at once
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScriptError(f"stdin: not UTF-8 ({exc})") from None
        for item in parse_lines(_lines(text), "stdin"):
            yield item
        return
    number = 0
    while True:
        number += 1
        try:
            raw = await reader.readline()
        except ValueError:  # asyncio.LimitOverrunError's wrapper: no line end within the limit
            raise ScriptError(f"stdin:{number}: a line longer than {MAX_LINE} bytes") from None
        if not raw:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScriptError(f"stdin:{number}: not UTF-8 ({exc})") from None
        step = parse_line(text, f"stdin:{number}")
        if step is not None:
            yield number, step


def describe(wait: dict[str, str]) -> str:
    """What a wait waits for, in words."""
    if "connected" in wait:
        return f"an adapter holding device {wait['connected']}"
    what = "device" if "device" in wait else "call"
    return f"{what} {wait[what]} to be {wait['state']}"

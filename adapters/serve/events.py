"""Switch events from outside the adapter (``--switch-events FILE``, ``-``:
stdin), one JSON object a line, as they arrive."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

from fsm.codec import JSONDecodeError, loads


async def read_switch_events(path: str) -> AsyncIterator[object]:
    """The JSON objects of a JSONL file (``-``: stdin), as they arrive."""
    if path == "-":
        reader = asyncio.StreamReader(limit=1 << 20)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        except ValueError:  # a regular file: read it at once
            lines: list[str] = sys.stdin.readlines()
        else:
            while raw := await reader.readline():
                if raw.strip():
                    yield _parse_line(raw.decode("utf-8", "replace"))
            return
    else:
        with open(path, encoding="utf-8") as file:
            lines = file.readlines()
    for text in lines:
        if text.strip():
            yield _parse_line(text)


def _parse_line(text: str) -> object:
    try:
        return loads(text)
    except (JSONDecodeError, RecursionError):
        return text  # the runner reports it as an error output

"""The agent directory file (``--agents FILE``, D-CTRL-2): TOML or JSON.

JSON: a list of ``{"agent": ..., "name": ..., "end-point": ...}`` objects
(or an object whose ``agents`` key holds that list). TOML, whose top level
is a table: an array of tables named ``agents``::

    [[agents]]
    agent = "agent-1"
    name = "Ann Smith"
    end-point = "1001"

The format is the file's suffix (``.toml`` or ``.json``). Every defect (a
file that cannot be read, not UTF-8, not TOML or JSON, an entry without
``end-point``, an unknown key, an agent given twice) raises
LocalProtocolError naming the file and the defect.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from fsm.codec import JSONDecodeError, loads
from fsm.directory import AgentDirectory, directory_from_entries
from fsm.errors import LocalProtocolError


def load_directory(path: str | Path) -> AgentDirectory:
    """The directory the file at ``path`` holds."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise LocalProtocolError(f"{path}: an agent directory is a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LocalProtocolError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LocalProtocolError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if suffix == ".toml":
        try:
            document: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LocalProtocolError(f"{path} is not TOML: {exc}") from None
        entries = document.get("agents") if isinstance(document, dict) else None
        if entries is None:
            raise LocalProtocolError(f"{path}: no [[agents]] table")
    else:
        try:
            document = loads(text)
        except JSONDecodeError as exc:
            raise LocalProtocolError(
                f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise LocalProtocolError(f"{path} is not JSON: nested too deeply") from None
        entries = document.get("agents") if isinstance(document, dict) else document
    return directory_from_entries(entries, str(path))

"""Render a trace (JSONL of ``run`` inputs and outputs) for a person.

``python -m adapters.show TRACE.jsonl``: one line per message, command and
switch event, arrows showing who sent it; colour when writing to a terminal.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from fsm.codec import dumps, loads

COLOURS = {"bridge": "36", "switch": "33", "client": "32", "error": "31"}


def render(entry: dict[str, Any]) -> tuple[str, str]:
    """(who, text) of one trace line."""
    if entry.get("from") == "bridge":
        message = entry.get("message") or {}
        headers = message.get("header") or {}
        props = _props(message.get("body"))
        return "bridge", f"bridge -> client  {headers.get('name')}  {headers.get('requestId')}{props}"
    if entry.get("from") == "switch":
        ev = dict(entry.get("event") or {})
        kind, call = ev.pop("kind", "?"), ev.pop("call", "") or ev.pop("device", "")
        return "switch", f"switch -> client  {kind} {call}{_props(ev)}"
    if entry.get("from") == "clock":
        return "switch", f"clock             +{entry.get('advance')} s"
    if entry.get("to") == "switch":
        command = dict(entry["command"])
        op, cid = command.pop("op"), command.pop("id")
        call = command.pop("call", None) or command.pop("device", "")
        return "client", f"client -> switch  {op} {call} ({cid}){_props(command)}"
    if entry.get("to") == "bridge":
        message = entry["message"]
        headers = message["header"]
        if headers["type"] == "cti.response":
            result = headers["result"]
            text = f"client -> bridge  {result} {headers['name']}  {headers['requestId']}"
            if result == "FAILURE":
                text += f"  {headers.get('errorMessage')}"
            body = message.get("body")
            if body:
                text += "  " + dumps(body, ascii=True)
            return "client", text
        target = headers["target"].rpartition(".")[2]
        return "client", f"client -> bridge  event {headers['name']} @{target}{_props(message.get('body'))}"
    if "connection" in entry:
        return "bridge", f"-- connection {entry['connection']} to the bridge"
    for key in ("error", "protocol_error"):
        if key in entry:
            return "error", f"{key}: {entry[key].get('message')}"
    return "error", dumps(entry, display=True)


def _props(props: object) -> str:
    if not isinstance(props, dict) or not props:
        return ""
    return "  " + " ".join(
        f"{k}={dumps(v, display=True) if not isinstance(v, str) else v}" for k, v in props.items()
    )


def show(lines: IO[str], out: IO[str], colour: bool) -> None:
    for raw in lines:
        if not raw.strip():
            continue
        who, text = render(loads(raw))
        out.write(f"\x1b[{COLOURS[who]}m{text}\x1b[0m\n" if colour else text + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m adapters.show TRACE.jsonl\n")
        return 2
    with open(args[0], encoding="utf-8") as lines:
        show(lines, sys.stdout, sys.stdout.isatty())
    return 0


if __name__ == "__main__":
    sys.exit(main())

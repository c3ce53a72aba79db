"""The line protocol of ``telephony-fsm run`` (spec/harness.md).

:class:`Runner` owns an engine and a switch driver. It reads one JSON
object per input line, feeds it to the engine, runs the commands the engine
issues on the switch (feeding back the events they cause), and returns
every output followed by ``{"done": SEQ}``. It also writes the merged trace.
"""

from __future__ import annotations

import json
from typing import IO, Any

from adapters.switch import Switch, dispatch
from fsm.codec import dumps_floatless, loads
from fsm.engine import BridgeError, Engine, Output, SwitchError, ToBridge, ToSwitch
from fsm.errors import RemoteProtocolError
from fsm.messages import dumps, to_wire
from fsm.switch_events import command_to_wire, event_to_wire, parse_switch_event


class Runner:
    def __init__(self, engine: Engine, switch: Switch, trace: IO[str] | None = None) -> None:
        self.engine = engine
        self.switch = switch
        self.trace = trace
        #: (requestId, rule ID) of every FAILURE response, for logs and tests
        self.refusals: list[tuple[str, str]] = []

    def feed(self, line: str, lineno: int) -> list[dict[str, Any]]:
        """Process one input line completely; return its outputs and done."""
        out: list[dict[str, Any]] = []
        seq: Any = lineno
        limit = self.engine.policy.max_frame_size
        # H-RUN-2, D-BOUND: the limit counts bytes of UTF-8 (up to 4 a code point)
        size = len(line.encode("utf-8", "surrogatepass")) if len(line) > limit // 4 else 0
        if size > limit:
            out.append(self._error(seq, f"input line of {size} bytes exceeds {limit} (max_frame_size)"))
        else:
            try:
                item = loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                out.append(self._error(seq, f"input is not JSON: {message}"))
            else:
                return self.feed_item(item, lineno)
        out.append({"done": seq})
        return out

    def feed_item(self, item: object, lineno: int) -> list[dict[str, Any]]:
        """Process one decoded input (what a line holds); return its outputs and done."""
        seq: Any = item["seq"] if isinstance(item, dict) and "seq" in item else lineno
        if isinstance(item, dict):  # a trace holds objects only; the error names the rest
            self._record(item)
        out = self._input(item, seq)
        out.append({"done": seq})
        return out

    def _input(self, item: object, seq: Any) -> list[dict[str, Any]]:
        if not isinstance(item, dict):
            return [self._error(seq, "input must be a JSON object with a 'from' field")]
        source = item.get("from")
        if source == "bridge":
            if "message" not in item:
                return [self._error(seq, "bridge input has no 'message'")]
            return self._drain(self.engine.receive_bridge(item["message"]), seq)
        if source == "switch":
            try:
                ev = parse_switch_event(item.get("event"))
            except RemoteProtocolError as exc:
                return [self._error(seq, exc.message)]
            self.switch.observe(ev)
            return self._drain(self.engine.receive_switch(ev), seq)
        if source == "clock":
            advance = item.get("advance")
            if isinstance(advance, bool) or not isinstance(advance, int | float):
                return [self._error(seq, "clock input needs 'advance': a number of seconds")]
            if not 0 <= advance < float("inf"):
                return [self._error(seq, f"clock advance {advance!r} must be finite and >= 0")]
            return self._drain(self.engine.advance(float(advance)), seq)
        return [self._error(seq, f"unknown 'from' {source!r}: expected bridge, switch or clock")]

    def _drain(
        self, outputs: list[Output], seq: Any, out: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Write outputs in order; then run each command on the switch, each
        event it causes followed at once by what the engine made of it."""
        out = [] if out is None else out
        commands = []
        for output in outputs:
            entry = _wire(output, seq)
            out.append(entry)
            self._record(entry)
            if isinstance(output, ToBridge) and output.rule is not None:
                self.refusals.append((output.message.header.request_id or "", output.rule))
            if isinstance(output, ToSwitch):
                commands.append(output.command)
        for command in commands:
            for ev in dispatch(self.switch, command):
                if self.trace is not None:
                    self._record({"from": "switch", "event": event_to_wire(ev)})
                self._drain(self.engine.receive_switch(ev), seq, out)
        return out

    def connected(self, number: int) -> None:
        """A connection to the bridge started: the trace says so as
        ``{"connection": N}``, N counting from 1 (harness.md "Traces")."""
        self._record({"connection": number})

    def _error(self, seq: Any, message: str) -> dict[str, Any]:
        entry = _error(seq, message)
        self._record(entry)
        return entry

    def _record(self, entry: object) -> None:
        if self.trace is not None:
            self.trace.write(dumps(entry) + "\n")

    def run(self, stdin: IO[str], stdout: IO[str]) -> None:
        write, flush = stdout.write, stdout.flush
        for lineno, line in enumerate(stdin, start=1):
            if not line.strip():
                write(dumps({"done": lineno}) + "\n")
                flush()
                continue
            entries = self.feed(line, lineno)
            # The engine's outputs hold strings only; a float can come with
            # the input's seq alone, echoed in each entry that names it.
            encode = dumps_floatless if _floatless(entries[-1]["done"]) else dumps
            write("".join([encode(entry) + "\n" for entry in entries]))
            flush()


def _floatless(seq: object) -> bool:
    return seq is None or type(seq) in (str, int, bool)


def _wire(output: Output, seq: Any) -> dict[str, Any]:
    if isinstance(output, ToBridge):
        return {"to": "bridge", "message": to_wire(output.message)}
    if isinstance(output, ToSwitch):
        return {"to": "switch", "command": command_to_wire(output.command)}
    if isinstance(output, BridgeError):
        return {"protocol_error": {"rule": output.rule, "message": output.message, "input": seq}}
    assert isinstance(output, SwitchError)
    return _error(seq, f"{output.rule}: {output.message}")


def _error(seq: Any, message: str) -> dict[str, Any]:
    return {"error": {"input": seq, "message": message}}

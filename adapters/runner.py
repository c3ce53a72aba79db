"""The line protocol of ``telephony-fsm run`` (spec/harness.md: H-RUN-1,
H-RUN-2, H-RUN-3).

:class:`Runner` owns an engine and a switch driver. It reads one JSON
object per input line, feeds it to the engine, runs the commands the engine
issues on the switch (feeding back the events they cause), and returns
every output followed by ``{"done": SEQ}``. It also writes the merged trace.
"""

from __future__ import annotations

import re
from typing import IO, Any, Final

from adapters.switch import Switch, dispatch
from fsm.codec import JSONDecodeError, dumps, loads
from fsm.engine import BridgeError, Engine, Output, SwitchError, ToBridge, ToSwitch
from fsm.errors import LocalProtocolError, RemoteProtocolError
from fsm.intake import parse_switch_event
from fsm.messages import SURROGATE, to_wire, unclean, usable_request_id, writable
from fsm.switch_events import command_to_wire, event_to_wire


class Runner:
    def __init__(self, engine: Engine, switch: Switch, trace: IO[str] | None = None) -> None:
        self.engine = engine
        self.switch = switch
        self.trace = trace

    def feed(self, line: str, lineno: int) -> list[dict[str, Any]]:
        """Process one input line completely; return its outputs and done."""
        out: list[dict[str, Any]] = []
        seq: Any = lineno
        if not line.isascii() and SURROGATE.search(line):  # bytes that were not UTF-8 (H-RUN-2)
            out.append(self._error(seq, "input line is not UTF-8"))
            out.append({"done": seq})
            return out
        limit = self.engine.policy.max_frame_size
        # H-RUN-2, D-BOUND: the limit counts bytes of UTF-8 (up to 4 a code point)
        size = len(line.encode("utf-8", "surrogatepass")) if len(line) > limit // 4 else 0
        if size > limit:
            out.append(self._error(seq, f"input line of {size} bytes exceeds {limit} (max_frame_size)"))
        else:
            try:
                item = loads(line)
            except (JSONDecodeError, RecursionError) as exc:
                message = exc.msg if isinstance(exc, JSONDecodeError) else "nested too deeply"
                out.append(self._error(seq, f"input is not JSON: {message}"))
            else:
                return self.feed_item(item, lineno, check=_suspect(line))
        out.append({"done": seq})
        return out

    def feed_item(self, item: object, lineno: int, *, check: bool = True) -> list[dict[str, Any]]:
        """Process one decoded input (what a line holds); return its outputs
        and done. ``check``: look for values no output may hold (False when
        the line's text shows there can be none)."""
        out: list[dict[str, Any]] = []
        seq: Any = lineno
        if isinstance(item, dict) and "seq" in item:
            given = item["seq"]
            if _usable_seq(given):
                seq = given
            else:  # H-RUN-1: the line's number stands in
                out.append(
                    self._error(
                        seq, "seq must be a string or an integer within 2^53; the line number is used"
                    )
                )
        if isinstance(item, dict):  # a trace holds objects only; the error names the rest
            defect = unclean(item, limit=1000) if check else None
            if defect is None:
                self._record(item)
            else:  # H-RUN-2: what can be written of it
                entry = _writable_input(item)
                if item.get("from") == "bridge":  # D-BAD: the message's own defect, not the line's
                    defect = unclean(item.get("message"), limit=1000)
                if defect is not None:  # and why it was not usable
                    entry["malformed"] = f"the input holds {defect}"
                self._record(entry)
        out += self._input(item, seq)
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
            outputs = self.engine.receive_switch(ev)
            if not any(isinstance(o, SwitchError) and o.refused for o in outputs):
                self.switch.observe(ev)  # D-SWITCH: the switch's model follows what the engine accepted
            return self._drain(outputs, seq)
        if source == "clock":
            advance = item.get("advance")
            if isinstance(advance, bool) or not isinstance(advance, int | float):
                return [self._error(seq, "clock input needs 'advance': a number of seconds")]
            problem = unclean(advance, "advance")
            if problem is not None or advance < 0:  # D-BAD: huge, not finite, negative
                return [
                    self._error(seq, f"clock advance must be a finite number >= 0 ({problem or 'negative'})")
                ]
            try:
                return self._drain(self.engine.advance(float(advance)), seq)
            except LocalProtocolError as exc:  # the clock would reach 10^12 (D-BAD)
                return [self._error(seq, exc.message)]
        return [self._error(seq, f"unknown 'from' {source!r}: expected bridge, switch or clock")]

    def stop(self) -> list[dict[str, Any]]:
        """The adapter shuts the client down (F-CTRL-3): the status events
        :meth:`fsm.engine.Engine.stop` makes, written and traced like any output."""
        return self._drain(self.engine.stop(), "stop")

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
            floats = not _floatless(entries[-1]["done"])
            write("".join([dumps(entry, floats=floats) + "\n" for entry in entries]))
            flush()


#: an exponent of three digits: a float that may not be finite
_BIG_EXPONENT: Final = re.compile(r"[eE][+-]?[0-9]{3}")
#: bytes -> b"0" for a digit, b" " otherwise: a run of 16 digits (a number
#: that may be beyond 2^53) is then one substring search
_DIGITS: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))


def _suspect(line: str) -> bool:
    """Whether a line's text may decode to a value :func:`unclean` names: an
    escape (a lone surrogate), NaN or an infinity, a long number, deep nesting."""
    return (
        "\\u" in line
        or "NaN" in line
        or "Infinity" in line
        or _BIG_EXPONENT.search(line) is not None
        or line.count("{") + line.count("[") > 24
        or b"0000000000000000" in line.encode("utf-8", "surrogatepass").translate(_DIGITS)
    )


def _writable_input(item: dict[str, Any]) -> dict[str, Any]:
    """What a trace can hold of an input :func:`unclean` names: its values
    made writable, and a bridge message's requestId left out when it was
    not usable (then it could not be answered, D-BAD), so that a reader of
    the trace expects what the client did."""
    copy: dict[str, Any] = writable(item)
    message, original = copy.get("message"), item.get("message")
    if isinstance(message, dict) and isinstance(original, dict):
        header, given = message.get("header"), original.get("header")
        if (
            isinstance(header, dict)
            and isinstance(given, dict)
            and not usable_request_id(given.get("requestId"))
        ):
            header.pop("requestId", None)
    return copy


def _usable_seq(seq: object) -> bool:
    """H-RUN-1: a string (that UTF-8 can hold) or an integer within 2^53."""
    if isinstance(seq, str):
        return unclean(seq) is None
    return type(seq) is int and unclean(seq) is None


def _floatless(seq: object) -> bool:
    return seq is None or type(seq) in (str, int, bool)


def _wire(output: Output, seq: Any) -> dict[str, Any]:
    if isinstance(output, ToBridge):
        if output.rule is not None:  # H-CMD: a FAILURE's line names its rule
            return {"to": "bridge", "message": to_wire(output.message), "rule": output.rule}
        return {"to": "bridge", "message": to_wire(output.message)}
    if isinstance(output, ToSwitch):
        return {"to": "switch", "command": command_to_wire(output.command)}
    if isinstance(output, BridgeError):
        return {"protocol_error": {"rule": output.rule, "message": output.message, "input": seq}}
    assert isinstance(output, SwitchError)
    return _error(seq, f"{output.rule}: {output.message}")


def _error(seq: Any, message: str) -> dict[str, Any]:
    return {"error": {"input": seq, "message": message}}

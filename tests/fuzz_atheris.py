"""Coverage-guided fuzzing of the entry points with atheris (optional).

``python -m tests.fuzz_atheris -runs=N`` feeds atheris' inputs to five
targets, chosen by the input's first byte:

0. the frame decoder (either byte order) and ``decode_json``;
1. the engine's bridge intake, with bytes;
2. the switch-event parser;
3. the ``run`` line protocol, with bytes as ``telephony-fsm run`` reads them
   from stdin (UTF-8 with ``surrogateescape``, so invalid UTF-8 arrives as
   lone surrogates);
4. structured mutations: the full-call scenario with one field (or a clock
   step, a requestId) replaced by a hostile value (D-BAD), fed through the
   line protocol.

Any exception that escapes is a crash: atheris stops and the process exits
non-zero. For targets 3 and 4 every line ``run`` writes, and every trace
line, must be strict UTF-8 JSON with no NaN or infinity and no lone
surrogate, escaped or not (H-RUN-2), each input line gives exactly one
``done``, its last output (H-RUN-1), and, after a clock advance past every
deadline, the trace passes the checker: no rule broken, every request
answered exactly once (S-REQ-1, D-DUP). ``python -m tests.fuzz_atheris --seed
DIR`` writes a seed corpus. tests/test_fuzz_atheris.py runs it bounded.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import atheris

with atheris.instrument_imports():
    from adapters.framing import FrameDecoder, FramingError, decode_json
    from adapters.runner import Runner
    from adapters.simulated import SimulatedSwitch
    from fsm.checker import check_lines
    from fsm.engine import Engine
    from fsm.errors import RemoteProtocolError
    from fsm.intake import parse_switch_event

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_LINES = (ROOT / "adapters" / "scenarios" / "full-call.jsonl").read_text().splitlines()
SCENARIO = [json.loads(line) for line in SCENARIO_LINES]

ENGINE = Engine()
ENGINE.receive_switch({"kind": "offered", "call": "c1", "device": "1001"})

TARGETS = 5


class OutputCheckFailed(AssertionError):
    """A line ``run`` or its trace wrote holds what no output may hold."""


def _reject_constant(name: str) -> NoReturn:
    raise OutputCheckFailed(f"{name} in an output")


def _check_no_surrogate(value: object, line: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= char <= "\udfff" for char in item):
                raise OutputCheckFailed(f"a lone surrogate in an output: {line[:500]!r}")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_line(line: str, what: str) -> Any:
    """One written line: strict UTF-8, JSON without NaN/Infinity, no lone
    surrogate (raw or as a ``\\udXXX`` escape); returns its value."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise OutputCheckFailed(f"{what} line is not UTF-8 ({exc}): {line[:500]!r}") from None
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise OutputCheckFailed(f"{what} line is not JSON ({exc}): {line[:500]!r}") from None
    _check_no_surrogate(value, line)
    return value


def _stdin(stream: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(stream), encoding="utf-8", errors="surrogateescape", newline="\n")


def _lines(written: str, what: str) -> list[str]:
    """Written lines, split at "\n" only (a value may hold U+2028 and the like)."""
    if written and not written.endswith("\n"):
        raise OutputCheckFailed(f"the {what} does not end with a newline: {written[-500:]!r}")
    return written.split("\n")[:-1]


# Appended to every input of check_run: past every deadline (D-ASYNC's
# request_timeout is 30 s), so each request still open is answered.
SETTLE = b'\n{"from": "clock", "advance": 3600}\n'


def check_run(stream: bytes) -> None:
    """Run ``stream``, then a clock advance past every deadline, through a
    fresh runner as ``telephony-fsm run`` would; check what it writes and
    traces, and check the trace: no rule broken, every request answered
    exactly once (S-REQ-1, D-DUP)."""
    stream += SETTLE
    switch = SimulatedSwitch()
    engine = Engine(switch_acknowledges=switch.acknowledges)
    trace = io.StringIO()
    runner = Runner(engine, switch, trace)
    # sys.stdin on POSIX: lines end at "\n" only (no universal newlines)
    lines = list(_stdin(stream))
    stdin = _stdin(stream)
    stdout = io.StringIO()
    runner.run(stdin, stdout)
    written = stdout.getvalue()
    dones: list[object] = []
    last: Any = None
    for line in _lines(written, "output"):
        last = check_line(line, "output")
        if isinstance(last, dict) and "done" in last:
            dones.append(last["done"])
    if len(dones) != len(lines):
        raise OutputCheckFailed(f"{len(lines)} input lines gave {len(dones)} done outputs: {dones[:20]!r}")
    if lines and not (isinstance(last, dict) and list(last) == ["done"]):
        raise OutputCheckFailed(f"the last output is not done: {last!r}")
    for number, (line, done) in enumerate(zip(lines, dones, strict=True), start=1):
        if "seq" not in line and "\\" not in line and done != number:
            raise OutputCheckFailed(f"input line {number} gave done {done!r}")
    traced = _lines(trace.getvalue(), "trace")
    for line in traced:
        check_line(line, "trace")
    violations = check_lines(traced)
    if violations:
        raise OutputCheckFailed(f"the trace breaks a rule: {violations[:5]!r}")


# Hostile values (D-BAD) -----------------------------------------------------

SURROGATES = ["\ud800", "x\udfff", "\udc80", "a\udbff\udbffb", "\udfff\ud800", "\ud83d"]
FLOATS = [float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324, 1.0, 0.5]
IDS = ["c1.k1", "a%2E", "%2e", ".", "..", "c1.", ".c1", "a%", "%", "%25", "session-1.channel-1.c1"]


def hostile_value(fdp: atheris.FuzzedDataProvider) -> object:
    kind = fdp.ConsumeIntInRange(0, 12)
    if kind == 0:
        return fdp.PickValueInList(SURROGATES)
    if kind == 1:
        return fdp.PickValueInList(FLOATS)
    if kind == 2:  # around 2^53
        return fdp.PickValueInList([1, -1]) * ((1 << 53) + fdp.ConsumeIntInRange(-2, 2))
    if kind == 3:  # hundreds of digits
        return fdp.PickValueInList([1, -1]) * 10 ** fdp.ConsumeIntInRange(16, 400) + fdp.ConsumeInt(2)
    if kind == 4:  # 30-300 levels deep
        depth = fdp.ConsumeIntInRange(30, 300)
        value: object = fdp.PickValueInList([{}, [], "x", 1, None])
        for _ in range(depth):
            value = {"a": value} if fdp.ConsumeBool() else [value]
        return value
    if kind == 12:  # interaction data a few levels past D-DATA's 8, or hundreds
        data: object = "x"
        for _ in range(fdp.PickValueInList([7, 8, 9, fdp.ConsumeIntInRange(10, 300)])):
            data = {"k": data}
        return data
    if kind == 5:  # too long for a requestId
        return fdp.PickValueInList(["x", "\u00e9", "{", "\U0001f600"]) * fdp.ConsumeIntInRange(250, 300)
    if kind == 6:
        return fdp.PickValueInList(IDS)
    if kind == 7:
        return fdp.PickValueInList(["", " ", "\x00", "\u2028", "\ufeff", "\U0010ffff"])
    if kind == 8:
        return fdp.PickValueInList([True, False, None, 0, -1, [], {}, ["a"], {"a": 1}])
    if kind == 9:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    if kind == 10:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 16))
    return fdp.ConsumeRegularFloat()


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every key path into ``value`` (dicts and lists), parents first."""
    found: list[tuple[object, ...]] = []
    items: list[tuple[object, object]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return found
    for key, child in items:
        path = (*prefix, key)
        found.append(path)
        found.extend(_paths(child, path))
    return found


def _set(item: Any, path: tuple[object, ...], value: object) -> None:
    for key in path[:-1]:
        item = item[key]
    item[path[-1]] = value


def _header(item: dict[str, Any]) -> dict[str, Any] | None:
    message = item.get("message")
    header = message.get("header") if isinstance(message, dict) else None
    return header if isinstance(header, dict) else None


def mutated_scenario(fdp: atheris.FuzzedDataProvider) -> list[object]:
    """The full-call scenario's inputs with hostile changes."""
    items: list[object] = copy.deepcopy(SCENARIO)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        kind = fdp.ConsumeIntInRange(0, 6)
        index = fdp.ConsumeIntInRange(0, len(items) - 1)
        item = items[index]
        if kind <= 2 and isinstance(item, dict):  # one field replaced
            paths = _paths(item)
            if paths:
                _set(item, fdp.PickValueInList(paths), hostile_value(fdp))
        elif kind == 3 and isinstance(item, dict):  # a field added, or a hostile key
            paths = [path for path in _paths(item) if isinstance(_get(item, path), dict)]
            parent = _get(item, fdp.PickValueInList(paths)) if paths and fdp.ConsumeBool() else item
            key = fdp.PickValueInList([*SURROGATES, "seq", "body", "header", "requestId", "id", ""])
            parent[key] = hostile_value(fdp)
        elif kind == 4:  # a duplicate requestId, or an empty createconversation id
            others = [_header(other) for other in items if isinstance(other, dict)]
            ids = [header["requestId"] for header in others if header and "requestId" in header]
            header = _header(item) if isinstance(item, dict) else None
            if header is not None and ids:
                header["requestId"] = fdp.PickValueInList(ids)
            conversations = [
                other
                for other in items
                if isinstance(other, dict)
                and isinstance(other.get("message"), dict)
                and isinstance(other["message"].get("body"), dict)
                and "id" in other["message"]["body"]
            ]
            if conversations and fdp.ConsumeBool():
                fdp.PickValueInList(conversations)["message"]["body"]["id"] = ""
            if fdp.ConsumeBool():
                items.insert(index, copy.deepcopy(item))  # the same message twice
        elif kind == 5:  # clock steps that span deadlines, or huge ones
            steps = fdp.PickValueInList(
                [
                    [29.5, 61],
                    [61],
                    [29.5],
                    [0, 0.0],
                    [1e308],
                    [10**300],
                    [10**400],  # no float holds it
                    [-1],
                    [float("nan")],
                    [float("inf")],
                    [hostile_value(fdp)],
                ]
            )
            for step in reversed(steps):
                items.insert(index, {"from": "clock", "advance": step})
        else:  # a line replaced by a hostile value
            items[index] = hostile_value(fdp)
    return items


def structured(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    items = mutated_scenario(fdp)
    ascii_only = fdp.ConsumeBool()
    text = "".join(json.dumps(item, allow_nan=True, ensure_ascii=ascii_only) + "\n" for item in items)
    # a raw lone surrogate can only reach stdin as bytes that are not UTF-8
    check_run(text.encode("utf-8", "surrogatepass"))


def _get(item: Any, path: tuple[object, ...]) -> Any:
    for key in path:
        item = item[key]
    return item


def one_input(data: bytes) -> None:
    choice, rest = (data[0] % TARGETS, data[1:]) if data else (0, b"")
    if choice == 0:
        decoder = FrameDecoder(max_frame_size=4096, byte_order="little" if data[:1] >= b"\x80" else "big")
        with contextlib.suppress(FramingError):
            for frame in decoder.feed(rest):
                with contextlib.suppress(FramingError):
                    decode_json(frame)
            decoder.end_of_stream()
    elif choice == 1:
        ENGINE.receive_bridge(rest)
    elif choice == 2:
        text = rest.decode("utf-8", "replace")
        with contextlib.suppress(ValueError, RecursionError, RemoteProtocolError):
            parse_switch_event(json.loads(text))
    elif choice == 3:
        check_run(rest)
    else:
        structured(rest)


def seed(directory: str) -> None:
    """A seed corpus from the full-call scenario: each line for run, each
    message for the engine and framed for the decoder, each switch event;
    the whole scenario for run; byte strings for the structured target."""
    from adapters.framing import encode_json

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for number, line in enumerate(SCENARIO_LINES):
        item = json.loads(line)
        (out / f"run-{number}").write_bytes(b"\x03" + line.encode())
        if "message" in item:
            (out / f"bridge-{number}").write_bytes(b"\x01" + json.dumps(item["message"]).encode())
            (out / f"frame-{number}").write_bytes(b"\x00" + encode_json(item["message"]))
        if "event" in item:
            (out / f"switch-{number}").write_bytes(b"\x02" + json.dumps(item["event"]).encode())
    (out / "run-all").write_bytes(b"\x03" + "\n".join(SCENARIO_LINES).encode() + b"\n")
    (out / "run-invalid-utf8").write_bytes(
        b'\x03{"from": "clock", "advance": 1, "seq": "\xff\xed\xa0\x80"}\n\n'
    )
    (out / "run-nan").write_bytes(
        b'\x03{"from": "clock", "advance": NaN, "seq": NaN}\n{"seq": 9007199254740993}\n'
    )
    for number in range(64):  # FuzzedDataProvider input: each kind and index
        (out / f"structured-{number}").write_bytes(
            bytes([4, number % 3, number % 7, number % 19, number % 12]) + bytes(range(number, number + 24))
        )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        seed(sys.argv[2])
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

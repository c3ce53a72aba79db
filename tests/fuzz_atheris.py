"""Coverage-guided fuzzing of the entry points with atheris (optional).

``python -m tests.fuzz_atheris -runs=N`` feeds atheris' inputs to the frame
decoder, the engine's bridge intake (bytes), the switch-event parser and the
``run`` line protocol. Any exception that escapes is a crash: atheris stops
and the process exits non-zero. tests/test_fuzz_atheris.py runs it bounded.
"""

from __future__ import annotations

import contextlib
import json
import sys

import atheris

with atheris.instrument_imports():
    from adapters.framing import FrameDecoder, FramingError, decode_json
    from adapters.runner import Runner
    from adapters.simulated import SimulatedSwitch
    from fsm.engine import Engine
    from fsm.errors import RemoteProtocolError
    from fsm.switch_events import parse_switch_event

ENGINE = Engine()
ENGINE.receive_switch({"kind": "offered", "call": "c1"})
RUNNER = Runner(Engine(), SimulatedSwitch())


def one_input(data: bytes) -> None:
    choice, rest = (data[0] % 4, data[1:]) if data else (0, b"")
    if choice == 0:
        decoder = FrameDecoder(max_frame_size=4096)
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
    else:
        out = RUNNER.feed(rest.decode("utf-8", "replace"), 1)
        assert "done" in out[-1]


def seed(directory: str) -> None:
    """A seed corpus from the full-call scenario: each line for run, each
    message for the engine and framed for the decoder, each switch event."""
    from pathlib import Path

    from adapters.framing import encode_json

    root = Path(__file__).resolve().parent.parent
    lines = (root / "adapters" / "scenarios" / "full-call.jsonl").read_text().splitlines()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for number, line in enumerate(lines):
        item = json.loads(line)
        (out / f"run-{number}").write_bytes(b"\x03" + line.encode())
        if "message" in item:
            (out / f"bridge-{number}").write_bytes(b"\x01" + json.dumps(item["message"]).encode())
            (out / f"frame-{number}").write_bytes(b"\x00" + encode_json(item["message"]))
        if "event" in item:
            (out / f"switch-{number}").write_bytes(b"\x02" + json.dumps(item["event"]).encode())


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        seed(sys.argv[2])
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

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
    provider = atheris.FuzzedDataProvider(data)
    choice = provider.ConsumeIntInRange(0, 3)
    rest = provider.ConsumeBytes(len(data))
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


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

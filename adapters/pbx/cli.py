"""The command line of ``telephony-fsm pbx --listen HOST:PORT`` (harness.md).

Exit codes: 0 when stopped (SIGTERM, SIGINT) or, with ``--exit-when-done``,
once the script is over and no adapter is connected any more (after one
was); 1 when a wait of the script times out, or it cannot listen; 2 for a
usage error or a script line that cannot be played (a file's are all
checked before anything is played).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path

from adapters.options import add_trace, open_trace, stop_on_signals
from adapters.pbx.core import DEFAULT_MAX_HELD
from adapters.pbx.script import ScriptError, Step, load_script
from adapters.pbx.server import FAILED, run_pbx

logger = logging.getLogger("telephony_fsm.pbx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``telephony-fsm pbx``."""
    parser.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="where adapters connect (port 0: any)"
    )
    parser.add_argument(
        "--script",
        metavar="FILE",
        help="the customers and far parties: switch events, waits and sleeps, JSONL ('-': stdin); "
        "see adapters/pbx/script.py",
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit 0 once the script is over and no adapter is connected any more (after one was)",
    )
    parser.add_argument(
        "--max-held",
        type=int,
        default=DEFAULT_MAX_HELD,
        metavar="N",
        help=f"events held for devices no adapter holds, in all (default {DEFAULT_MAX_HELD})",
    )
    add_trace(parser, "write every frame in and out, and every script step (JSONL)")


def run_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``pbx`` from parsed arguments; usage errors exit 2 via ``parser``."""
    host, _, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        parser.error(f"--listen takes HOST:PORT, got {args.listen!r}")
    if args.max_held < 1:
        parser.error("--max-held must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    script: list[tuple[int, Step]] | str | None = None
    if args.script == "-":
        script = "-"
    elif args.script:
        try:
            script = load_script(Path(args.script))
        except ScriptError as exc:
            parser.error(str(exc))

    def listening(port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    with contextlib.ExitStack() as stack:
        trace = open_trace(stack, args, parser)

        async def main_async() -> int:
            stop = stop_on_signals()
            try:
                return await run_pbx(
                    host,
                    int(port_text),
                    script,
                    exit_when_done=args.exit_when_done,
                    max_held=args.max_held,
                    trace=trace,
                    on_listening=listening,
                    stop=stop,
                )
            except OSError as exc:
                logger.error("cannot listen on %s: %s", args.listen, exc)
                return FAILED

        return asyncio.run(main_async())

"""The ``telephony-fsm`` command (spec/harness.md): the composition root."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from adapters.diagrams import main as diagrams_main
from adapters.runner import Runner
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.switch import Switch
from fsm.engine import Engine, Targets
from fsm.errors import LocalProtocolError
from fsm.policy import Policy


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telephony-fsm",
        description="The telephony interaction destination engine and its tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="the line protocol on stdin/stdout (one JSON object per line)",
        description="Read inputs from stdin, one JSON object per line; write every output "
        'it causes, then {"done": SEQ}. See spec/harness.md.',
    )
    run.add_argument(
        "--switch",
        choices=("simulated", "scripted"),
        default="simulated",
        help="simulated: a small PBX applies commands at once; scripted: the input "
        "plays the switch and answers commands with result events",
    )
    run.add_argument("--channel-target", default="session-1.channel-1", metavar="T")
    run.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a policy or bound, repeatable (e.g. transfer_while_consult_ringing=true)",
    )
    run.add_argument("--trace", metavar="FILE", help="also write the merged trace (JSONL)")
    run.set_defaults(subparser=run)
    diagrams = commands.add_parser(
        "diagrams",
        help="write the state diagrams into diagrams/ (generated from the machine tables)",
        description="Write diagrams/*.mmd (and *.svg when Graphviz's dot is on PATH) from the "
        "machines' tables; with --check, write nothing and exit 1 if a committed one is stale.",
    )
    diagrams.add_argument("--check", action="store_true", help="only report stale diagrams")
    diagrams.add_argument("--root", default=".", help="the project root holding diagrams/ (default .)")
    return parser


def make_policy(parser: argparse.ArgumentParser, settings: list[str]) -> Policy:
    try:
        return Policy().with_settings(settings)
    except LocalProtocolError as exc:
        parser.error(exc.message)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        policy = make_policy(args.subparser, args.policy)
        switch: Switch = SimulatedSwitch() if args.switch == "simulated" else ScriptedSwitch()
        engine = Engine(policy, Targets(args.channel_target), switch_acknowledges=switch.acknowledges)
        with ExitStack() as stack:
            trace: IO[str] | None = None
            if args.trace:
                try:
                    trace = stack.enter_context(open(args.trace, "w", encoding="utf-8"))
                except OSError as exc:
                    args.subparser.error(f"cannot write trace {args.trace}: {exc.strerror}")
            Runner(engine, switch, trace).run(sys.stdin, sys.stdout)
        return 0
    if args.command == "diagrams":
        return diagrams_main(["--check"] if args.check else [], Path(args.root))
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse refuses first


if __name__ == "__main__":
    sys.exit(main())

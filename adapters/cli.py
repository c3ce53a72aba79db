"""The ``telephony-fsm`` command (spec/harness.md): the composition root."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.options import (
    add_policy,
    add_processor_client,
    add_trace,
    directory_of,
    open_trace,
    policy_of,
    targets_of,
)
from adapters.runner import Runner
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.sip.options import add_softphone_arguments
from adapters.switch import Switch
from fsm.engine import Engine
from fsm.policy import Policy

if TYPE_CHECKING:
    from adapters.session import Step


def _parser(only_run: bool = False) -> argparse.ArgumentParser:
    """The command's parser. ``only_run``: the ``run`` command alone, so that
    ``telephony-fsm run`` (started once per session by whatever scripts it)
    does not import the TCP, SQLite and demo modules of the other commands;
    its options, help and errors are the same as in the whole parser."""
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
    add_processor_client(run)
    add_policy(run)
    add_trace(run)
    run.set_defaults(subparser=run)
    if only_run:
        return parser
    demo = commands.add_parser(
        "demo",
        help="the main job: bridge, engine and simulated switch play a full call",
        description="The reference bridge, the engine and the simulated switch run an agent session "
        "in one process (by default the full call: offer, accept, consult, alternate, conference, "
        "second consult, transfer, complete), showing every message, command, event and state. "
        "Exit 0 only if no rule was broken and every agent request succeeded.",
    )
    demo.add_argument("--steps", metavar="FILE", help="play this session (JSONL steps) instead")
    demo.add_argument(
        "--agent-count",
        type=int,
        metavar="N",
        help="N agents (agent-1 at 1001 ... agent-N at 1000+N), logged in on one connection, each "
        "playing the call, their steps interleaved",
    )
    add_processor_client(demo)
    add_policy(demo)
    add_trace(demo, "also write the trace (JSONL)")
    demo.add_argument(
        "--switch",
        choices=("simulated", "sip"),
        default="simulated",
        help="sip: the agent's SIP softphone and scripted far ends on real SIP calls over loopback "
        "(needs the extra 'sip'); its default session is the same call on SIP",
    )
    demo.add_argument("--peers", metavar="FILE", help="sip: write what the far ends saw (JSONL)")
    demo.add_argument(
        "--sip-port", type=int, default=0, metavar="PORT", help="sip: the softphone's UDP port (0: any)"
    )
    add_softphone_arguments(demo)
    demo.add_argument(
        "--hangup-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="sip: when a far end at a 'hangup...' number hangs up after answering",
    )
    demo.add_argument(
        "--colour",
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output (auto: when stdout is a terminal)",
    )
    demo.set_defaults(subparser=demo)
    from adapters import bridge_server, serve

    check = commands.add_parser(
        "check",
        add_help=False,
        help="check a recorded trace against the rules; one line per violation",
        description="telephony-fsm check TRACE.jsonl [--policy NAME=VALUE]... [--channel-target T]",
    )
    check.add_argument("rest", nargs=argparse.REMAINDER)

    serve_parser = commands.add_parser(
        "serve",
        help="an adapter process: the engine and a switch driver, connected to a bridge over TCP",
        description="Connect to a bridge over the framed TCP transport (reconnecting with bounded "
        "backoff) and serve it with the engine and a switch driver.",
    )
    serve.add_arguments(serve_parser)
    serve_parser.set_defaults(subparser=serve_parser, handler=serve.run_args)
    bridge_parser = commands.add_parser(
        "bridge",
        help="the reference bridge: drives any client over TCP and checks every message",
        description="Listen on the framed TCP transport, drive the client that connects through an "
        "agent session (default: the demo's call), queue events per S-INIT-6 and check every "
        "message it receives. Exit 0 only with no rule violation and no failed request.",
    )
    bridge_server.add_arguments(bridge_parser)
    bridge_parser.set_defaults(subparser=bridge_parser, handler=bridge_server.run_args)
    from adapters.pbx import cli as pbx_cli

    pbx_parser = commands.add_parser(
        "pbx",
        help="the simulated PBX as its own process, reached by adapters over a CTI link",
        description="Hold calls and devices for the adapters that connect (serve --switch pbx), "
        "their customers and far parties played by a script (see adapters/pbx/script.py).",
    )
    pbx_cli.add_arguments(pbx_parser)
    pbx_parser.set_defaults(subparser=pbx_parser, handler=pbx_cli.run_args)
    diagrams = commands.add_parser(
        "diagrams",
        help="write the state diagrams into diagrams/ (generated from the machine tables)",
        description="Write diagrams/*.mmd (and *.svg when Graphviz's dot is on PATH) from the "
        "machines' tables; with --check, write nothing and exit 1 if a committed one is stale.",
    )
    diagrams.add_argument("--check", action="store_true", help="only report stale diagrams")
    diagrams.add_argument("--root", default=".", help="the project root holding diagrams/ (default .)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["check"]:  # its own parser takes every option after it
        from adapters.check import main as check_main

        return check_main(arguments[1:])
    parser = _parser(only_run=arguments[:1] == ["run"])
    args = parser.parse_args(arguments)
    if args.command == "run":
        policy = policy_of(args, args.subparser)
        switch: Switch = SimulatedSwitch() if args.switch == "simulated" else ScriptedSwitch()
        engine = Engine(
            policy,
            targets_of(args),
            directory=directory_of(args, args.subparser),
            switch_acknowledges=switch.acknowledges,
        )
        with ExitStack() as stack:
            trace = open_trace(stack, args, args.subparser)
            # H-RUN-2: UTF-8 both ways whatever the locale; a byte that is not
            # UTF-8 reaches the runner as a lone surrogate, which it reports
            if isinstance(sys.stdin, io.TextIOWrapper):
                sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
            if isinstance(sys.stdout, io.TextIOWrapper):
                sys.stdout.reconfigure(encoding="utf-8", errors="strict")
            Runner(engine, switch, trace).run(sys.stdin, sys.stdout)
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command in ("serve", "bridge", "pbx"):
        code: int = args.handler(args, args.subparser)
        return code
    if args.command == "diagrams":
        from adapters.diagrams import main as diagrams_main

        return diagrams_main(["--check"] if args.check else [], Path(args.root))
    parser.error(f"unknown command {args.command}")  # pragma: no cover - argparse refuses first


def _demo(args: argparse.Namespace) -> int:
    from adapters.demo import run_demo
    from adapters.session import DEMO_CALL, BadSession, agents_call, load_steps
    from fsm.directory import Agent, AgentDirectory

    policy = policy_of(args, args.subparser)
    steps = DEMO_CALL
    if args.steps:
        try:
            steps = load_steps(Path(args.steps))
        except BadSession as exc:
            args.subparser.error(str(exc))
    directory = directory_of(args, args.subparser)
    if args.agent_count is not None:
        if not 1 <= args.agent_count <= 100:
            args.subparser.error("--agent-count takes a number from 1 to 100")
        if args.agent or args.agents or args.switch == "sip":
            args.subparser.error(
                "--agent-count gives the agents itself: not with --agent, --agents or --switch sip"
            )
        count = args.agent_count
        directory = AgentDirectory(tuple(Agent(f"agent-{k}", f"{1000 + k}") for k in range(1, count + 1)))
        steps = agents_call(count, steps)
    colour = args.colour == "always" or (args.colour == "auto" and sys.stdout.isatty())
    if args.switch == "sip":
        return _sip_demo(args, policy, steps if args.steps else None, colour)
    with ExitStack() as stack:
        trace = open_trace(stack, args, args.subparser)
        return run_demo(
            sys.stdout,
            steps=steps,
            colour=colour,
            trace=trace,
            policy=policy,
            targets=targets_of(args),
            directory=directory,
        )


def _sip_demo(args: argparse.Namespace, policy: Policy, steps: list[Step] | None, colour: bool) -> int:
    from adapters.sip import ua

    if ua.MISSING:
        print(f"telephony-fsm demo --switch sip: {ua.MISSING}", file=sys.stderr)
        return 2
    from adapters.sip.demo import run_sip_demo
    from adapters.sip.options import softphone_config
    from adapters.sip.softphone import SipConfig

    with ExitStack() as stack:
        trace = open_trace(stack, args, args.subparser)
        peers = None
        if args.peers:
            try:
                peers = stack.enter_context(open(args.peers, "w", encoding="utf-8"))
            except OSError as exc:
                args.subparser.error(f"cannot write {args.peers}: {exc.strerror}")
        return run_sip_demo(
            sys.stdout,
            steps=steps,
            colour=colour,
            trace=trace,
            peers=peers,
            policy=policy,
            targets=targets_of(args),
            directory=directory_of(args, args.subparser),
            config=softphone_config(args, args.subparser, SipConfig(port=args.sip_port, user="800")),
            hangup_after=args.hangup_after,
        )


if __name__ == "__main__":
    sys.exit(main())

"""The command line of ``telephony-fsm serve``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack

from adapters.options import (
    add_policy,
    add_processor_client,
    add_trace,
    add_wire_arguments,
    directory_of,
    open_trace,
    policy_of,
    stop_on_signals,
    targets_of,
    wire_options,
)
from adapters.serve.events import read_switch_events
from adapters.serve.loop import run_serve
from adapters.sip.options import account_config, add_account_arguments
from adapters.state import StateError, Store, open_store
from adapters.switch import Switch

logger = logging.getLogger("telephony_fsm.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``telephony-fsm serve``."""
    parser.add_argument("--connect", required=True, metavar="HOST:PORT", help="the bridge to connect to")
    parser.add_argument(
        "--switch",
        choices=("simulated", "scripted", "pbx", "sip"),
        default="simulated",
        help="as for run; pbx: the PBX process (telephony-fsm pbx) at --pbx; "
        "sip: the agent's SIP softphone (extra 'sip'), see --sip-*",
    )
    parser.add_argument(
        "--pbx", metavar="HOST:PORT", help="with --switch pbx: where the PBX process listens (its CTI link)"
    )
    add_account_arguments(parser)
    add_processor_client(parser)
    add_policy(parser)
    add_trace(parser)
    parser.add_argument("--switch-events", metavar="FILE", help="switch events, JSONL ('-': stdin)")
    parser.add_argument("--max-reconnects", type=int, metavar="N", help="default: forever")
    parser.add_argument(
        "--exit-on-close",
        action="store_true",
        help="exit 0 when the bridge closes the connection cleanly (default: reconnect); "
        "a lost connection is always reconnected",
    )
    add_wire_arguments(parser, server=False)
    parser.add_argument(
        "--state",
        metavar="FILE|postgresql://...",
        help="durable state: commit what every input changed, resume from it after a restart; "
        "an SQLite file (WAL), or a PostgreSQL database shared by several processes "
        "(extra 'postgresql'; each processor its own rows)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="answer Prometheus scrapes at http://HOST:PORT/metrics and health checks at /healthz "
        "(200 while connected to the bridge with every background task running, 503 otherwise)",
    )


def run_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``serve`` from parsed arguments; usage errors exit 2 via ``parser``."""
    host, _, port_text = args.connect.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        parser.error(f"--connect takes HOST:PORT, got {args.connect!r}")
    policy = policy_of(args, parser)
    if args.max_reconnects is not None and args.max_reconnects < 0:
        parser.error("--max-reconnects must not be negative")
    pbx_address: tuple[str, int] | None = None
    if args.switch == "pbx":
        if not args.pbx:
            parser.error("--switch pbx needs --pbx HOST:PORT")
        pbx_host, _, pbx_port = args.pbx.rpartition(":")
        if not pbx_host or not pbx_port.isdigit() or not 0 < int(pbx_port) < 65536:
            parser.error(f"--pbx takes HOST:PORT, got {args.pbx!r}")
        pbx_address = (pbx_host.strip("[]"), int(pbx_port))
    elif args.pbx:
        parser.error("--pbx goes with --switch pbx")
    if args.switch == "pbx" and args.switch_events:
        parser.error(
            "--switch-events cannot be used with --switch pbx: the PBX's script plays the far parties"
        )
    if args.switch == "pbx" and args.state:
        parser.error(
            "--state cannot be used with --switch pbx: events the PBX sent after the last commit of a "
            "killed serve would not reach the restarted one"
        )
    if args.switch == "sip" and args.state:
        parser.error("--state cannot be used with --switch sip: live SIP calls cannot be saved and resumed")
    wire = wire_options(args, parser, server=False)
    directory = directory_of(args, parser)
    metrics = None
    if args.metrics:
        metrics_host, _, metrics_port = args.metrics.rpartition(":")
        if not metrics_host or not metrics_port.isdigit() or not 0 <= int(metrics_port) < 65536:
            parser.error(f"--metrics takes HOST:PORT, got {args.metrics!r}")
        metrics = (metrics_host.strip("[]"), int(metrics_port))
    with ExitStack() as stack:
        store: Store | None = None
        if args.state:
            try:
                store = open_store(args.state, targets_of(args).processor)
            except StateError as exc:
                parser.error(f"--state: {exc}")
            stack.callback(store.close)
        trace = open_trace(stack, args, parser)

        async def main_async() -> int:
            stop = stop_on_signals()
            events = read_switch_events(args.switch_events) if args.switch_events else None
            switch: str | Switch = args.switch
            if pbx_address is not None:
                from adapters.pbx.link import PbxLink

                switch = PbxLink(*pbx_address, directory.end_points)
            elif args.switch == "sip":
                switch = stack.enter_context(_softphone(args, parser, directory.agents[0].end_point))
            return await run_serve(
                host,
                int(port_text),
                switch=switch,
                targets=targets_of(args),
                directory=directory,
                policy=policy,
                trace=trace,
                switch_events=events,
                stop=stop,
                max_reconnects=args.max_reconnects,
                state=store,
                exit_on_close=args.exit_on_close,
                metrics=metrics,
                **wire,
            )

        try:
            return asyncio.run(main_async())
        except StateError as exc:  # written for another switch or processor
            parser.error(f"--state: {exc}")


@contextlib.contextmanager
def _softphone(args: argparse.Namespace, parser: argparse.ArgumentParser, device: str) -> Iterator[Switch]:
    """The SIP softphone of ``--switch sip`` (the first agent's device), closed at the end."""
    from adapters.sip import ua

    if ua.MISSING:
        parser.error(f"--switch sip: {ua.MISSING}")
    from adapters.sip.softphone import SipSoftphone

    config = account_config(args, parser, device)
    try:
        phone = SipSoftphone(config)
    except ua.SipUnavailable as exc:
        parser.error(f"--switch sip: {exc}")
    registrar = f", registered at {config.registrar} on activate" if config.registrar else ""
    logger.info("SIP softphone %s; destinations dialled at %s%s", phone.uri, config.domain, registrar)
    try:
        yield phone
    finally:
        phone.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="telephony-fsm serve",
        description="The engine and a switch driver, connected to a bridge over the framed TCP transport.",
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every state change at INFO
    return run_args(parser.parse_args(argv), parser)

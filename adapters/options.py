"""The command-line options that several subcommands share, declared once.

``run``, ``demo``, ``serve``, ``bridge`` and ``check`` take ``--policy``;
``run``, ``demo``, ``serve`` and ``bridge`` ``--trace``; ``run``, ``demo``,
``serve``, ``bridge`` and ``check`` ``--processor``, and ``run``, ``demo`` and
``serve`` the agent directory (``--agent``, ``--agents``); ``serve`` and
``bridge`` the wire options (spec/harness.md). Each is added here, and read back here: a
bad value is a usage error (``parser.error``, exit 2) naming the option.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any

from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory, directory_from_pairs
from fsm.errors import LocalProtocolError
from fsm.outputs import Targets
from fsm.policy import Policy

if TYPE_CHECKING:
    import asyncio

# The wire options import adapters.transport (asyncio, ssl, sockets) when
# they are used: ``telephony-fsm run`` imports none of it.

#: The processor's name unless one is given (harness.md).
DEFAULT_PROCESSOR = "proc-1"


def add_policy(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=help or "set a policy or bound, repeatable (e.g. transfer_while_consult_ringing=true)",
    )


def policy_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Policy:
    """The policy ``--policy`` sets (a usage error if a setting is bad)."""
    try:
        return Policy().with_settings(args.policy)
    except LocalProtocolError as exc:
        parser.error(f"--policy: {exc.message}")


def add_trace(parser: argparse.ArgumentParser, help: str = "also write the merged trace (JSONL)") -> None:
    parser.add_argument("--trace", metavar="FILE", help=help)


def open_trace(stack: ExitStack, args: argparse.Namespace, parser: argparse.ArgumentParser) -> IO[str] | None:
    """The ``--trace`` file, opened for writing (a usage error if it cannot be)."""
    if not args.trace:
        return None
    try:
        return stack.enter_context(open(args.trace, "w", encoding="utf-8"))
    except OSError as exc:
        parser.error(f"cannot write trace {args.trace}: {exc.strerror}")


def add_processor_client(parser: argparse.ArgumentParser, *, agents: bool = True) -> None:
    """``--processor NAME`` (F-TARGET: its control destination is
    ``NAME.CONTROL``) and the agent directory (D-CTRL-2): ``--agent
    NAME=END-POINT`` (repeatable) or ``--agents FILE``."""
    parser.add_argument(
        "--processor",
        default=DEFAULT_PROCESSOR,
        metavar="NAME",
        help=f"the processor's name; its control destination is NAME.CONTROL (default {DEFAULT_PROCESSOR})",
    )
    if not agents:
        return
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="NAME=END-POINT",
        help="an agent of the directory, by login name and telephony end-point (repeatable; "
        "default one agent, agent-1 at 1001)",
    )
    group.add_argument(
        "--agents",
        metavar="FILE",
        help="the agent directory: a TOML or JSON list of {agent, name, end-point}",
    )


def targets_of(args: argparse.Namespace) -> Targets:
    """The D-TARGET addressing of ``--processor``."""
    processor: str = args.processor
    return Targets(processor)


def directory_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> AgentDirectory:
    """The agent directory of ``--agent`` / ``--agents`` (a usage error, exit
    2, naming the defect when it cannot be read)."""
    from adapters.agents import load_directory

    try:
        if args.agents:
            return load_directory(args.agents)
        if args.agent:
            return directory_from_pairs(args.agent)
    except LocalProtocolError as exc:
        parser.error(str(exc))
    return DEFAULT_DIRECTORY


# --------------------------------------------------------------------------
# The wire (``serve`` is the client, ``bridge`` the server).


def add_wire_arguments(parser: argparse.ArgumentParser, *, server: bool) -> None:
    """Add the options ``serve`` and ``bridge`` share (spec/harness.md):
    ``--byte-order``, ``--tcp-keepalive``, ``--tls-cert``, ``--tls-key``, ``--tls-ca``."""
    from adapters.framing import BYTE_ORDERS
    from adapters.transport import KEEPALIVE_PROBES

    parser.add_argument(
        "--byte-order",
        choices=BYTE_ORDERS,
        default="big",
        help="byte order of the 4-byte frame length (D-WIRE; default big, network order)",
    )
    parser.add_argument(
        "--tcp-keepalive",
        type=float,
        metavar="SECONDS",
        help="TCP keepalive: probe a connection silent this long, drop it after "
        f"{KEEPALIVE_PROBES} unanswered probes (default: off)",
    )
    if server:
        parser.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this certificate (PEM)")
        parser.add_argument("--tls-key", metavar="FILE", help="its private key (PEM), if not in --tls-cert")
        parser.add_argument(
            "--tls-ca",
            metavar="FILE",
            help="require client certificates signed by these CAs (needs --tls-cert)",
        )
    else:
        parser.add_argument("--tls-ca", metavar="FILE", help="TLS, verifying the bridge by these CAs")
        parser.add_argument(
            "--tls-cert", metavar="FILE", help="TLS, presenting this client certificate (PEM)"
        )
        parser.add_argument("--tls-key", metavar="FILE", help="its private key (PEM), if not in --tls-cert")
        parser.add_argument("--tls", action="store_true", help="TLS, verifying the bridge by the system CAs")
        parser.add_argument(
            "--tls-server-name", metavar="NAME", help="name to check the bridge's cert against"
        )


def wire_options(
    args: argparse.Namespace, parser: argparse.ArgumentParser, *, server: bool
) -> dict[str, Any]:
    """The keywords of :func:`adapters.transport.serve` (``server``) or
    :func:`adapters.transport.connect` that the
    options of :func:`add_wire_arguments` give: ``byte_order``,
    ``tcp_keepalive`` and ``ssl``, and for a client ``server_hostname``.
    ``--tls``: a client uses TLS even without ``--tls-ca`` or
    ``--tls-cert`` (verifying the bridge by the system CAs).
    A bad value or an unreadable file is a usage error (``parser.error``)."""
    import ssl as _ssl

    from adapters.transport import check_tcp_keepalive, client_ssl_context, server_ssl_context

    try:
        keepalive = check_tcp_keepalive(args.tcp_keepalive)
    except LocalProtocolError as error:
        parser.error(f"--tcp-keepalive: {error.message}")
    if args.tls_key and not args.tls_cert:
        parser.error("--tls-key needs --tls-cert")
    context: _ssl.SSLContext | None = None
    try:
        if server and args.tls_cert:
            context = server_ssl_context(args.tls_cert, args.tls_key, cafile=args.tls_ca)
        elif server and args.tls_ca:
            parser.error("--tls-ca needs --tls-cert: a TLS server presents a certificate")
        elif not server and (args.tls or args.tls_ca or args.tls_cert):
            context = client_ssl_context(args.tls_ca, certfile=args.tls_cert, keyfile=args.tls_key)
    except (OSError, _ssl.SSLError) as error:
        parser.error(f"cannot set up TLS: {error}")
    options: dict[str, Any] = {"byte_order": args.byte_order, "tcp_keepalive": keepalive, "ssl": context}
    if not server:
        options["server_hostname"] = args.tls_server_name
    return options


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (in the running loop): how the
    long-running commands are asked to stop cleanly. (asyncio is imported
    here: ``run`` imports this module and needs no event loop.)"""
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop

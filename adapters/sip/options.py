"""The softphone's command-line options, declared once for ``serve`` and
``demo --switch sip``, and the :class:`~adapters.sip.config.SipConfig`
they make. Nothing here loads the SIP stack.

A password is never given on the command line (where ``ps`` shows it):
``--sip-password-file FILE`` (its first line) or ``--sip-password-env NAME``
(an environment variable).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from adapters.sip.config import TRANSPORTS, WHEEL_CALLS, SipConfig


def add_softphone_arguments(parser: argparse.ArgumentParser) -> None:
    """How the softphone runs, wherever it is: calls, media, codecs, logs."""
    parser.add_argument(
        "--sip-max-calls",
        type=int,
        metavar="N",
        help="sip: the calls it holds at once, consult and conference legs included (default: what the SIP "
        f"stack holds, {WHEEL_CALLS} with the wheel of the extra 'sip', one less with a larger build of "
        ".ci/pjsua2); a call offered beyond them is refused with 486 and logged",
    )
    parser.add_argument(
        "--sip-media-address", metavar="HOST", help="sip: the address RTP binds to (default: the SIP address)"
    )
    parser.add_argument(
        "--sip-codecs",
        metavar="ID,ID",
        help="sip: codecs in order of preference, e.g. PCMA/8000,PCMU/8000 (the others keep their order)",
    )
    parser.add_argument(
        "--sip-transfer-grace",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="sip: how long a transferred consult party may take to hang up before it is hung up (default 2)",
    )
    parser.add_argument(
        "--sip-log-level", type=int, default=0, metavar="0-6", help="sip: PJSIP's log level (default 0: none)"
    )
    parser.add_argument("--sip-log-file", metavar="FILE", help="sip: PJSIP's log file (default: stderr)")


def add_account_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the agent's softphone listens, registers and dials (``serve``)."""
    parser.add_argument(
        "--sip-listen", default="127.0.0.1:5060", metavar="HOST:PORT", help="sip: the softphone's SIP address"
    )
    parser.add_argument(
        "--sip-transport", choices=TRANSPORTS, default="udp", help="sip: the transport (default udp)"
    )
    parser.add_argument("--sip-tls-cert", metavar="FILE", help="sip, tls: this side's certificate (PEM)")
    parser.add_argument("--sip-tls-key", metavar="FILE", help="sip, tls: its private key (PEM)")
    parser.add_argument("--sip-tls-ca", metavar="FILE", help="sip, tls: CAs that verify the far end")
    parser.add_argument(
        "--sip-user", default="agent", metavar="USER", help="sip: the user part of the agent's SIP account"
    )
    parser.add_argument(
        "--sip-domain",
        default="127.0.0.1:5070",
        metavar="HOST:PORT",
        help="sip: where a destination that is not a SIP URI is dialled (default: the registrar, if any)",
    )
    parser.add_argument(
        "--sip-registrar",
        metavar="HOST[:PORT]",
        help="sip: register the account there on activate (the switch's login), unregister on deactivate; "
        "without it the softphone keeps the login state itself",
    )
    parser.add_argument(
        "--sip-expires", type=int, default=300, metavar="SECONDS", help="sip: the registration's lifetime"
    )
    parser.add_argument("--sip-proxy", metavar="HOST[:PORT]", help="sip: an outbound proxy for every request")
    parser.add_argument(
        "--sip-auth-user", metavar="USER", help="sip: the digest authentication user (default: --sip-user)"
    )
    parser.add_argument("--sip-password-file", metavar="FILE", help="sip: the password's file (first line)")
    parser.add_argument("--sip-password-env", metavar="NAME", help="sip: an environment variable holding it")
    add_softphone_arguments(parser)


def softphone_config(
    args: argparse.Namespace, parser: argparse.ArgumentParser, config: SipConfig
) -> SipConfig:
    """``config`` with the options of :func:`add_softphone_arguments`."""
    if args.sip_max_calls is not None and args.sip_max_calls < 1:
        parser.error(f"--sip-max-calls must be at least 1, got {args.sip_max_calls}")
    if not 0 <= args.sip_log_level <= 6:
        parser.error(f"--sip-log-level takes 0 to 6, got {args.sip_log_level}")
    if args.sip_transfer_grace < 0:
        parser.error(f"--sip-transfer-grace must not be negative, got {args.sip_transfer_grace}")
    config.max_calls = args.sip_max_calls or 0
    config.media_host = args.sip_media_address or ""
    config.codecs = tuple(c.strip() for c in (args.sip_codecs or "").split(",") if c.strip())
    config.transfer_grace = args.sip_transfer_grace
    config.log_level = args.sip_log_level
    config.log_file = args.sip_log_file or ""
    return config


def account_config(args: argparse.Namespace, parser: argparse.ArgumentParser, device: str) -> SipConfig:
    """The softphone of ``serve --switch sip`` for the agent's ``device``."""
    host, _, port = args.sip_listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        parser.error(f"--sip-listen takes HOST:PORT, got {args.sip_listen!r}")
    if args.sip_transport == "tls" and not (args.sip_tls_cert and args.sip_tls_key):
        parser.error("--sip-transport tls needs --sip-tls-cert and --sip-tls-key")
    if args.sip_expires < 1:
        parser.error(f"--sip-expires must be at least 1, got {args.sip_expires}")
    registrar = args.sip_registrar or ""
    domain = args.sip_domain
    if registrar and domain == parser.get_default("sip_domain"):
        domain = registrar  # numbers are dialled where the account is registered
    config = SipConfig(
        host=host,
        port=int(port),
        user=args.sip_user,
        device=device,
        domain=domain,
        transport=args.sip_transport,
        registrar=registrar,
        expires=args.sip_expires,
        proxy=args.sip_proxy or "",
        auth_user=args.sip_auth_user or "",
        password=_password(args, parser),
        tls_cert=args.sip_tls_cert or "",
        tls_key=args.sip_tls_key or "",
        tls_ca=args.sip_tls_ca or "",
    )
    return softphone_config(args, parser, config)


def _password(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.sip_password_file and args.sip_password_env:
        parser.error("give the password one way: --sip-password-file or --sip-password-env")
    if args.sip_password_file:
        try:
            lines = Path(args.sip_password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"--sip-password-file: cannot read {args.sip_password_file}: {exc}")
        if not lines or not lines[0]:
            parser.error(f"--sip-password-file: {args.sip_password_file} has no password on its first line")
        return lines[0]
    if args.sip_password_env:
        value = os.environ.get(args.sip_password_env)
        if not value:
            parser.error(f"--sip-password-env: the environment variable {args.sip_password_env} is not set")
        return value
    return ""

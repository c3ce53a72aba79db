"""The SIP adapter's parts that need no SIP stack, and how it behaves without one.

These run whether or not the extra ``sip`` is installed.
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.session import BadSession, check_step, describe_wait
from adapters.sip import ua
from adapters.sip.config import SipConfig
from adapters.sip.operations import OPERATIONS
from adapters.sip.options import account_config, add_account_arguments
from adapters.switch import Switch
from fsm.catalog import CATALOG

ROOT = Path(__file__).resolve().parent.parent

INVITE = "\r\n".join(
    [
        "INVITE sip:800@127.0.0.1:5060 SIP/2.0",
        "From: <sip:5551000@127.0.0.1:5070>;tag=1",
        'x-interaction-data: {"account":{"id":"42"}}',
        "Content-Length: 0",
        "",
        "",
    ]
)


def test_uri_parts() -> None:
    assert "5551000" == ua.user_of('"Customer" <sip:5551000@127.0.0.1:5070;transport=udp>')
    assert "127.0.0.1:5070" == ua.host_of("<sip:5551000@127.0.0.1:5070;transport=udp>")
    assert "" == ua.user_of("not a uri")


def test_offer_fields_from_the_invite() -> None:
    assert "800" == ua.request_user(INVITE)
    # header names are case-insensitive
    assert {"account": {"id": "42"}} == ua.data_of(INVITE)
    assert {} == ua.data_of(INVITE.replace('{"account":{"id":"42"}}', "[1, 2]"))
    assert {} == ua.data_of(INVITE.replace('{"account":{"id":"42"}}', "{not json"))


def test_status_text() -> None:
    assert "486 Busy Here" == ua.status_text(486, "Busy Here")
    assert "timeout" == ua.status_text(0, "timeout")


def test_far_steps_are_checked() -> None:
    assert "call" == check_step({"actor": "far", "do": "call", "party": "5551000"}, "x")["do"]
    for bad in ({"actor": "far", "do": "dance", "party": "p"}, {"actor": "far", "do": "call"}):
        try:
            check_step(bad, "line 3")
        except BadSession as exc:
            assert str(exc).startswith("line 3: a far step needs")
        else:
            raise AssertionError(f"accepted {bad}")


def test_without_the_sip_stack_demo_says_why() -> None:
    """With pjsua2 unimportable, ``demo --switch sip`` exits 2 naming the extra."""
    code = (
        "import sys; sys.modules['pjsua2'] = None; from adapters.cli import main; "
        "sys.exit(main(['demo', '--switch', 'sip']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert 2 == done.returncode
    assert "the SIP stack is not installed" in done.stderr
    assert "pip install 'telephony-fsm[sip]'" in done.stderr


def test_without_the_sip_stack_serve_says_why() -> None:
    code = (
        "import sys; sys.modules['pjsua2'] = None; from adapters.cli import main; "
        "sys.exit(main(['serve', '--connect', '127.0.0.1:9', '--switch', 'sip']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert 2 == done.returncode
    assert "--switch sip: the SIP stack is not installed" in done.stderr


def test_serve_refuses_a_state_file_with_sip() -> None:
    serve = [sys.executable, "-m", "adapters.cli", "serve", "--connect", "127.0.0.1:9"]
    done = subprocess.run(
        [*serve, "--switch", "sip", "--state", "x.db"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode
    assert "--state cannot be used with --switch sip" in done.stderr


def test_every_switch_operation_of_the_catalog_is_a_softphone_operation() -> None:
    """Each op a request asks of the switch has its SIP operation, and the
    softphone answers each Switch method (adapters/sip/operations.py)."""
    ops = sorted({spec.op for spec in CATALOG.values() if spec.op is not None})
    assert ops == sorted(OPERATIONS)
    # a generator function each: nothing runs before the scheduler advances
    # it, so that a failure (no such leg) is the command's result, never raised
    assert [] == [op for op, function in OPERATIONS.items() if not inspect.isgeneratorfunction(function)]
    from adapters.sip.softphone import SipSoftphone

    methods = [name for name in ops if callable(getattr(SipSoftphone, name, None))]
    assert ops == methods
    assert all(hasattr(Switch, name) for name in ops)


def _account(*options: str, env: dict[str, str] | None = None) -> SipConfig:
    """The SipConfig ``serve`` makes of its --sip-* options (or SystemExit)."""
    parser = argparse.ArgumentParser()
    add_account_arguments(parser)
    args = parser.parse_args(list(options))
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return account_config(args, parser, "1001")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_sip_options_make_the_softphones_config(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\nignored\n", encoding="utf-8")
    config = _account(
        *("--sip-listen", "192.0.2.10:5062", "--sip-user", "1001", "--sip-registrar", "pbx.example:5060"),
        *("--sip-password-file", str(secret), "--sip-transport", "tcp", "--sip-max-calls", "8"),
        *("--sip-codecs", "PCMA/8000, PCMU/8000", "--sip-media-address", "192.0.2.11"),
    )
    assert ("192.0.2.10", 5062, "1001", "1001") == (config.host, config.port, config.user, config.device)
    assert ("pbx.example:5060", "pbx.example:5060") == (config.registrar, config.domain)
    assert ("s3cret", "tcp", ";transport=tcp") == (config.password, config.transport, config.uri_params())
    assert (8, ("PCMA/8000", "PCMU/8000")) == (config.max_calls, config.codecs)
    assert "192.0.2.11" == config.media_host
    assert "s3cret" not in repr(config)  # never in a log line
    assert "from-env" == _account("--sip-password-env", "PW", env={"PW": "from-env"}).password


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (("--sip-password-env", "NOT_SET_ANYWHERE"), "NOT_SET_ANYWHERE is not set"),
        (("--sip-password-file", "/nonexistent/pw"), "cannot read /nonexistent/pw"),
        (("--sip-password-file", "x", "--sip-password-env", "Y"), "give the password one way"),
        (("--sip-transport", "tls"), "needs --sip-tls-cert and --sip-tls-key"),
        (("--sip-max-calls", "0"), "--sip-max-calls must be at least 1"),
        (("--sip-log-level", "7"), "--sip-log-level takes 0 to 6"),
        (("--sip-listen", "nohost"), "--sip-listen takes HOST:PORT"),
    ],
)
def test_bad_sip_options_are_refused_naming_the_problem(
    options: tuple[str, ...], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _account(*options)
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("step", "said"),
    [
        ({"actor": "bridge"}, "needs 'wait'"),
        ({"actor": "bridge", "wait": {"seconds": 1, "event": "x"}}, "needs 'wait'"),
        ({"actor": "bridge", "wait": {"seconds": -1}}, "seconds must be a number"),
        ({"actor": "bridge", "wait": {"seconds": True}}, "seconds must be a number"),
        ({"actor": "bridge", "wait": {"state": ""}}, "must be a non-empty string"),
        ({"actor": "bridge", "wait": {"state": "HELD", "role": "other"}}, "role must be primary or consult"),
        ({"actor": "bridge", "wait": {"event": "x"}, "timeout": 0}, "'timeout' must be"),
    ],
)
def test_bad_wait_steps_are_refused(step: dict[str, object], said: str) -> None:
    with pytest.raises(BadSession, match=said):
        check_step(step, "steps:1")


def test_a_wait_step_says_what_it_waits_for() -> None:
    assert "the consult conversation of c1 to be TALKING" == describe_wait(
        check_step(
            {"actor": "bridge", "interaction": "c1", "wait": {"state": "TALKING", "role": "consult"}}, "s"
        )
    )
    assert "event interaction.ended" == describe_wait({"wait": {"event": "interaction.ended"}})

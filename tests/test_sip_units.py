"""The SIP adapter's parts that need no SIP stack, and how it behaves without one.

These run whether or not the extra ``sip`` is installed.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from adapters.session import BadSession, check_step
from adapters.sip import ua
from adapters.sip.operations import OPERATIONS
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

"""``telephony-fsm serve`` whose SIP softphone raises once inside its
polling: ``python -m tests.deaf_serve N SERVE-ARGUMENTS...``.

A fault-injection wrapper for the deafness test (tests/test_sip.py), around
the process: it runs serve's own ``main`` unchanged and wraps the
softphone's ``poll`` so that its Nth call raises, as a fault inside the SIP
stack's event handling would. The product carries no such hook.
"""

from __future__ import annotations

import sys
from itertools import count

from adapters.serve.cli import main
from adapters.sip.softphone import SipSoftphone
from fsm.switch_events import SwitchEvent


class InjectedFault(RuntimeError):
    """The fault this wrapper raises inside the SIP polling."""


def fail_poll(n: int) -> None:
    """From now on, the ``n``-th poll of any softphone raises once."""
    poll = SipSoftphone.poll
    calls = count(1)

    def poll_or_fail(self: SipSoftphone, wait_ms: int = 0) -> list[SwitchEvent]:
        if next(calls) == n:
            raise InjectedFault(f"a fault injected into poll number {n} of the SIP stack")
        return poll(self, wait_ms)

    SipSoftphone.poll = poll_or_fail  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) < 2 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit("usage: python -m tests.deaf_serve N SERVE-ARGUMENTS...  (N >= 1)")
    fail_poll(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))

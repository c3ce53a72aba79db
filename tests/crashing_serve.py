"""``telephony-fsm serve``, killed with SIGKILL right after it commits its
Nth input: ``python -m tests.crashing_serve N SERVE-ARGUMENTS...``.

A fault-injection wrapper for the durability tests (tests/test_durable.py),
around the process: it runs serve's own ``main`` unchanged and wraps the
state store's ``save`` so that, once the commit of input N has returned,
the process dies as a power cut would leave it. The product carries no such
hook.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from adapters.postgres import PostgresStore
from adapters.serve.cli import main
from adapters.state import StateStore


def crash_after(n: int) -> None:
    """From now on, the process is killed right after committing input ``n``
    (to an SQLite file or to PostgreSQL)."""
    for store in (StateStore, PostgresStore):
        save = store.save

        def save_then_crash(self: Any, *args: Any, _save: Any = save, **kwargs: Any) -> int:
            dropped: int = _save(self, *args, **kwargs)
            if kwargs["inputs"] == n:
                logging.getLogger(__name__).warning("killing this process after committing input %d", n)
                logging.shutdown()
                os.kill(os.getpid(), signal.SIGKILL)
            return dropped

        store.save = save_then_crash  # type: ignore[method-assign]


if __name__ == "__main__":
    if len(sys.argv) < 2 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit("usage: python -m tests.crashing_serve N SERVE-ARGUMENTS...  (N >= 1)")
    crash_after(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))

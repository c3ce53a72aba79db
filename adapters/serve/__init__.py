"""``telephony-fsm serve``: the engine and a switch driver, talking to a bridge
over the framed TCP transport (spec/harness.md, protocol.md "Transport").

Every input goes through :class:`adapters.runner.Runner` as a line of the
``run`` protocol, so the adapter behaves exactly as ``run`` does and writes
the same trace:

- each CTI message received becomes ``{"from": "bridge", "message": ...}``;
  every ``{"to": "bridge"}`` output is sent as a frame, in order; switch
  commands run on the driver, and the events they cause are fed back;
- switch events from outside (the customer and far parties; the ``result``
  events of a scripted switch) come from ``--switch-events FILE`` (``-``:
  stdin), one harness line ``{"from": "switch", "event": ...}`` per line,
  taken from the first connection to the bridge on (so a trace starts with
  ``{"connection": 1}``); a SIP softphone is polled from start-up;
- the engine clock follows the event loop's monotonic clock: before each
  input, and every ``tick`` seconds while a request waits on the switch, the
  elapsed time is fed as ``{"from": "clock", "advance": ...}`` (D-ASYNC).

When a connection is lost (reset, a truncated frame, a broken stream:
D-WIRE) the adapter reconnects with bounded exponential backoff and keeps
its engine: the bridge re-initializes (D-LIFE-5), and a re-sent requestId
gets D-DUP. When the bridge closes the connection cleanly (at a frame
boundary) the adapter reconnects too, unless ``--exit-on-close`` is given:
then it exits 0. A connection that ends before the bridge sent anything is
followed by a backoff pause, so a bridge that accepts and closes at once is
not hammered. While disconnected, messages for the bridge are dropped (the
re-init snapshot supersedes them, D-LIFE-3), except ``interaction.created``
(D-NEW), which is held (bounded) and sent after reconnecting. Each
connection's start is written to the trace as ``{"connection": N}`` (N from
1). It exits 0 on SIGTERM/SIGINT (closing the connection), 1 when it cannot
(re)connect within ``--max-reconnects``, 2 on a usage error (an unusable
``--state`` file too).

Durable state (``--state FILE``, :mod:`adapters.state`): every input is
committed (engine, switch driver, counters, and the messages it produced,
appended to an outbox) in one SQLite transaction before any of its messages
leaves; each message is deleted from the outbox once handed to the
connection. A process killed at any point restarts from the file: live
interactions keep their state, pending requests are still answered (or time
out: the time the process was down counts), a requestId answered before
the kill is refused as a duplicate (D-DUP) instead of executed again, and
the unsent messages are sent first on the next connection, in order (at
least once). With ``--state``, nothing for the bridge is dropped while
disconnected: it waits in the outbox (bounded by the policy's
``max_queued_events``, D-BOUND). The switch events of ``--switch-events``
that the file counts as consumed are skipped on a restart, so the same file
(or stdin replaying the same events) goes on where the killed process
stopped.
"""

from adapters.serve.adapter import Adapter
from adapters.serve.cli import add_arguments, main, run_args
from adapters.serve.events import read_switch_events
from adapters.serve.loop import make_switch, run_serve

__all__ = ["Adapter", "add_arguments", "main", "make_switch", "read_switch_events", "run_args", "run_serve"]

"""The conformance checker: judges a run from its messages alone.

Sans-IO: nothing here reads files or clocks, and nothing here looks at the
engine. The checker learns every destination's state from the messages
(:mod:`fsm.checker.model`), judges requests with the engine's own tables
(:mod:`fsm.checker.rules`), judges events (:mod:`fsm.checker.events`) and
follows requests and their answers (:mod:`fsm.checker.watcher`) on one
shared :class:`~fsm.checker.state.TraceState`, and reads traces
(:mod:`fsm.checker.trace`). Calls go down: in the order model, rules,
state, events, watcher, trace, each module imports only those before it.
"""

from fsm.checker.state import TraceState, Violation
from fsm.checker.trace import UnreadableTrace, check_lines, watch_entry
from fsm.checker.watcher import Watcher

__all__ = ["TraceState", "UnreadableTrace", "Violation", "Watcher", "check_lines", "watch_entry"]

"""Running the softphone's operations: each command's generator, resumed
when what it waits for holds, and its ``result`` event at the end.

The softphone acknowledges every command with a ``result`` (ok, or the
reason: the SIP status, e.g. ``486 Busy Here``) once its operation has
completed or failed, so it runs with ``switch_acknowledges=True``.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.sip.calls import Failed, Line
from adapters.sip.operations import Condition, Operation
from fsm.switch_events import Command, SwitchEvent


class Scheduler:
    """The operations under way, in the order their commands came."""

    def __init__(self, line: Line, remix: Callable[[], None]) -> None:
        self.line = line
        #: redoes the conference bridge's mix (``adapters.sip.media``)
        self.remix = remix
        self.running: list[tuple[Command, Operation, Condition]] = []

    def start(self, command: Command, operation: Operation) -> None:
        self._advance(command, operation)

    def settle(self) -> None:
        """Carry out the mix and move every operation whose condition holds."""
        line = self.line
        if line.dirty:
            line.dirty = False
            self.remix()
            line.forget_ended()
        progress = True
        while progress:
            progress = False
            waiting, self.running = self.running, []
            for command, generator, condition in waiting:
                outcome = condition()
                if outcome is None:
                    self.running.append((command, generator, condition))
                elif outcome is True:
                    progress = True
                    self._advance(command, generator)
                else:
                    generator.close()
                    self._result(command, ok=False, reason=str(outcome))
            if progress and line.dirty:
                line.dirty = False
                self.remix()

    def _advance(self, command: Command, generator: Operation) -> None:
        try:
            condition = next(generator)
        except StopIteration as stop:
            self._result(command, ok=True, call=stop.value or "")
            return
        except Failed as exc:
            self._result(command, ok=False, reason=str(exc))
            return
        except Exception as exc:  # pjsua2.Error: the SIP stack refused the operation
            reason = getattr(exc, "reason", "") or str(exc)
            self._result(command, ok=False, reason=f"the SIP stack refused {command.op}: {reason}")
            return
        self.running.append((command, generator, condition))

    def _result(self, command: Command, *, ok: bool, call: str = "", reason: str = "") -> None:
        self.line.events.append(
            SwitchEvent(kind="result", command=command.id, ok=ok, call=call, reason=reason)
        )

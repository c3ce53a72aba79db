"""What a telephone platform must offer the engine, as a typing Protocol.

A driver turns each engine :class:`~fsm.switch_events.Command` into the
platform's own operation and reports what happens as
:class:`~fsm.switch_events.SwitchEvent` values. A driver whose operations
take effect at once returns the events they cause from the call; one that
reports later returns nothing and feeds its events to the engine when they
arrive. ``acknowledges`` says whether the driver answers every command with
a ``result`` event (harness.md: "result answers a command").
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fsm.errors import LocalProtocolError
from fsm.switch_events import Command, SwitchEvent

#: Every operation of harness.md "Switch commands".
OPERATIONS = (
    "answer",
    "reject",
    "release",
    "hold",
    "retrieve",
    "consult",
    "transfer",
    "conference",
    "alternate",
    "blindtransfer",
    "blindconference",
    "senddtmf",
    "login",
    "logout",
    "ready",
    "notready",
    "dial",
)


class Switch(Protocol):
    """A switch driver."""

    @property
    def acknowledges(self) -> bool: ...

    def answer(self, command: Command) -> list[SwitchEvent]: ...
    def reject(self, command: Command) -> list[SwitchEvent]: ...
    def release(self, command: Command) -> list[SwitchEvent]: ...
    def hold(self, command: Command) -> list[SwitchEvent]: ...
    def retrieve(self, command: Command) -> list[SwitchEvent]: ...
    def consult(self, command: Command) -> list[SwitchEvent]: ...
    def transfer(self, command: Command) -> list[SwitchEvent]: ...
    def conference(self, command: Command) -> list[SwitchEvent]: ...
    def alternate(self, command: Command) -> list[SwitchEvent]: ...
    def blindtransfer(self, command: Command) -> list[SwitchEvent]: ...
    def blindconference(self, command: Command) -> list[SwitchEvent]: ...
    def senddtmf(self, command: Command) -> list[SwitchEvent]: ...
    # on the agent's device (``command.device``)
    def login(self, command: Command) -> list[SwitchEvent]: ...
    def logout(self, command: Command) -> list[SwitchEvent]: ...
    def ready(self, command: Command) -> list[SwitchEvent]: ...
    def notready(self, command: Command) -> list[SwitchEvent]: ...
    def dial(self, command: Command) -> list[SwitchEvent]: ...

    def observe(self, event: SwitchEvent) -> None:
        """An event from the world outside the engine (the customer hangs
        up, a call is offered): the driver updates its own view."""


@runtime_checkable
class PolledSwitch(Protocol):
    """A driver whose events arrive on their own (a real switch): the
    adapter's loop calls :meth:`poll` often and feeds what it returns to the
    engine, in order, and :meth:`close` once at the end."""

    def poll(self, wait_ms: int = 0) -> list[SwitchEvent]: ...

    def close(self) -> None: ...


def dispatch(switch: Switch, command: Command) -> list[SwitchEvent]:
    """Run ``command`` on ``switch``: the method named after its op."""
    if command.op not in OPERATIONS:
        raise LocalProtocolError(f"unknown switch operation {command.op!r}")
    operation = getattr(switch, command.op)
    events: list[SwitchEvent] = operation(command)
    return events

"""The simulated PBX of harness.md (H-SIM-1): commands take effect at once.

Each command returns the switch events a real PBX would report, in order,
and updates the simulator's own view of the calls. Its dial plan: a
destination starting with ``busy`` fails with reason ``busy``; one starting
with ``ring`` alerts and is never answered; any other answers at once. New
legs are named ``sim-1``, ``sim-2``, ... Events played from outside (the
customer and far parties) are applied with :meth:`observe`.
"""

from __future__ import annotations

import attrs

from fsm.switch_events import Command, SwitchEvent

_STATE_OF = {
    "offered": "ALERTING",
    "dialing": "DIALING",
    "alerting": "ALERTING",
    "connected": "TALKING",
    "held": "HELD",
    "retrieved": "TALKING",
}


@attrs.define(kw_only=True)
class SimulatedSwitch:
    """A small PBX; its state (calls and the leg counter) is plain data."""

    calls: dict[str, str] = attrs.field(factory=dict)
    legs_made: int = 0

    @property
    def acknowledges(self) -> bool:
        return False

    # -- what the outside world does
    def observe(self, event: SwitchEvent) -> None:
        if event.kind in ("ended", "failed"):
            self.calls.pop(event.call, None)
        elif event.kind in _STATE_OF:
            self.calls[event.call] = _STATE_OF[event.kind]

    # -- helpers
    def _emit(
        self, kind: str, call: str, *, destination: str = "", cause: str = "", reason: str = ""
    ) -> SwitchEvent:
        event = SwitchEvent(kind=kind, call=call, destination=destination, cause=cause, reason=reason)
        self.observe(event)
        return event

    def _hold_if_talking(self, call: str) -> list[SwitchEvent]:
        return [self._emit("held", call)] if self.calls.get(call) == "TALKING" else []

    def _retrieve_if_held(self, call: str) -> list[SwitchEvent]:
        return [self._emit("retrieved", call)] if self.calls.get(call) == "HELD" else []

    def _end(self, call: str | None, cause: str) -> list[SwitchEvent]:
        if call is None or call not in self.calls:
            return []
        return [self._emit("ended", call, cause=cause)]

    # -- commands
    def answer(self, command: Command) -> list[SwitchEvent]:
        if self.calls.get(command.call) not in ("ALERTING", "DIALING"):
            return []
        return [self._emit("connected", command.call)]

    def reject(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.call, "rejected")

    def release(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.call, "released")

    def hold(self, command: Command) -> list[SwitchEvent]:
        return self._hold_if_talking(command.call)

    def retrieve(self, command: Command) -> list[SwitchEvent]:
        return self._retrieve_if_held(command.call)

    def consult(self, command: Command) -> list[SwitchEvent]:
        events = self._hold_if_talking(command.call)
        self.legs_made += 1
        leg = f"sim-{self.legs_made}"
        destination = command.destination or ""
        events.append(self._emit("dialing", leg, destination=destination))
        if destination.startswith("busy"):
            events.append(self._emit("failed", leg, reason="busy"))
        elif destination.startswith("ring"):
            events.append(self._emit("alerting", leg))
        else:
            events += [self._emit("alerting", leg), self._emit("connected", leg)]
        return events

    def transfer(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.consult, "transferred") + self._end(command.call, "transferred")

    def conference(self, command: Command) -> list[SwitchEvent]:
        return self._retrieve_if_held(command.call) + self._end(command.consult, "conferenced")

    def alternate(self, command: Command) -> list[SwitchEvent]:
        other = command.other or ""
        return self._hold_if_talking(command.call) + self._retrieve_if_held(other)

    def blindtransfer(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.call, "transferred")

    def blindconference(self, command: Command) -> list[SwitchEvent]:
        return []

    def senddtmf(self, command: Command) -> list[SwitchEvent]:
        return []


class ScriptedSwitch:
    """A switch played by whoever drives the engine: commands cause nothing
    by themselves; the script answers each with a ``result`` event and
    reports what happens with switch events."""

    @property
    def acknowledges(self) -> bool:
        return True

    def observe(self, event: SwitchEvent) -> None:
        return None

    def _nothing(self, command: Command) -> list[SwitchEvent]:
        return []

    answer = reject = release = hold = retrieve = consult = _nothing
    transfer = conference = alternate = _nothing
    blindtransfer = blindconference = senddtmf = _nothing

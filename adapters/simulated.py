"""The simulated PBX of harness.md (H-SIM-1): commands take effect at once.

Each command returns the switch events a real PBX would report, in order,
and updates the simulator's own view of the calls. Its dial plan: a
destination starting with ``busy`` fails with reason ``busy``; one starting
with ``ring`` alerts and is never answered; any other answers at once. New
legs are named ``sim-1``, ``sim-2``, ... Events played from outside (the
customer and far parties) are applied with :meth:`observe`. It holds the
agents' devices too: ``login`` / ``logout`` / ``ready`` / ``notready`` on an
end-point report the ``agent`` event of its new state, and ``dial`` places
a new leg on the device, by the same dial plan.
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
    #: the device each live call is on
    call_devices: dict[str, str] = attrs.field(factory=dict)
    #: each device's login state: its last agent event (loggedout when absent)
    devices: dict[str, str] = attrs.field(factory=dict)
    #: the keys (call ids, end-points) of the maps above that changed since
    #: the last :meth:`take_changed`, so that a store writes only those (None:
    #: not kept until a store asks); not part of the state (``transient``:
    #: neither saved nor compared)
    changed: dict[str, None] | None = attrs.field(
        default=None, eq=False, repr=False, metadata={"transient": True}
    )

    @property
    def acknowledges(self) -> bool:
        return False

    def take_changed(self) -> list[str] | None:
        """The keys changed since the last call (adapters/state.py); None at
        the first call, which starts keeping them: every key may have."""
        changed, self.changed = self.changed, {}
        return None if changed is None else list(changed)

    # -- what the outside world does
    def observe(self, event: SwitchEvent) -> None:
        if self.changed is not None:
            self.changed[event.call or event.device] = None
        if event.kind in ("ended", "failed"):
            self.calls.pop(event.call, None)
            self.call_devices.pop(event.call, None)
        elif event.kind in _STATE_OF:
            self.calls[event.call] = _STATE_OF[event.kind]
            if event.device:
                self.call_devices[event.call] = event.device
        elif event.kind == "agent":
            self.devices[event.device] = event.state

    # -- helpers
    def _emit(
        self,
        kind: str,
        call: str,
        *,
        device: str = "",
        destination: str = "",
        cause: str = "",
        reason: str = "",
    ) -> SwitchEvent:
        event = SwitchEvent(
            kind=kind, call=call, device=device, destination=destination, cause=cause, reason=reason
        )
        self.observe(event)
        return event

    def _agent(self, device: str | None, state: str) -> list[SwitchEvent]:
        if not device:
            return []
        event = SwitchEvent(kind="agent", device=device, state=state)
        self.observe(event)
        return [event]

    def _new_leg(self, device: str, destination: str) -> list[SwitchEvent]:
        """A new outbound leg on ``device``, then by the dial plan."""
        self.legs_made += 1
        leg = f"sim-{self.legs_made}"
        events = [self._emit("dialing", leg, device=device, destination=destination)]
        if destination.startswith("busy"):
            events.append(self._emit("failed", leg, reason="busy"))
        elif destination.startswith("ring"):
            events.append(self._emit("alerting", leg))
        else:
            events += [self._emit("alerting", leg), self._emit("connected", leg)]
        return events

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
        call = command.call or ""
        if self.calls.get(call) not in ("ALERTING", "DIALING"):
            return []
        return [self._emit("connected", call)]

    def reject(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.call, "rejected")

    def release(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.call, "released")

    def hold(self, command: Command) -> list[SwitchEvent]:
        return self._hold_if_talking(command.call or "")

    def retrieve(self, command: Command) -> list[SwitchEvent]:
        return self._retrieve_if_held(command.call or "")

    def consult(self, command: Command) -> list[SwitchEvent]:
        call = command.call or ""
        events = self._hold_if_talking(call)
        return events + self._new_leg(self.call_devices.get(call, ""), command.destination or "")

    def transfer(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.consult, "transferred") + self._end(command.call, "transferred")

    def conference(self, command: Command) -> list[SwitchEvent]:
        return self._retrieve_if_held(command.call or "") + self._end(command.consult, "conferenced")

    def alternate(self, command: Command) -> list[SwitchEvent]:
        other = command.other or ""
        return self._hold_if_talking(command.call or "") + self._retrieve_if_held(other)

    def blindtransfer(self, command: Command) -> list[SwitchEvent]:
        return self._end(command.call, "transferred")

    def blindconference(self, command: Command) -> list[SwitchEvent]:
        return []

    def senddtmf(self, command: Command) -> list[SwitchEvent]:
        return []

    def login(self, command: Command) -> list[SwitchEvent]:
        return self._agent(command.device, "loggedin")

    def logout(self, command: Command) -> list[SwitchEvent]:
        return self._agent(command.device, "loggedout")

    def ready(self, command: Command) -> list[SwitchEvent]:
        return self._agent(command.device, "ready")

    def notready(self, command: Command) -> list[SwitchEvent]:
        return self._agent(command.device, "notready")

    def dial(self, command: Command) -> list[SwitchEvent]:
        if not command.device:
            return []
        return self._new_leg(command.device, command.destination or "")


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
    login = logout = ready = notready = dial = _nothing

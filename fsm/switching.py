"""The switch side of the engine: what the switch reports, applied to the calls.

:class:`SwitchSide` is the part of :class:`fsm.engine.Engine` that takes
switch events: it starts interactions for new calls (D-NEW), names a pending
consult's leg (D-ASYNC), attaches a consult made on the phone (S-EVT-1),
drives each leg's conversation machine and derives what a leg's new state
means for its interaction (D-PRIMARY-LOSS, D-CONSULT-END, S-ALT-1). The
bridge side (requests, queries, their execution) is in ``fsm.engine``.
"""

from __future__ import annotations

from typing import Final

from fsm import machines as m
from fsm.machines import CONVERSATION, LIFECYCLE, Refusal
from fsm.messages import DataValue, Message, copy_data, event
from fsm.model import Conversation, Interaction, Pending
from fsm.outputs import Output, SwitchError, Targets, encode_id
from fsm.policy import Policy
from fsm.switch_events import Command, SwitchEvent


class SwitchSide:
    """Switch-event handling; the base of :class:`fsm.execution.ExecutionSide`
    and so of :class:`fsm.engine.Engine`, which provide the state and the
    methods declared here."""

    policy: Policy
    targets: Targets
    interactions: dict[str, Interaction]
    destinations: dict[str, Interaction | Conversation]
    calls: dict[str, Conversation]
    disposed_targets: dict[str, None]
    disposed_calls: dict[str, None]
    released: dict[str, None]
    awaited: dict[str, str]
    awaiting_leg: dict[str, str]
    abandoned: dict[str, str]
    commands_issued: int
    _joinable_held: dict[str, None]
    _joinable_other: dict[str, None]
    _out: list[Output]

    # Provided by fsm.execution and fsm.engine.
    def _fire(self, interaction: Interaction, trigger: str) -> None:
        raise NotImplementedError

    def _fire_if_edge(self, interaction: Interaction, trigger: str) -> None:
        raise NotImplementedError

    def _finish(self, interaction: Interaction, *, error: str | None = None, rule: str = "") -> None:
        raise NotImplementedError

    def _pump(self, interaction: Interaction) -> None:
        raise NotImplementedError

    def _check_done(self, interaction: Interaction) -> None:
        raise NotImplementedError

    def _command(self, op: str, call: str, **extra: str) -> Command:
        raise NotImplementedError

    def _emit(self, message: Message) -> None:
        raise NotImplementedError

    def _switch_event(self, ev: SwitchEvent) -> None:
        if ev.kind == "result":
            self._result(ev)
            return
        call = ev.call
        if call in self.disposed_calls or call in self.released:
            why = (
                "belongs to a disposed interaction"
                if call in self.disposed_calls
                else ("was released by the engine")
            )
            self._out.append(SwitchError("D-LIFE-4", f"ignored {ev.kind} for call {call}: it {why}"))
            return
        leg = self.calls.get(call)
        if ev.kind == "offered":
            if leg is not None:
                self._out.append(SwitchError("D-BAD", f"offered: call {call} is already known"))
                return
            self._new_interaction(ev, m.ALERTING)
            return
        if leg is None:
            if ev.kind == "dialing":
                self._new_dialing(ev)
            else:
                self._out.append(SwitchError("D-BAD", f"{ev.kind}: call {call} is not known"))
            return
        self._leg_event(leg, ev.kind, ev.cause or ev.reason)

    def _new_interaction(self, ev: SwitchEvent, state: str) -> None:
        """D-NEW: a call that belongs to no interaction starts one."""
        if len(self.interactions) >= self.policy.max_interactions:
            self._out.append(
                SwitchError(
                    "D-BOUND",
                    f"{ev.kind}: call {ev.call} refused, {len(self.interactions)} interactions "
                    "are live (policy max_interactions)",
                )
            )
            return
        target = self.targets.interaction(ev.call)
        if target in self.destinations or target in self.disposed_targets:
            self._out.append(SwitchError("D-NEW", f"{ev.kind}: interaction {ev.call} already exists"))
            return
        data: dict[str, DataValue] = {}
        for key in ("ani", "dnis", "destination"):
            value = getattr(ev, key)
            if value:
                data[key] = value
        data.update(copy_data(ev.data))
        interaction = Interaction(
            id=ev.call,
            target=target,
            state=state,
            lifecycle=m.ABSENT,
            data=data,
            primary=ev.call,
        )
        LIFECYCLE.fire(interaction, "create")
        leg = Conversation(call=ev.call, interaction_id=ev.call, role="primary", state=state)
        interaction.legs[ev.call] = leg
        self.interactions[interaction.id] = interaction
        self.destinations[target] = interaction
        self.calls[ev.call] = leg
        self._emit(
            event(
                "interaction.created",
                self.targets.channel,
                {"interactionid": encode_id(interaction.id), "type": "telephony"},  # D-NEW, D-TARGET
            )
        )

    def _new_dialing(self, ev: SwitchEvent) -> None:
        """A new leg dialing: a pending consult's leg, a late leg of a failed
        consult, a consult made on the phone, or a new outbound call."""
        if self.awaiting_leg:
            command_id = next(iter(self.awaiting_leg))
            interaction = self.interactions[self.awaiting_leg[command_id]]
            assert interaction.executing is not None and interaction.executing.command == command_id
            self._name_consult(interaction, ev.call)
            return
        if self.abandoned:
            del self.abandoned[next(iter(self.abandoned))]
            self._release_orphan(ev.call)
            return
        joinable = self._joinable()
        if joinable is None:
            self._new_interaction(ev, m.DIALING)
            return
        interaction = joinable
        announced = interaction.lifecycle == m.INITIALIZED
        self._add_consult_leg(interaction, ev.call, creatable=announced)
        self._fire(interaction, "phone_consult")
        if announced:  # S-EVT-1; before init the leg is in the snapshot instead (D-LIFE-3)
            self._emit(event("interaction.consult", interaction.target, {"nativeid": ev.call}))

    def _joinable(self) -> Interaction | None:
        """The interaction a consult made on the phone joins: STARTED with no
        consult and no request executing; one whose customer is held first,
        then the one that changed last. Found from an index, not a scan."""
        for store in (self._joinable_held, self._joinable_other):
            for interaction_id in reversed(store):
                interaction = self.interactions[interaction_id]
                if interaction.executing is None:
                    return interaction
        return None

    def _index(self, interaction: Interaction) -> None:
        """Keep the joinable index current after a state change."""
        self._joinable_held.pop(interaction.id, None)
        self._joinable_other.pop(interaction.id, None)
        if interaction.state == m.S_NONE and interaction.id in self.interactions:
            primary = interaction.leg("primary")
            held = primary is not None and primary.state == m.HELD
            (self._joinable_held if held else self._joinable_other)[interaction.id] = None

    def _add_consult_leg(
        self, interaction: Interaction, call: str, *, creatable: bool = True
    ) -> Conversation:
        """A new consult leg. It may be created once the bridge has been told
        of it: by the consult response (S-CC-1) or interaction.consult (D-CC-4)."""
        leg = Conversation(call=call, interaction_id=interaction.id, role="consult", state=m.DIALING)
        interaction.legs[call] = leg
        interaction.consult = call
        if creatable:
            interaction.creatable = {**interaction.creatable, call: None}
        self.calls[call] = leg
        return leg

    def _name_consult(self, interaction: Interaction, call: str) -> None:
        """D-ASYNC: a consult succeeds as soon as the switch names its leg."""
        self._add_consult_leg(interaction, call)
        self._fire(interaction, "consult_named")
        self._finish(interaction)
        self._pump(interaction)

    def _abandon(self, interaction: Interaction, pending: Pending) -> None:
        if pending.command is not None:
            self.abandoned[pending.command] = interaction.id
            while len(self.abandoned) > self.policy.max_disposed:
                del self.abandoned[next(iter(self.abandoned))]

    def _release_orphan(self, call: str) -> None:
        bounded_add(self.released, call, self.policy.max_disposed)
        self._command("release", call)

    def _leg_event(self, leg: Conversation, kind: str, cause: str = "") -> None:
        before = leg.state
        if CONVERSATION.try_fire(leg, kind) is None:
            checked = CONVERSATION.check(before, kind)
            assert isinstance(checked, Refusal)
            self._out.append(SwitchError(checked.rule, f"{kind} for call {leg.call}: {checked.reason}"))
            return
        if leg.state != before and leg.lifecycle == m.INITIALIZED:
            assert leg.target is not None
            # D-BODY: conversation.ended carries the switch's cause
            body = {"cause": cause} if leg.state == m.ENDED else None
            self._emit(event(_CONVERSATION_EVENT[leg.state], leg.target, body))
        interaction = self.interactions[leg.interaction_id]
        if leg.call == interaction.primary and interaction.state == m.S_NONE:
            self._index(interaction)
        trigger = _derived_trigger(interaction, leg, before)
        if trigger is not None:
            self._fire_if_edge(interaction, trigger)
        if interaction.executing is not None:
            self._check_done(interaction)
        if interaction.waiting:  # what _pump runs, if nothing executes now
            self._pump(interaction)

    def _result(self, ev: SwitchEvent) -> None:
        interaction_id = self.awaited.get(ev.command)
        if interaction_id is None:
            if _issued(ev.command, self.commands_issued):
                self._late_result(ev)
                return
            self._out.append(SwitchError("D-BAD", f"result: command {ev.command!r} was never sent"))
            return
        interaction = self.interactions[interaction_id]
        pending = interaction.executing
        assert pending is not None and pending.command == ev.command
        if not ev.ok:
            if interaction.state == m.S_REQUESTED:
                self._fire(interaction, "consult_refused")
            reason = ev.reason or "no reason given"
            self._finish(interaction, error=f"the switch refused: {reason}", rule="D-ASYNC")
        elif interaction.state == m.S_REQUESTED:
            if not ev.call:
                return  # acknowledged; the leg's name comes with its dialing event
            if ev.call in self.calls or ev.call in self.released:
                self._out.append(SwitchError("D-BAD", f"result: call {ev.call} is already known"))
                return
            self._name_consult(interaction, ev.call)
            return
        else:
            self._finish(interaction)
        self._pump(interaction)

    def _late_result(self, ev: SwitchEvent) -> None:
        """A result for a command no request awaits any more: an abandoned
        consult that names its leg now has that leg released (D-ASYNC);
        any other is an acknowledgement with nothing left to do."""
        abandoned = self.abandoned.pop(ev.command, None) is not None
        if abandoned and ev.ok and ev.call and ev.call not in self.calls:
            self._release_orphan(ev.call)


#: conversation state -> the event that announces it (conversation.talking, ...)
_CONVERSATION_EVENT: Final = {state: f"conversation.{state.lower()}" for state in m.CONVERSATION_STATES}


def _derived_trigger(interaction: Interaction, leg: Conversation, before: str) -> str | None:
    """What a leg's new state means for its interaction. The active leg
    (S-ALT-1) is the last one that became TALKING; when it is put on hold
    while the other one talks, the talking one is the active leg."""
    state = leg.state
    if state == before:
        return None
    legs = interaction.legs
    primary = legs[interaction.primary] if interaction.primary is not None else None
    consult = legs[interaction.consult] if interaction.consult is not None else None
    if leg is primary:
        if state == m.TALKING:
            return "primary_connected" if interaction.top in (m.ALERTING, m.DIALING) else "primary_talking"
        if state == m.HELD and consult is not None and consult.state == m.TALKING:
            return "consult_talking"
        return "primary_ended" if state == m.ENDED else None
    if leg is consult:
        if state == m.TALKING:
            return "consult_connected" if interaction.state == m.S_RINGING else "consult_talking"
        if state == m.HELD and primary is not None and primary.state == m.TALKING:
            return "primary_talking"
        return "consult_ended" if state == m.ENDED else None
    return None


def _issued(command_id: str, count: int) -> bool:
    prefix, _, number = command_id.partition("-")
    return prefix == "cmd" and number.isdigit() and 1 <= int(number) <= count


def bounded_add(store: dict[str, None], key: str, limit: int) -> None:
    store[key] = None
    while len(store) > limit:
        del store[next(iter(store))]

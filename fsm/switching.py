"""The switch side of the engine: what the switch reports, applied to the calls.

:class:`Switching` takes switch events: it starts interactions for new calls
(D-NEW), names a pending consult's leg (D-ASYNC), attaches a consult made on
the phone (S-EVT-1), drives each leg's conversation machine and derives what
a leg's new state means for its interaction (D-PRIMARY-LOSS, D-CONSULT-END,
S-ALT-1). It is given the shared state, the outbox, the firing of
interaction triggers and request execution, all below it; the bridge side
is above it, in ``fsm.engine``.
"""

from __future__ import annotations

import logging
from typing import Final

import attrs

from fsm import machines as m
from fsm.catalog import CATALOG, CREATED, TELEPHONY
from fsm.devices import Devices
from fsm.errors import Refusal
from fsm.execution import Execution
from fsm.firing import Firing
from fsm.machines import CONTROL, CONVERSATION, COUPLING_CONDITIONS, LEG_COUPLING, LIFECYCLE, LegCoupling
from fsm.messages import DataValue, copy_data, event
from fsm.model import Conversation, ConversationView, Interaction, InteractionView
from fsm.outbox import Outbox
from fsm.outputs import ToBridge, build_to_bridge, encode_id
from fsm.state import EngineState, bounded_add
from fsm.switch_events import SwitchEvent
from fsm.tree import Channel, Device

logger = logging.getLogger("telephony_fsm.engine")

#: the empty index of a device with no joinable interaction
_NONE: Final[dict[str, None]] = {}


class Switching:
    """Applies switch events for the engine; calls only the layers below."""

    __slots__ = ("devices", "execution", "firing", "outbox", "state")

    def __init__(
        self, state: EngineState, outbox: Outbox, firing: Firing, execution: Execution, devices: Devices
    ) -> None:
        self.state = state
        self.outbox = outbox
        self.firing = firing
        self.execution = execution
        self.devices = devices

    def _link(self, ev: SwitchEvent) -> None:
        """The link to the switch went down or came back (F-CTRL-3, D-CTRL-1):
        the control's status follows, is reported once the start-up exchange
        happened, and requests waiting on the switch fail at once (D-CTRL-3)."""
        control = self.state.control
        trigger = "link_up" if ev.up else "link_down"
        before = control.state
        checked = CONTROL.check(before, trigger)
        if isinstance(checked, Refusal):
            self.outbox.switch_error(checked.rule, f"link {'up' if ev.up else 'down'}: {checked.reason}")
            return
        CONTROL.fire(control, trigger)
        control.reason = ev.reason
        if control.state != before and control.reporting:
            self.outbox.emit(
                event("cti.status", control.target, {"status": control.state, "reason": ev.reason})
            )
        if not ev.up:
            lost = Refusal("D-CTRL-3", f"{m.C_CTI_LOST}: the link to the switch is down")
            self.execution.fail_all(lost)
            self.devices.fail_all(lost)

    def switch_event(self, ev: SwitchEvent) -> None:
        """One switch event the engine has parsed."""
        kind = ev.kind
        if kind == "result":
            self._result(ev)
            return
        if kind == "agent":
            self.devices.agent_event(ev)
            return
        if kind == "link":
            self._link(ev)
            return
        call = ev.call
        if call in self.state.disposed_calls or call in self.state.released:
            # ignored, with no output: a disposed interaction's call (D-LIFE-4,
            # D-SWITCH) or a leg the engine released itself (D-ASYNC)
            return
        leg = self.state.calls.get(call)
        if ev.kind == "offered":
            if leg is not None:
                self.outbox.switch_error("D-BAD", f"offered: call {call} is already known")
                return
            self._new_interaction(ev, m.ALERTING)
            return
        if leg is None:
            if ev.kind == "dialing":
                self._new_dialing(ev)
            else:
                self.outbox.switch_error("D-BAD", f"{ev.kind}: call {call} is not known")
            return
        self._leg_event(leg, ev.kind, ev.cause or ev.reason)

    def _new_interaction(self, ev: SwitchEvent, state: str) -> Interaction | None:
        """D-NEW: a call that belongs to no interaction starts one on its
        device, announced on the device's initialized channel destination;
        before that channel's init it is listed there instead (D-LIFE-3),
        and while no channel destination shows the device it waits for one.
        A call to an end-point no agent has is nobody's: ignored."""
        device = self.state.devices.get(ev.device)
        if device is None:
            # D-NEW: nobody's call, logged and ignored with no output; its later events are ignored too
            bounded_add(self.state.disposed_calls, ev.call, self.state.policy.max_disposed)
            logger.info(
                "%s: call %s on device %r, which no agent of the directory has: ignored",
                ev.kind,
                ev.call,
                ev.device,
            )
            return None
        if len(self.state.interactions) >= self.state.policy.max_interactions:
            self.outbox.switch_error(
                "D-BOUND",
                f"{ev.kind}: call {ev.call} refused, {len(self.state.interactions)} interactions "
                "are live (policy max_interactions)",
            )
            return None
        if device.state == m.UNAVAILABLE:
            # D-NEW, D-CH-1: another agent holds the device: the call is not
            # this agent's, never announced nor listed; its later events are ignored
            bounded_add(self.state.disposed_calls, ev.call, self.state.policy.max_disposed)
            logger.info(
                "%s: call %s on device %s, which another agent holds: ignored", ev.kind, ev.call, ev.device
            )
            return None
        channels = device.channels
        channel_target = channels[0] if channels else ""
        target = self.state.targets.interaction(channel_target, ev.call) if channel_target else ""
        for known in channels:
            taken = self.state.targets.interaction(known, ev.call)
            if taken in self.state.destinations or taken in self.state.disposed_targets:
                self.outbox.switch_error("D-NEW", f"{ev.kind}: interaction {ev.call} already exists")
                return None
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
            device=device.end_point,
            lifecycle=m.ABSENT,
            data=data,
            primary=ev.call,
        )
        leg = Conversation(call=ev.call, interaction_id=ev.call, role="primary", state=state)
        interaction.legs[ev.call] = leg
        self.state.interactions[interaction.id] = interaction
        device.interactions[interaction.id] = None
        self.state.calls[ev.call] = leg
        if not target:
            return interaction
        LIFECYCLE.fire(interaction, "create")
        self.state.destinations[target] = interaction
        for further in channels[1:]:  # a further session of the agent shows it too (D-SESS-1)
            self.state.add_view(interaction, further)
        for shown_on in channels:
            channel = self.state.destinations[shown_on]
            if channel.lifecycle == m.INITIALIZED:  # S-LIFE-2 on the channel
                assert type(channel) is Channel
                channel.shown[interaction.id] = None
                self.outbox.emit(
                    event(
                        CREATED,
                        shown_on,
                        {"interactionid": encode_id(interaction.id), "type": TELEPHONY},  # D-NEW, D-TARGET
                    )
                )
        return interaction

    def _new_dialing(self, ev: SwitchEvent) -> None:
        """A new leg dialing on a device, judged once in D-LEG's order: a
        consult executing on an interaction of that device, a dial executing
        on it, a late leg of a failed consult, a consult made on the phone,
        or a new outbound call."""
        end_point = ev.device
        if not end_point:
            self.outbox.switch_error("D-BAD", f"dialing: call {ev.call} is not known, and names no device")
            return
        state = self.state
        if state.awaiting_leg:
            for command_id, interaction_id in state.awaiting_leg.items():
                interaction = state.interactions[interaction_id]
                if interaction.device == end_point:
                    assert interaction.executing is not None and interaction.executing.command == command_id
                    self._name_consult(interaction, ev.call)
                    return
        device = state.devices.get(end_point)
        if device is not None and self.devices.dialing_for(device):
            self._name_dial(device, ev)
            return
        claim = state.dial_claims.pop(end_point, None)
        if claim is not None and state.clock <= claim[0]:  # D-ASYNC: a timed-out dial's late leg
            self._release_orphan(ev.call)
            return
        if state.abandoned_until and self._claimed_by_abandoned(end_point):
            self._release_orphan(ev.call)
            return
        joinable = self._joinable(end_point)
        if joinable is None:
            self._new_interaction(ev, m.DIALING)
            return
        interaction = joinable
        if len(interaction.legs) >= state.policy.max_legs:  # D-BOUND: from the switch too
            self.outbox.switch_error(
                "D-BOUND",
                f"dialing {ev.call}: interaction {interaction.id} already has {len(interaction.legs)} "
                "call legs, the limit (policy max_legs)",
            )
            return
        self._add_consult_leg(interaction, ev.call, creatable=None)
        self.firing.fire(interaction, "phone_consult")
        for dest in self.state.shown(interaction):
            if dest.lifecycle == m.INITIALIZED:
                # S-EVT-1, D-CC-4; before init the leg is in the snapshot instead (D-LIFE-3)
                dest.may_create(ev.call)
                self.outbox.emit(event("interaction.consult", dest.target, {"nativeid": ev.call}))

    def _name_dial(self, device: Device, ev: SwitchEvent) -> None:
        """D-TCH-1: the dial's new leg starts an interaction in DIALING,
        announced before the dial's SUCCESS (D-ORDER)."""
        interaction = self._new_interaction(ev, m.DIALING)
        if interaction is None:
            self.devices.finish(device, Refusal("D-BOUND", "the dialed call could not be taken"))
        else:
            self.devices.finish(device, interaction=interaction)
        self.devices.pump(device)

    def _joinable(self, end_point: str) -> Interaction | None:
        """The interaction a consult made on the phone joins (S-EVT-1, D-LEG):
        the one STARTED interaction of the device without a consult leg,
        whatever request it executes, when there is exactly one; None when
        there are none or several (the leg then starts a new interaction).
        From an index, not a scan."""
        held = self.state.joinable_held.get(end_point, _NONE)
        other = self.state.joinable_other.get(end_point, _NONE)
        if len(held) + len(other) != 1:
            return None
        return self.state.interactions[next(iter(held or other))]

    def _add_consult_leg(
        self, interaction: Interaction, call: str, *, creatable: Interaction | InteractionView | None
    ) -> Conversation:
        """A new consult leg. It may be created once the bridge has been told
        of it: on ``creatable``, the destination the consult response goes
        to (S-CC-1), or where interaction.consult tells it (D-CC-4)."""
        leg = Conversation(call=call, interaction_id=interaction.id, role="consult", state=m.DIALING)
        interaction.legs[call] = leg
        interaction.consult = call
        for view in self.state.views.get(interaction.id, ()) if self.state.views else ():
            view.legs[call] = ConversationView(call=call, interaction_id=interaction.id)
        if creatable is not None:
            creatable.may_create(call)
        self.state.calls[call] = leg
        return leg

    def _name_consult(self, interaction: Interaction, call: str) -> None:
        """D-ASYNC: a consult succeeds as soon as the switch names its leg;
        the destination it was asked of may create its conversation (S-CC-1)."""
        pending = interaction.executing
        asked: Interaction | InteractionView = interaction
        if pending is not None and self.state.views:
            dest = self.state.destinations.get(pending.request.target)
            if type(dest) is InteractionView:
                asked = dest
        self._add_consult_leg(interaction, call, creatable=asked)
        self.firing.fire(interaction, "consult_named")
        self.execution.finish(interaction)
        self.execution.pump(interaction)

    def _claimed_by_abandoned(self, end_point: str) -> bool:
        """Whether an abandoned consult of the device claims a new leg now
        (D-ASYNC): the oldest whose window is open and whose interaction has
        a live leg. Claims that expired, or whose interaction has no live
        leg, are dropped: they claim nothing any more."""
        for command, until in list(self.state.abandoned_until.items()):
            claimant = self.state.interactions.get(self.state.abandoned.get(command, ""))
            if claimant is not None and claimant.device != end_point and self.state.clock <= until:
                continue  # another device's claim
            del self.state.abandoned_until[command]
            interaction = self.state.interactions.get(self.state.abandoned.get(command, ""))
            if (
                self.state.clock <= until
                and interaction is not None
                and any(leg.live for leg in interaction.legs.values())
            ):
                return True
        return False

    def _release_orphan(self, call: str) -> None:
        bounded_add(self.state.released, call, self.state.policy.max_disposed)
        self.outbox.command("release", call)

    def _leg_event(self, leg: Conversation, kind: str, cause: str = "") -> None:
        before = leg.state
        if CONVERSATION.try_fire(leg, kind) is None:
            checked = CONVERSATION.check(before, kind)
            assert isinstance(checked, Refusal)
            self.outbox.switch_error(checked.rule, f"{kind} for call {leg.call}: {checked.reason}")
            return
        interaction = self.state.interactions[leg.interaction_id]
        if leg.call == interaction.primary and interaction.state == m.S_NONE:
            self.state.index(interaction)
        out = self.outbox.out
        mark = len(out)
        trigger = _derived_trigger(interaction, leg, before)
        if trigger is not None:
            self.firing.fire_if_edge(interaction, trigger)
        if leg.state != before:
            self._leg_changed(interaction, leg, cause, mark)
        if interaction.executing is not None:
            self.execution.check_done(interaction)
        if interaction.waiting:  # what _pump runs, if nothing executes now
            self.execution.pump(interaction)

    def _leg_changed(self, interaction: Interaction, leg: Conversation, cause: str, mark: int) -> None:
        """The conversation event of a leg's new state, on each of its
        initialized conversation destinations (D-SESS-1). D-ORDER: the
        interaction's events first, then the conversation's, before any
        command or response the change caused."""
        if self.state.views:
            legs = [d for d in self.state.leg_shown(interaction, leg) if d.lifecycle == m.INITIALIZED]
            if not legs:
                return
            targets = {d.target for d in self.state.shown(interaction)}
        elif leg.lifecycle == m.INITIALIZED:
            legs, targets = [leg], {interaction.target}
        else:
            return
        # D-BODY: conversation.ended carries the switch's cause
        body = {"cause": cause} if leg.state == m.ENDED else None
        out = self.outbox.out
        while mark < len(out):
            o = out[mark]
            if (
                type(o) is not ToBridge
                or o.message.header.request_id is not None
                or o.message.target not in targets
            ):
                break
            mark += 1
        name = _CONVERSATION_EVENT[leg.state]
        for dest in legs:
            assert dest.target is not None
            out.insert(mark, build_to_bridge(event(name, dest.target, body)))
            mark += 1

    def _result(self, ev: SwitchEvent) -> None:
        end_point = self.state.awaited_devices.get(ev.command)
        if end_point is not None:
            if self.devices.result(ev, end_point):  # names the dial's new leg (D-DONE)
                if ev.call in self.state.calls or ev.call in self.state.released:
                    self.outbox.switch_error("D-BAD", f"result: call {ev.call} is already known")
                    return
                self._name_dial(
                    self.state.devices[end_point], attrs.evolve(ev, kind="dialing", device=end_point)
                )
            return
        interaction_id = self.state.awaited.get(ev.command)
        if interaction_id is None:
            if _issued(ev.command, self.state.commands_issued):
                self._late_result(ev)
                return
            self.outbox.switch_error("D-BAD", f"result: command {ev.command!r} was never sent")
            return
        interaction = self.state.interactions[interaction_id]
        pending = interaction.executing
        assert pending is not None and pending.command == ev.command
        if not ev.ok:
            if interaction.state == m.S_REQUESTED:
                self.firing.fire(interaction, "consult_refused")
            reason = ev.reason or "no reason given"
            self.execution.finish(interaction, Refusal("D-ASYNC", f"the switch refused: {reason}"))
        elif interaction.state == m.S_REQUESTED:
            if not ev.call:
                return  # acknowledged; the leg's name comes with its dialing event
            if ev.call in self.state.calls or ev.call in self.state.released:
                self.outbox.switch_error("D-BAD", f"result: call {ev.call} is already known")
                return
            self._name_consult(interaction, ev.call)
            return
        elif CATALOG[pending.request.name].done is None:
            self.execution.finish(interaction)  # D-DONE: an at-once request is done when acknowledged
        else:
            return  # D-DONE: accepted; the state event completes it
        self.execution.pump(interaction)

    def _late_result(self, ev: SwitchEvent) -> None:
        """A result for a command no request awaits any more: an abandoned
        consult that names its leg now has that leg released (D-ASYNC);
        any other is an acknowledgement with nothing left to do."""
        abandoned = self.state.abandoned.pop(ev.command, None) is not None
        for end_point, (_, command) in list(self.state.dial_claims.items()):
            if command == ev.command:  # a timed-out dial's command names its leg now (D-ASYNC)
                del self.state.dial_claims[end_point]
                abandoned = True
        if abandoned and ev.ok and ev.call and ev.call not in self.state.calls:
            self._release_orphan(ev.call)


#: conversation state -> the event that announces it (conversation.talking, ...)
_CONVERSATION_EVENT: Final = {state: f"conversation.{state.lower()}" for state in m.CONVERSATION_STATES}


def _derived_trigger(interaction: Interaction, leg: Conversation, before: str) -> str | None:
    """What a leg's new state means for its interaction, by the coupling
    table (:data:`fsm.machines.LEG_COUPLING`); None when it means nothing."""
    state = leg.state
    if state == before:
        return None
    call = leg.call
    if call == interaction.primary:
        rows, other_call = _COUPLING_OF.get(("primary", state)), interaction.consult
    elif call == interaction.consult:
        rows, other_call = _COUPLING_OF.get(("consult", state)), interaction.primary
    else:
        return None
    if rows is None:
        return None
    other = interaction.legs[other_call].state if other_call is not None else None
    for row in rows:
        if row.when is None or COUPLING_CONDITIONS[row.when](interaction.state, other):
            return row.trigger
    return None


#: (role, leg state) -> the rows of LEG_COUPLING for it, in order
_COUPLING_OF: Final[dict[tuple[str, str], tuple[LegCoupling, ...]]] = {
    key: tuple(row for row in LEG_COUPLING if (row.role, row.leg_state) == key)
    for key in dict.fromkeys((row.role, row.leg_state) for row in LEG_COUPLING)
}


def _issued(command_id: str, count: int) -> bool:
    prefix, _, number = command_id.partition("-")
    return prefix == "cmd" and number.isdigit() and 1 <= int(number) <= count

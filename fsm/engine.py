"""The sans-IO engine: the client side of the telephony interaction destination.

Feed it what the bridge sends (:meth:`Engine.receive_bridge`), what the
switch reports (:meth:`Engine.receive_switch`) and the passing of time
(:meth:`Engine.advance`); each call returns the outputs it caused, in order:
messages to the bridge, commands to the switch, and errors about input it
could not use. The engine sends nothing itself, reads no clock and never
raises on bad input.

The engine is a composition, and calls go down: :class:`Engine` reads and
addresses what the bridge sends (``fsm.intake``, D-DUP, D-TARGET, D-LIFE-4)
and answers queries here, hands a request whose turn it is to
:class:`fsm.execution.Execution` and a switch event to
:class:`fsm.switching.Switching`; both fire interaction triggers through
:class:`fsm.firing.Firing`, and every output is made by
:class:`fsm.outbox.Outbox`. The layers share one
:class:`fsm.state.EngineState`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

import attrs

from fsm import machines as m
from fsm.catalog import (
    CAPABILITIES,
    GUARDS_OF,
    QUERY_ANSWERS,
    GuardContext,
    RequestSpec,
    first_refusal,
    read_properties,
)
from fsm.changes import Changes, ChangeTracker
from fsm.devices import Devices
from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory
from fsm.errors import LocalProtocolError, RemoteProtocolError
from fsm.execution import Execution
from fsm.firing import Firing
from fsm.intake import Defect, parse_switch_event, read_message
from fsm.machines import LIFECYCLE
from fsm.messages import QUERY, Headers, bound_data, count_keys, event
from fsm.model import (
    Conversation,
    ConversationDestination,
    ConversationView,
    Interaction,
    InteractionDestination,
    InteractionView,
    Request,
)
from fsm.outbox import Outbox
from fsm.outputs import BridgeError, Output, SwitchError, Targets, ToBridge, ToSwitch, describe
from fsm.policy import Policy
from fsm.processor import Processor
from fsm.state import Destination, EngineState
from fsm.switch_events import SwitchEvent
from fsm.switching import Switching
from fsm.tree import Channel, ChannelGroup, Control, Device, Session

__all__ = [
    "BridgeError",
    "Engine",
    "Output",
    "SwitchError",
    "Targets",
    "ToBridge",
    "ToSwitch",
    "describe",
    "read_properties",
]


class Engine:
    """One client engine: every interaction of one channel, and their legs.
    ``state`` restores one that :mod:`fsm.snapshot` saved.
    ``interaction_machine`` is the interaction's transition table (the one
    of :mod:`fsm.machines`; another one only to prove that the tests catch
    a wrong table)."""

    def __init__(
        self,
        policy: Policy | None = None,
        targets: Targets | None = None,
        *,
        directory: AgentDirectory = DEFAULT_DIRECTORY,
        capabilities: Mapping[str, bool] | None = None,
        link_up: bool = True,
        switch_acknowledges: bool = False,
        state: EngineState | None = None,
        interaction_machine: m.StateMachine = m.INTERACTION,
    ) -> None:
        if state is None:
            targets = targets or Targets()
            control = Control(target=targets.control(), state=m.C_STARTED if link_up else m.C_STARTING)
            state = EngineState(
                policy=policy or Policy(),
                targets=targets,
                control=control,
                directory=directory,
                capabilities=dict(capabilities if capabilities is not None else CAPABILITIES),
                switch_acknowledges=switch_acknowledges,
            )
            state.destinations[control.target] = control
            for end_point in directory.end_points:  # D-NEW: followed from start-up
                state.devices[end_point] = Device(end_point=end_point)
        self.state = state
        self.outbox = outbox = Outbox(state)
        firing = Firing(state, outbox, interaction_machine)
        self.execution = execution = Execution(state, outbox, firing, interaction_machine)
        self.devices = devices = Devices(state, outbox)
        self.switching = Switching(state, outbox, firing, execution, devices)
        self.processor = Processor(state, outbox, execution, devices)
        #: set by :meth:`track_changes`
        self.tracker: ChangeTracker | None = None

    # ------------------------------------------------------------------
    # What the engine knows, for adapters and tests (read through the state).

    @property
    def policy(self) -> Policy:
        return self.state.policy

    @property
    def targets(self) -> Targets:
        return self.state.targets

    @property
    def switch_acknowledges(self) -> bool:
        return self.state.switch_acknowledges

    @property
    def clock(self) -> float:
        return self.state.clock

    @property
    def commands_issued(self) -> int:
        return self.state.commands_issued

    @property
    def interactions(self) -> dict[str, Interaction]:
        return self.state.interactions

    @property
    def destinations(self) -> dict[str, Destination]:
        return self.state.destinations

    @property
    def control(self) -> Control:
        return self.state.control

    @property
    def sessions(self) -> dict[str, Session]:
        return self.state.sessions

    @property
    def devices_by_end_point(self) -> dict[str, Device]:
        return self.state.devices

    @property
    def calls(self) -> dict[str, Conversation]:
        return self.state.calls

    @property
    def disposed_targets(self) -> dict[str, None]:
        return self.state.disposed_targets

    @property
    def disposed_calls(self) -> dict[str, None]:
        return self.state.disposed_calls

    @property
    def released(self) -> dict[str, None]:
        return self.state.released

    @property
    def awaited(self) -> dict[str, str]:
        return self.state.awaited

    @property
    def abandoned(self) -> dict[str, str]:
        return self.state.abandoned

    @property
    def abandoned_until(self) -> dict[str, float]:
        return self.state.abandoned_until

    # ------------------------------------------------------------------
    # Which records inputs changed, for a store (fsm.changes).

    def track_changes(self) -> None:
        """From now on, keep which records each input changes (a store asks
        with :meth:`take_changes`); off by default, as it costs a little per input."""
        if self.tracker is None:
            self.tracker = ChangeTracker(self.state)

    def take_changes(self) -> Changes:
        """The records changed since the last call (or since tracking began)."""
        if self.tracker is None:
            raise LocalProtocolError("take_changes() needs track_changes() first")
        return self.tracker.take()

    def _taken(self) -> list[Output]:
        outputs = self.outbox.take()
        if self.tracker is not None:
            self.tracker.outputs(outputs)
        return outputs

    # ------------------------------------------------------------------
    # The sans-IO surface.

    def receive_bridge(self, raw: object) -> list[Output]:
        """A message from the bridge: bytes, text or a decoded JSON object."""
        self._bridge_message(raw)
        return self._taken()

    def receive_switch(self, raw: Mapping[str, Any] | SwitchEvent) -> list[Output]:
        """An event from the switch, decoded JSON or a :class:`SwitchEvent`."""
        outbox = self.outbox
        try:
            ev = raw if isinstance(raw, SwitchEvent) else parse_switch_event(raw)
        except RemoteProtocolError as exc:
            outbox.switch_error(exc.rule, exc.message)
        else:
            if ev.data and count_keys(ev.data) + 3 > self.state.policy.max_data_keys:
                ev = self._bound_data(ev)
            if ev.trimmed:  # D-DATA: accepted without what broke it
                shown = ", ".join(ev.trimmed[:SHOWN_DROPPED])
                more = len(ev.trimmed) - SHOWN_DROPPED
                dropped = f"{shown} and {more} more" if more > 0 else shown
                outbox.switch_error("D-DATA", f"{ev.kind} {ev.call}: dropped data {dropped}", refused=False)
            if self.tracker is not None:
                self.tracker.switch_event(ev)
            self.switching.switch_event(ev)
        return self._taken()

    def _bound_data(self, ev: SwitchEvent) -> SwitchEvent:
        """D-DATA, D-BOUND: the event with its data cut to what
        ``max_data_keys`` leaves beside the ani, dnis and destination keys
        it also becomes."""
        named = sum(1 for value in (ev.ani, ev.dnis, ev.destination) if value)
        kept, dropped = bound_data(ev.data, max(self.state.policy.max_data_keys - named, 0))
        if not dropped:
            return ev
        return attrs.evolve(ev, data=kept, trimmed=(*ev.trimmed, *dropped))

    def advance(self, seconds: float) -> list[Output]:
        """Let ``seconds`` of engine time pass; pending requests may time out
        (D-ASYNC)."""
        if not 0 <= seconds < float("inf"):
            raise LocalProtocolError(f"clock advance {seconds!r} must be finite and >= 0", "D-BAD")
        end = self.state.clock + seconds
        if end >= MAX_CLOCK:
            raise LocalProtocolError(
                f"clock advance {seconds:g} would bring the engine clock to 10^12 seconds or beyond", "D-BAD"
            )
        state = self.state
        while True:  # the two kinds of deadline in time order (D-ASYNC)
            first = state.deadlines[0][0] if state.deadlines else MAX_CLOCK
            device_first = state.device_deadlines[0][0] if state.device_deadlines else MAX_CLOCK
            if min(first, device_first) > end:
                break
            if first <= device_first:
                self.execution.advance_to(first)
            else:
                self.devices.advance_to(device_first)
        state.clock = end
        return self._taken()

    def stop(self) -> list[Output]:
        """The adapter shuts the client down: its status goes to stopping
        and then stopped, each reported once the start-up exchange happened
        (F-CTRL-3)."""
        control = self.state.control
        for trigger in ("stop", "stopped"):
            if m.CONTROL.try_fire(control, trigger) is not None and control.reporting:
                self.outbox.emit(event("cti.status", control.target, {"status": control.state, "reason": ""}))
        return self._taken()

    # ------------------------------------------------------------------
    # Bridge messages.

    def _bridge_message(self, raw: object) -> None:
        read = read_message(raw, self.state.policy.max_frame_size)
        if isinstance(read, Defect):
            echo = read.echo
            if echo is None:
                self.outbox.bridge_error(read.refusal)
                return
            dest = self.state.destinations.get(echo.target)
            if self.tracker is not None:
                self.tracker.destination(dest)
            if dest is not None:  # D-DUP is judged first; a malformed message's id counts as seen
                seen = dest.request_ids
                assert echo.request_id is not None
                if echo.request_id in seen:
                    self.outbox.refuse(echo, "D-DUP", f"duplicate requestId {echo.request_id}")
                    return
                if len(seen) < self.state.policy.max_request_ids:
                    seen[echo.request_id] = None
            self.outbox.refuse_with(echo, read.refusal, prefix=False)
            return
        headers, spec, properties, props = read
        request_id = headers.request_id
        assert request_id is not None
        target = headers.target
        dest = self.state.destinations.get(target)
        if self.tracker is not None:
            self.tracker.destination(dest)
        if dest is None:
            if target in self.state.disposed_targets:
                self.outbox.refuse(headers, "D-LIFE-4", f"destination {target} was disposed")
            elif spec.creates is not None:  # session.query.init to a new session (D-CTRL-3)
                if self.tracker is not None:
                    self.tracker.agent(getattr(props, "name", None))
                self.processor.create_session(headers, props)
            else:
                self.outbox.refuse(headers, "D-TARGET", f"no destination {target!r} is known")
            return
        seen = dest.request_ids  # D-DUP is judged first, on the destination the target names
        if request_id in seen:
            self.outbox.refuse(headers, "D-DUP", f"duplicate requestId {request_id}")
            return
        if len(seen) < self.state.policy.max_request_ids:
            seen[request_id] = None
        elif spec.trigger != "dispose":
            # D-BOUND; dispose stays possible (D-LIFE-4), and needs no record:
            # once it ran, every later message is refused as disposed
            self.outbox.refuse(
                headers,
                "D-BOUND",
                f"{target} has seen {len(seen)} requestIds, the limit (policy "
                "max_request_ids); only dispose is still accepted",
            )
            return
        reached: InteractionDestination | ConversationDestination
        interaction: Interaction
        if type(dest) is Interaction and spec.destination == "interaction":
            interaction = reached = dest
        elif _CALL_KIND_OF.get(type(dest)) == spec.destination:
            # a leg's destination, or one of a further session (D-SESS-1)
            below = cast(InteractionView | Conversation | ConversationView, dest)
            reached = below
            interaction = self.state.interactions[below.interaction_id]
        else:
            self._tree_message(headers, spec, props, dest)
            return
        if spec.kind == QUERY:
            self._query(headers, spec, interaction, reached)
            return
        if reached.lifecycle != m.INITIALIZED and spec.trigger != "dispose":
            self.outbox.refuse(headers, "D-LIFE-5", f"{target} is not initialized; send its init query")
            return
        if spec.trigger == "dispose" and (interaction.executing is not None or interaction.waiting):
            # D-SERIAL: a dispose does not wait, and is never refused for a full queue (D-BOUND)
            self.execution.dispose_now(headers, interaction, reached)
            return
        if interaction.executing is None and not interaction.waiting:
            if interaction.lifecycle != m.DISPOSED:
                # nothing ahead of it (D-SERIAL): it runs now, with the headers
                # and properties its intake built
                self.execution.execute(interaction, spec, headers, props, reached)
                return
        else:
            held = len(interaction.waiting) + (interaction.executing is not None)
            if held >= self.state.policy.max_pending_requests:
                self.outbox.refuse(
                    headers,
                    "D-BOUND",
                    f"{held} requests are already pending on this interaction (policy max_pending_requests)",
                )
                return
        request = Request(name=headers.name, target=target, request_id=request_id, properties=properties)
        interaction.enqueue(request)
        self.execution.pump(interaction)

    def _tree_message(self, headers: Headers, spec: RequestSpec, props: Any, dest: Destination) -> None:
        """A message to a destination above the interactions, or to one of
        another kind than its name says (D-TARGET)."""
        kind = type(dest)
        if _KIND_OF[kind] != spec.destination:
            self.outbox.refuse(
                headers,
                "D-TARGET",
                f"{headers.target} is {_A_KIND[kind]}, not {_A_KIND_NAMED[spec.destination]}",
            )
            return
        assert not isinstance(dest, Interaction | InteractionView | Conversation | ConversationView)
        if spec.kind == QUERY:
            self.processor.query(headers, spec, props, dest)
        else:
            self.processor.request(headers, spec, props, dest)

    def _query(
        self,
        headers: Headers,
        spec: RequestSpec,
        interaction: Interaction,
        dest: InteractionDestination | ConversationDestination,
    ) -> None:
        """Queries change nothing but their destination's lifecycle (the init
        queries), and are answered at once (D-SERIAL): the catalog says what
        a query needs, what it answers and what it fires."""
        guards = GUARDS_OF[spec.name]
        if guards:
            context = GuardContext(interaction, None, None, self.state.policy, dest)
            refusal = first_refusal(guards, context)
            if refusal is not None:
                self.outbox.refuse_with(headers, refusal)
                return
        assert spec.answer is not None
        self.outbox.respond(headers, body=QUERY_ANSWERS[spec.answer](interaction, dest))
        if spec.then is not None:
            LIFECYCLE.fire(dest, spec.then)


#: destination class -> the first word of the names of its messages
_KIND_OF: Final[dict[type, str]] = {
    Interaction: "interaction",
    Conversation: "conversation",
    InteractionView: "interaction",
    ConversationView: "conversation",
    Control: "cti",
    Session: "session",
    ChannelGroup: "channelgroup",
    Channel: "channel",
}
#: the kinds of an interaction's and a leg's destinations, each by the
#: first word of its messages' names: a leg's, and those of further sessions
_CALL_KIND_OF: Final[dict[type, str]] = {
    Conversation: "conversation",
    InteractionView: "interaction",
    ConversationView: "conversation",
}
_A_KIND_NAMED: Final = {
    "interaction": "an interaction",
    "conversation": "a conversation",
    "cti": "the control destination",
    "session": "a session",
    "channelgroup": "a channel group",
    "channel": "a channel",
}
_A_KIND: Final = {cls: _A_KIND_NAMED[name] for cls, name in _KIND_OF.items()}

#: The engine clock stays below this many seconds (D-BAD).
MAX_CLOCK: Final = 1e12
#: D-DATA: how many dropped keys an error output names (then "and N more")
SHOWN_DROPPED: Final = 20

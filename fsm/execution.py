"""Executing requests, one at a time per interaction (D-SERIAL).

:class:`Execution` runs a request whose turn it is: the state check
against the transition table, the request guards of the catalog, the
request's effect or trigger, the switch operation it asks for and when that
counts as done (the catalog's ``done`` column, D-ASYNC), the queue behind
it, the clock's deadlines, and dispose (D-LIFE-4). It is given the shared
state, the outbox and the firing of interaction triggers, all below it;
what the bridge sends is read and addressed above it (``fsm.engine``), and
the switch side (``fsm.switching``) calls down into it when a leg is named
or a state event may complete a request.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable
from typing import Any, Final

from fsm import machines as m
from fsm.catalog import (
    CATALOG,
    COMMAND_LEGS,
    DONE_WHEN,
    GUARDS_OF,
    RESPONSE_BODIES,
    GuardContext,
    RequestSpec,
    first_refusal,
    headers_of,
    read_properties,
    switch_refusal,
)
from fsm.errors import Refusal
from fsm.firing import Firing
from fsm.machines import CONVERSATION, INTERACTION, LIFECYCLE, top
from fsm.messages import Headers, event
from fsm.model import (
    Conversation,
    ConversationDestination,
    ConversationView,
    Interaction,
    InteractionDestination,
    InteractionView,
    Pending,
    Request,
)
from fsm.outbox import Outbox
from fsm.outputs import describe
from fsm.state import EngineState, bounded_add


class Execution:
    """Runs requests for the layer above; calls only the layers below."""

    __slots__ = ("firing", "machine", "outbox", "state")

    def __init__(
        self, state: EngineState, outbox: Outbox, firing: Firing, machine: m.StateMachine = INTERACTION
    ) -> None:
        self.machine = machine
        self.state = state
        self.outbox = outbox
        self.firing = firing

    def pump(self, interaction: Interaction) -> None:
        """Start the requests waiting on ``interaction`` while none executes."""
        while interaction.executing is None and interaction.waiting:
            if interaction.lifecycle == m.DISPOSED:
                return
            request = interaction.next_request()
            spec = CATALOG[request.name]
            props = read_properties(spec, request.properties)
            self.execute(interaction, spec, headers_of(request), props)

    def execute(
        self,
        interaction: Interaction,
        spec: RequestSpec,
        headers: Headers,
        props: Any,
        dest: InteractionDestination | ConversationDestination | None = None,
    ) -> None:
        """Run one request whose turn it is. ``dest`` is its destination when
        the caller has just looked it up; a queued request looks it up again
        (it may have been disposed meanwhile)."""
        if dest is None:
            found = self.state.destinations.get(headers.target)
            if found is None:
                self.outbox.refuse(headers, "D-LIFE-4", f"destination {headers.target} was disposed")
                return
            assert isinstance(found, Interaction | InteractionView | Conversation | ConversationView)
            dest = found
        if spec.machine == "lifecycle":
            self.dispose(headers, interaction, dest)
            return
        conversation: Conversation | None
        model: Interaction | Conversation
        if type(dest) is Conversation:
            conversation, machine, model = dest, CONVERSATION, dest
        elif type(dest) is ConversationView:  # a further session's destination of the leg (D-SESS-1)
            conversation = model = interaction.legs[dest.call]
            machine = CONVERSATION
        else:
            conversation, machine, model = None, self.machine, interaction
        assert spec.trigger is not None
        state = self.state
        if spec.op is not None and state.control.state != m.C_STARTED:
            unreachable = switch_refusal(spec, state.control.state)  # D-CTRL-3
            assert unreachable is not None
            self.outbox.refuse_with(headers, unreachable)
            return
        policy = state.policy
        checked = machine.check(model.state, spec.trigger, policy)
        if isinstance(checked, Refusal):
            self.outbox.refuse_with(headers, _explain(machine, spec, model.state, checked))
            return
        guards = GUARDS_OF[spec.name]
        if guards:
            refusal = first_refusal(guards, GuardContext(interaction, conversation, props, policy, dest))
            if refusal is not None:
                self.outbox.refuse_with(headers, refusal)
                return
        effect = EFFECTS.get(spec.name)
        if effect is not None:
            effect(self, headers, interaction, dest, props)
            return
        if conversation is not None:
            CONVERSATION.fire(conversation, spec.trigger)
        else:
            self.firing.fire(interaction, spec.trigger)
        self._send_for(headers, spec, interaction, conversation, props)

    def _send_for(
        self,
        headers: Headers,
        spec: RequestSpec,
        interaction: Interaction,
        conversation: Conversation | None,
        props: Any,
    ) -> None:
        """Issue the request's switch operation and wait for it to be done,
        or answer at once when it asks nothing of the switch."""
        if spec.op is None:
            self.outbox.respond(headers)
            return
        pending = Pending(request=_request_of(headers))
        call, other, other_field = COMMAND_LEGS[spec.legs](interaction, conversation)
        pending.call, pending.other = call, other
        extra = {name: getattr(props, name) for name in spec.arguments}
        if other_field is not None:
            assert other is not None
            extra[other_field] = other
        assert pending.call is not None
        command = self.outbox.command(spec.op, pending.call, **extra)
        pending.command = command.id
        state = self.state
        if spec.done is None and not state.switch_acknowledges:
            self.outbox.respond(headers)  # the switch takes it at once, reporting nothing
            return
        pending.deadline = state.clock + state.policy.request_timeout
        interaction.executing = pending
        state.awaited[command.id] = interaction.id
        if spec.done == "leg_named":  # D-ASYNC: the switch names the new leg
            state.awaiting_leg[command.id] = interaction.id
        heapq.heappush(state.deadlines, (pending.deadline, interaction.id, headers.request_id or ""))

    def finish(self, interaction: Interaction, refusal: Refusal | None = None) -> None:
        """Answer the executing request: SUCCESS with the body its catalog
        row names, or FAILURE with ``refusal``."""
        pending = interaction.executing
        assert pending is not None
        interaction.executing = None
        state = self.state
        if pending.command is not None:
            state.awaited.pop(pending.command, None)
            state.awaiting_leg.pop(pending.command, None)
        self._prune_deadlines()
        request = pending.request
        if refusal is None:
            builder = CATALOG[request.name].body
            body = RESPONSE_BODIES[builder](interaction) if builder is not None else None
            self.outbox.respond(request, body)  # a response needs its name, target and requestId
        else:
            self.outbox.refuse_with(headers_of(request), refusal)

    def _prune_deadlines(self) -> None:
        """D-BOUND: the deadline heap keeps entries of finished requests until
        the clock passes them; when they outnumber the live ones, rebuild it."""
        state = self.state
        deadlines = state.deadlines
        if len(deadlines) > 2 * len(state.awaited) + 64:
            live = set()
            for interaction_id in state.awaited.values():
                pending = state.interactions[interaction_id].executing
                if pending is not None and pending.deadline is not None:
                    live.add((pending.deadline, interaction_id, pending.request.request_id))
            deadlines[:] = [d for d in deadlines if d in live]
            heapq.heapify(deadlines)

    def check_done(self, interaction: Interaction) -> None:
        """Whether what just changed completes the executing request (its
        catalog row's ``done``). A consult that fails before the switch
        named its leg is abandoned: a leg named for it later is released."""
        pending = interaction.executing
        if pending is None:
            return
        spec = CATALOG[pending.request.name]
        if spec.done is None:
            return
        outcome = DONE_WHEN[spec.done](interaction, pending)
        if outcome is True:
            self.finish(interaction)
        elif isinstance(outcome, Refusal):
            if pending.command in self.state.awaiting_leg:
                self.abandon(interaction, pending)
            self.finish(interaction, outcome)

    def advance_to(self, end: float) -> None:
        """Let engine time reach ``end``: deadline by deadline, so that a
        request that starts when the one before it timed out gets its timer
        from that moment (D-SERIAL, D-ASYNC)."""
        state = self.state
        deadlines = state.deadlines
        while deadlines and deadlines[0][0] <= end:
            deadline, interaction_id, request_id = heapq.heappop(deadlines)
            state.clock = max(state.clock, deadline)
            interaction = state.interactions.get(interaction_id)
            if interaction is None or interaction.executing is None:
                continue
            if interaction.executing.request.request_id != request_id:
                continue
            self._time_out(interaction)
        state.clock = end

    def _time_out(self, interaction: Interaction) -> None:
        pending = interaction.executing
        assert pending is not None
        if interaction.state == m.S_REQUESTED:
            self.abandon(interaction, pending)
            self.firing.fire(interaction, "consult_refused")
        timeout = self.state.policy.request_timeout
        self.finish(
            interaction,
            Refusal(
                "D-ASYNC",
                f"the switch did not complete {pending.request.name.rpartition('.')[2]} within "
                f"{timeout:g} seconds",
            ),
        )
        self.pump(interaction)

    def abandon(self, interaction: Interaction, pending: Pending) -> None:
        """A consult failed or timed out before its leg was named: its
        command's result may still name the leg; and for request_timeout the
        first new leg while the interaction has a live one is taken as it
        (D-ASYNC). Either is released, never announced."""
        if pending.command is not None:
            state = self.state
            limit = state.policy.max_disposed
            state.abandoned[pending.command] = interaction.id
            state.abandoned_until[pending.command] = state.clock + state.policy.request_timeout
            while len(state.abandoned) > limit:
                del state.abandoned[next(iter(state.abandoned))]
            while len(state.abandoned_until) > limit:
                del state.abandoned_until[next(iter(state.abandoned_until))]

    # Effects of requests that do more than fire a trigger and ask the switch.

    def _do_setdata(
        self, headers: Headers, interaction: Interaction, _: object, props: dict[str, str]
    ) -> None:
        self.firing.fire(interaction, "setdata")
        self.outbox.respond(headers)
        self._merge_data(interaction, props)

    def _do_complete(
        self, headers: Headers, interaction: Interaction, _: object, props: dict[str, str]
    ) -> None:
        self._merge_data(interaction, props)
        self.firing.fire(interaction, "complete")
        self.outbox.respond(headers)

    def _merge_data(self, interaction: Interaction, props: dict[str, str]) -> None:
        changed = {k: v for k, v in props.items() if interaction.data.get(k) != v}
        if not changed:
            return
        interaction.data.update(changed)
        for dest in self.state.shown(interaction):  # D-SESS-1: every destination is told
            if dest.lifecycle == m.INITIALIZED:
                # D-BODY: the changed keys only
                self.outbox.emit(event("interaction.datachanged", dest.target, {"interaction-data": changed}))

    def _do_createconversation(
        self, headers: Headers, interaction: Interaction, dest: InteractionDestination, props: Any
    ) -> None:
        """D-CC-2: the leg's conversation destination in the registry of the
        interaction destination it was asked of (one per session, D-SESS-1)."""
        call = props.nativeid
        leg = dest.legs[call]
        self.firing.fire(interaction, "createconversation")
        if leg.bridge_id is None:
            leg.bridge_id = props.id
            leg.target = target = self.state.targets.conversation(dest.target, props.id)
            LIFECYCLE.fire(leg, "create")
            self.state.destinations[target] = leg
        dest.created(call)
        self.outbox.respond(headers)

    def dispose_now(
        self,
        headers: Headers,
        interaction: Interaction,
        dest: InteractionDestination | ConversationDestination,
    ) -> None:
        """D-SERIAL, D-LIFE-4: a dispose while requests are executing or
        queued: each one on the disposed destination or below it is answered
        FAILURE first (an executing consult's leg, if the switch names it, is
        released), then the dispose runs; the others go on."""
        target = dest.target
        assert target is not None
        self._fail_under(interaction, target, f"destination {target} was disposed")
        self.dispose(headers, interaction, dest)
        if interaction.lifecycle != m.DISPOSED:
            self.pump(interaction)

    def _fail_under(self, interaction: Interaction, target: str, reason: str) -> None:
        """Each request of ``interaction`` sent to ``target`` or below it,
        executing or waiting, is answered FAILURE (D-LIFE-4)."""
        pending = interaction.executing
        if pending is not None and pending.request.under(target):
            self._fail_executing(interaction, Refusal("D-LIFE-4", reason))
        kept = []
        for request in interaction.waiting:
            if request.under(target):
                self.outbox.refuse(headers_of(request), "D-LIFE-4", reason)
            else:
                kept.append(request)
        interaction.keep_waiting(kept)

    def dispose(
        self,
        headers: Headers,
        interaction: Interaction,
        dest: InteractionDestination | ConversationDestination,
    ) -> None:
        """D-LIFE-4: forget the destination; calls are not hung up. The call
        stays while another session's destination shows it (D-SESS-1)."""
        self.outbox.respond(headers)
        LIFECYCLE.fire(dest, "dispose")
        if isinstance(dest, Conversation | ConversationView):
            assert dest.target is not None
            self.state.forget_target(dest.target)
            return
        if self.state.views and interaction.id in self.state.views:
            self._withdraw(interaction, dest)
            return
        self._forget(interaction)

    def withdraw(self, interaction: Interaction, dest: InteractionDestination, reason: str) -> None:
        """D-SESS-1, D-LIFE-4: the channel above one of several destinations
        of ``interaction`` was torn down: its requests are answered FAILURE
        and that destination goes; the call stays with the others."""
        self._fail_under(interaction, dest.target, reason)
        LIFECYCLE.fire(dest, "dispose")
        self._withdraw(interaction, dest)

    def _withdraw(self, interaction: Interaction, dest: InteractionDestination) -> None:
        """One destination of ``interaction`` goes, with its conversation
        destinations; when it is the first (the interaction itself), the next
        one takes its place (D-SESS-1)."""
        state = self.state
        views = state.views[interaction.id]
        if type(dest) is InteractionView:
            views.remove(dest)
            gone: list[Conversation | ConversationView] = list(dest.legs.values())
        else:
            gone = list(interaction.legs.values())
        for leg in gone:
            if leg.target is not None and leg.lifecycle != m.DISPOSED:
                LIFECYCLE.fire(leg, "dispose")
                state.forget_target(leg.target)
        state.forget_target(dest.target)
        if dest is interaction:
            self._promote(interaction, views.pop(0))
        if not views:
            del state.views[interaction.id]

    def _promote(self, interaction: Interaction, view: InteractionView) -> None:
        """``view`` becomes the interaction's first destination: its target,
        lifecycle, requestIds and registry, and its legs' destinations."""
        state = self.state
        interaction.target = view.target
        interaction.lifecycle = view.lifecycle
        interaction.request_ids = view.request_ids
        interaction.init_pending = view.init_pending
        interaction.creatable = view.creatable
        state.destinations[view.target] = interaction
        for call, leg in interaction.legs.items():
            seen = view.legs[call]
            leg.bridge_id, leg.target, leg.lifecycle = seen.bridge_id, seen.target, seen.lifecycle
            leg.request_ids = seen.request_ids
            if seen.target is not None and seen.lifecycle != m.DISPOSED:
                state.destinations[seen.target] = leg

    def _fail_executing(self, interaction: Interaction, refusal: Refusal) -> None:
        """The executing request is answered FAILURE; a consult still waiting
        for its leg is abandoned (D-ASYNC: a leg named later is released)."""
        pending = interaction.executing
        assert pending is not None
        if interaction.state == m.S_REQUESTED:
            self.abandon(interaction, pending)
            self.firing.fire(interaction, "consult_refused")
        self.finish(interaction, refusal)

    def drop(self, interaction: Interaction, reason: str) -> None:
        """D-LIFE-4: the channel above ``interaction`` was torn down: its
        requests are answered FAILURE and it is forgotten with its legs."""
        if interaction.executing is not None:
            self._fail_executing(interaction, Refusal("D-LIFE-4", reason))
        LIFECYCLE.fire(interaction, "dispose")
        self._forget(interaction)

    def detach(self, interaction: Interaction, reason: str) -> Interaction:
        """D-LIFE-4, D-NEW: the channel destination above a live
        interaction was torn down. Its destination goes, with its conversation
        destinations (its requests answered FAILURE); its call does not (a
        dispose hangs up nothing): the call's state and legs carry on in a new
        model with no destination, shown by no channel, until the device's
        next channel destination lists it in its init. Returns that model."""
        if interaction.executing is not None:
            self._fail_executing(interaction, Refusal("D-LIFE-4", reason))
        for request in interaction.waiting:
            self.outbox.refuse(headers_of(request), "D-LIFE-4", reason)
        interaction.keep_waiting([])
        state = self.state
        call = Interaction(
            id=interaction.id,
            target="",
            state=interaction.state,
            device=interaction.device,
            lifecycle=m.ABSENT,
            data=interaction.data,
            primary=interaction.primary,
            consult=interaction.consult,
        )
        for call_id, leg in interaction.legs.items():
            if leg.target is not None and leg.lifecycle != m.DISPOSED:
                LIFECYCLE.fire(leg, "dispose")
                state.forget_target(leg.target)
            call.legs[call_id] = kept = Conversation(
                call=leg.call, interaction_id=leg.interaction_id, role=leg.role, state=leg.state
            )
            if state.calls.get(call_id) is leg:
                state.calls[call_id] = kept
        LIFECYCLE.fire(interaction, "dispose")
        state.forget_target(interaction.target)
        state.interactions[call.id] = call
        state.index(call)
        return call

    def fail_all(self, refusal: Refusal) -> None:
        """Every interaction request waiting on the switch is answered with
        ``refusal`` at once (D-CTRL-3: the link went down)."""
        state = self.state
        for interaction_id in list(dict.fromkeys(state.awaited.values())):
            interaction = state.interactions.get(interaction_id)
            if interaction is None or interaction.executing is None:
                continue
            self._fail_executing(interaction, refusal)
            self.pump(interaction)

    def _forget(self, interaction: Interaction) -> None:
        state = self.state
        device = state.devices.get(interaction.device)
        if device is not None:
            device.interactions.pop(interaction.id, None)
        for leg in interaction.legs.values():
            if leg.target is not None and leg.lifecycle != m.DISPOSED:
                LIFECYCLE.fire(leg, "dispose")
                state.forget_target(leg.target)
            state.calls.pop(leg.call, None)
            bounded_add(state.disposed_calls, leg.call, state.policy.max_disposed)
        if interaction.target:
            state.forget_target(interaction.target)
        del state.interactions[interaction.id]
        state.index(interaction)
        for request in interaction.waiting:
            self.outbox.refuse(headers_of(request), "D-LIFE-4", f"destination {request.target} was disposed")
        interaction.keep_waiting([])


#: request name -> the method that carries it out (given the headers, the
#: interaction, the destination the request was sent to and its properties), for requests that do
#: more than fire their trigger and ask the switch (tests/test_tables.py
#: checks each is a request of the catalog)
EFFECTS: Final[dict[str, Callable[..., None]]] = {
    "interaction.request.setdata": Execution._do_setdata,
    "interaction.request.complete": Execution._do_complete,
    "interaction.request.createconversation": Execution._do_createconversation,
}


def _explain(machine: m.StateMachine, spec: RequestSpec, state: str, refusal: Refusal) -> Refusal:
    """A refusal by a transition table as the bridge is told it. A request
    whose top-level state is right but whose substate is not cites the
    request's substate rule (consult while one is active: D-CONS-2)."""
    if refusal.guard is not None:
        return refusal
    assert spec.trigger is not None
    tops, allowed = _allowed(machine, spec.trigger)
    rule = refusal.rule
    if spec.substate_rule and top(state) in tops:
        rule = spec.substate_rule
    return Refusal(rule, f"the {machine.name} is {describe(state)}; {spec.short} needs {allowed}")


@functools.cache
def _allowed(machine: m.StateMachine, trigger: str) -> tuple[frozenset[str], str]:
    """The top-level states that allow ``trigger``, and all of them in words."""
    sources = machine.sources(trigger)
    return frozenset(top(s) for s in sources), m.join_words(dict.fromkeys(describe(s) for s in sources))


def _request_of(headers: Headers) -> Request:
    assert headers.request_id is not None
    return Request(name=headers.name, target=headers.target, request_id=headers.request_id)

"""Executing requests, one at a time per interaction (D-SERIAL).

:class:`ExecutionSide` is the part of :class:`fsm.engine.Engine` that runs a
request whose turn it is: the state check against the transition table,
the request guards of the catalog, the request's effect or trigger, the
switch operation it asks for and when that counts as done (D-ASYNC), the
queue behind it, and dispose (D-LIFE-4). What the bridge sends is read and
addressed in ``fsm.engine``; what the switch reports is in ``fsm.switching``.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable
from typing import Any, Final

from fsm import machines as m
from fsm.catalog import (
    CATALOG,
    DONE_WHEN,
    GUARDS,
    GuardContext,
    RequestSpec,
    read_properties,
)
from fsm.frozen import builder
from fsm.machines import CONVERSATION, INTERACTION, LIFECYCLE, Refusal, top
from fsm.messages import Headers, build_headers, event
from fsm.model import NO_CALLS, NO_REQUESTS, Conversation, Interaction, Pending, Request
from fsm.outputs import Output, Targets, build_to_switch, describe
from fsm.policy import Policy
from fsm.switch_events import Command
from fsm.switching import SwitchSide, bounded_add

_new_tuple: Final = tuple.__new__
_build_command: Final = builder(Command)


class ExecutionSide(SwitchSide):
    """Request execution; a base of :class:`fsm.engine.Engine`, which
    provides the state and the methods declared here."""

    policy: Policy
    targets: Targets
    switch_acknowledges: bool
    clock: float
    _deadlines: list[tuple[float, str, str]]
    _out: list[Output]

    # Provided by the engine.
    def _respond(self, headers: Headers | Request, body: dict[str, Any] | None = None) -> None:
        raise NotImplementedError

    def _refuse(self, headers: Headers, rule: str, reason: str, *, prefix: bool = True) -> None:
        raise NotImplementedError

    def _pump(self, interaction: Interaction) -> None:
        while interaction.executing is None and interaction.waiting:
            if interaction.lifecycle == m.DISPOSED:
                return
            request = interaction.waiting.pop(0)
            if not interaction.waiting:
                interaction.waiting = NO_REQUESTS
            spec = CATALOG[request.name]
            props = read_properties(spec, request.properties)
            self._execute(interaction, spec, _headers_of(request), props)

    def _execute(
        self,
        interaction: Interaction,
        spec: RequestSpec,
        headers: Headers,
        props: Any,
        dest: Interaction | Conversation | None = None,
    ) -> None:
        """Run one request whose turn it is. ``dest`` is its destination when
        the caller has just looked it up; a queued request looks it up again
        (it may have been disposed meanwhile)."""
        if dest is None:
            dest = self.destinations.get(headers.target)
            if dest is None:
                self._refuse(headers, "D-LIFE-4", f"destination {headers.target} was disposed")
                return
        if spec.machine == "lifecycle":
            self._dispose(headers, interaction, dest)
            return
        conversation: Conversation | None
        model: Interaction | Conversation
        if type(dest) is Conversation:
            conversation, machine, model = dest, CONVERSATION, dest
        else:
            conversation, machine, model = None, INTERACTION, interaction
        assert spec.trigger is not None
        checked = machine.check(model.state, spec.trigger, self.policy)
        if isinstance(checked, Refusal):
            self._refuse(headers, *_explain(machine, spec, model.state, checked))
            return
        guards = _GUARDS_OF[spec.name]
        if guards:
            context: GuardContext = _new_tuple(GuardContext, (interaction, conversation, props, self.policy))
            for check, rule in guards:
                reason_or_none = check(context)
                if reason_or_none is not None:
                    self._refuse(headers, rule, reason_or_none)
                    return
        effect = _EFFECTS.get(spec.name)
        if effect is not None:
            effect(self, headers, interaction, conversation, props)
            return
        if conversation is not None:
            CONVERSATION.fire(conversation, spec.trigger)
        else:
            self._fire(interaction, spec.trigger)
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
            self._respond(headers)
            return
        pending = Pending(request=_request_of(headers))
        extra: dict[str, str] = {}
        if conversation is not None:
            pending.call = conversation.call
            for field in ("destination", "digits"):
                if hasattr(props, field):
                    extra[field] = getattr(props, field)
        elif spec.op == "alternate":
            primary_active = interaction.state == m.S_PRIMARY
            pending.call = interaction.primary if primary_active else interaction.consult
            pending.other = interaction.consult if primary_active else interaction.primary
            assert pending.other is not None
            extra["other"] = pending.other
        else:
            pending.call = interaction.primary
            if spec.op in ("transfer", "conference"):
                pending.other = interaction.consult
                assert pending.other is not None
                extra["consult"] = pending.other
            if spec.op == "consult":
                extra["destination"] = props.destination
        assert pending.call is not None
        command = self._command(spec.op, pending.call, **extra)
        pending.command = command.id
        if spec.done is None and not self.switch_acknowledges and spec.op != "consult":
            self._respond(headers)  # the switch takes it at once, reporting nothing
            return
        pending.deadline = self.clock + self.policy.request_timeout
        interaction.executing = pending
        self.awaited[command.id] = interaction.id
        if spec.op == "consult":
            self.awaiting_leg[command.id] = interaction.id
        heapq.heappush(self._deadlines, (pending.deadline, interaction.id, headers.request_id or ""))

    def _command(self, op: str, call: str, **extra: str) -> Command:
        """A command to the switch, ``cmd-N`` counting from 1 (H-CMD)."""
        self.commands_issued += 1
        command = _build_command(id=f"cmd-{self.commands_issued}", op=op, call=call, **extra)
        self._out.append(build_to_switch(command))
        return command

    def _finish(self, interaction: Interaction, *, error: str | None = None, rule: str = "") -> None:
        """Answer the executing request and start the next one."""
        pending = interaction.executing
        assert pending is not None
        interaction.executing = None
        if pending.command is not None:
            self.awaited.pop(pending.command, None)
            self.awaiting_leg.pop(pending.command, None)
        self._prune_deadlines()
        request = pending.request
        if error is None:
            body = None
            if request.name == "interaction.request.consult" and interaction.consult:
                body = {"nativeid": interaction.consult}  # D-BODY
            self._respond(request, body)  # a response needs its name, target and requestId
        else:
            self._refuse(_headers_of(request), rule, error)

    def _prune_deadlines(self) -> None:
        """D-BOUND: the deadline heap keeps entries of finished requests until
        the clock passes them; when they outnumber the live ones, rebuild it."""
        if len(self._deadlines) > 2 * len(self.awaited) + 64:
            live = set()
            for interaction_id in self.awaited.values():
                pending = self.interactions[interaction_id].executing
                if pending is not None and pending.deadline is not None:
                    live.add((pending.deadline, interaction_id, pending.request.request_id))
            self._deadlines = [d for d in self._deadlines if d in live]
            heapq.heapify(self._deadlines)

    def _check_done(self, interaction: Interaction) -> None:
        pending = interaction.executing
        if pending is None:
            return
        spec = CATALOG[pending.request.name]
        if spec.done is None:
            return
        outcome = DONE_WHEN[spec.done](interaction, pending)
        if outcome is True:
            self._finish(interaction)
        elif isinstance(outcome, str):
            self._finish(interaction, error=outcome, rule="D-ASYNC")

    def _time_out(self, interaction: Interaction) -> None:
        pending = interaction.executing
        assert pending is not None
        if interaction.state == m.S_REQUESTED:
            self._abandon(interaction, pending)
            self._fire(interaction, "consult_refused")
        self._finish(
            interaction,
            error=f"the switch did not complete {pending.request.name.rpartition('.')[2]} within "
            f"{self.policy.request_timeout:g} seconds",
            rule="D-ASYNC",
        )
        self._pump(interaction)

    # Effects of requests that do more than fire a trigger and ask the switch.

    def _do_setdata(
        self, headers: Headers, interaction: Interaction, _: object, props: dict[str, str]
    ) -> None:
        self._fire(interaction, "setdata")
        self._respond(headers)
        self._merge_data(interaction, props)

    def _do_complete(
        self, headers: Headers, interaction: Interaction, _: object, props: dict[str, str]
    ) -> None:
        self._merge_data(interaction, props)
        self._fire(interaction, "complete")
        self._respond(headers)

    def _merge_data(self, interaction: Interaction, props: dict[str, str]) -> None:
        changed = {k: v for k, v in props.items() if interaction.data.get(k) != v}
        if not changed:
            return
        interaction.data.update(changed)
        if interaction.lifecycle == m.INITIALIZED:
            # D-BODY: the changed keys only
            self._emit(event("interaction.datachanged", interaction.target, {"interaction-data": changed}))

    def _do_createconversation(
        self, headers: Headers, interaction: Interaction, _: object, props: Any
    ) -> None:
        call = props.nativeid
        leg = interaction.legs[call]
        self._fire(interaction, "createconversation")
        if leg.bridge_id is None:
            leg.bridge_id = props.id
            leg.target = target = self.targets.conversation(interaction.target, props.id)
            LIFECYCLE.fire(leg, "create")
            self.destinations[target] = leg
        if call in interaction.init_pending:
            interaction.init_pending = _without(interaction.init_pending, call)
        if call in interaction.creatable:
            interaction.creatable = _without(interaction.creatable, call)
        self._respond(headers)

    def _dispose_now(
        self, headers: Headers, interaction: Interaction, dest: Interaction | Conversation
    ) -> None:
        """D-SERIAL, D-LIFE-4: a dispose while requests are executing or
        queued: each one on the disposed destination or below it is answered
        FAILURE first (an executing consult's leg, if the switch names it, is
        released), then the dispose runs; the others go on."""
        below = f"{dest.target}."
        reason = f"destination {dest.target} was disposed"
        pending = interaction.executing
        if pending is not None and (
            pending.request.target == dest.target or pending.request.target.startswith(below)
        ):
            if interaction.state == m.S_REQUESTED:
                self._abandon(interaction, pending)
                self._fire(interaction, "consult_refused")
            self._finish(interaction, error=reason, rule="D-LIFE-4")
        kept = []
        for request in interaction.waiting:
            if request.target == dest.target or request.target.startswith(below):
                self._refuse(_headers_of(request), "D-LIFE-4", reason)
            else:
                kept.append(request)
        interaction.waiting = kept or NO_REQUESTS
        self._dispose(headers, interaction, dest)
        if interaction.lifecycle != m.DISPOSED:
            self._pump(interaction)

    def _dispose(self, headers: Headers, interaction: Interaction, dest: Interaction | Conversation) -> None:
        """D-LIFE-4: forget the destination; calls are not hung up."""
        self._respond(headers)
        LIFECYCLE.fire(dest, "dispose")
        if isinstance(dest, Conversation):
            assert dest.target is not None
            self._forget_target(dest.target)
            return
        for leg in interaction.legs.values():
            if leg.target is not None and leg.lifecycle != m.DISPOSED:
                LIFECYCLE.fire(leg, "dispose")
                self._forget_target(leg.target)
            self.calls.pop(leg.call, None)
            bounded_add(self.disposed_calls, leg.call, self.policy.max_disposed)
        self._forget_target(interaction.target)
        del self.interactions[interaction.id]
        self._index(interaction)
        for request in interaction.waiting:
            self._refuse(_headers_of(request), "D-LIFE-4", f"destination {request.target} was disposed")
        interaction.waiting = NO_REQUESTS

    def _forget_target(self, target: str) -> None:
        self.destinations.pop(target, None)
        bounded_add(self.disposed_targets, target, self.policy.max_disposed)


#: request name -> the method that carries it out, for requests that
#: do more than fire their trigger and ask the switch (``_do_<short name>``)
_EFFECTS: Final[dict[str, Any]] = {
    name: effect
    for name, spec in CATALOG.items()
    if (effect := ExecutionSide.__dict__.get(f"_do_{spec.short}")) is not None
}
#: request name -> the check and rule of each of its request guards, in order (looked up once)
_GUARDS_OF: Final[dict[str, tuple[tuple[Callable[[GuardContext], str | None], str], ...]]] = {
    name: tuple((GUARDS[guard].check, GUARDS[guard].rule) for guard in spec.guards)
    for name, spec in CATALOG.items()
}


def _explain(machine: m.StateMachine, spec: RequestSpec, state: str, refusal: Refusal) -> tuple[str, str]:
    """The rule and reason of a refusal by a transition table. A request
    whose top-level state is right but whose substate is not cites the
    request's substate rule (consult while one is active: D-CONS-2)."""
    if refusal.guard is not None:
        return refusal.rule, refusal.reason
    assert spec.trigger is not None
    tops, allowed = _allowed(machine, spec.trigger)
    rule = refusal.rule
    if spec.substate_rule and top(state) in tops:
        rule = spec.substate_rule
    return rule, f"the {machine.name} is {describe(state)}; {spec.short} needs {allowed}"


@functools.cache
def _allowed(machine: m.StateMachine, trigger: str) -> tuple[frozenset[str], str]:
    """The top-level states that allow ``trigger``, and all of them in words."""
    sources = machine.sources(trigger)
    return frozenset(top(s) for s in sources), m.join_words(dict.fromkeys(describe(s) for s in sources))


def _without(calls: dict[str, None], call: str) -> dict[str, None]:
    """``calls`` less ``call``: a smaller dict, or the shared empty one."""
    if len(calls) == 1:
        return NO_CALLS
    rest = dict(calls)
    del rest[call]
    return rest


def _headers_of(request: Request) -> Headers:
    return build_headers(CATALOG[request.name].kind, request.name, request.target, request.request_id)


def _request_of(headers: Headers) -> Request:
    assert headers.request_id is not None
    return Request(name=headers.name, target=headers.target, request_id=headers.request_id)

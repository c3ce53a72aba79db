"""The sans-IO engine: the client side of the telephony interaction destination.

Feed it what the bridge sends (:meth:`Engine.receive_bridge`), what the
switch reports (:meth:`Engine.receive_switch`) and the passing of time
(:meth:`Engine.advance`); each call returns the outputs it caused, in order:
messages to the bridge, commands to the switch, and errors about input it
could not use. The engine sends nothing itself, reads no clock and never
raises on bad input.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Mapping
from typing import Any, Final

from fsm import machines as m
from fsm.catalog import (
    CATALOG,
    DONE_WHEN,
    GUARDS,
    FreeProperties,
    Guard,
    GuardContext,
    NoProperties,
    RequestSpec,
)
from fsm.errors import LocalProtocolError, RemoteProtocolError
from fsm.frozen import builder
from fsm.intake import Defect, read_message
from fsm.machines import CONVERSATION, INTERACTION, LIFECYCLE, TOP_OF, Refusal, top
from fsm.messages import (
    QUERY,
    RESPONSE,
    SUCCESS,
    Headers,
    Message,
    build_headers,
    build_message,
    copy_data,
    event,
    response,
)
from fsm.model import NO_CALLS, NO_REQUESTS, Conversation, Interaction, Pending, Request
from fsm.outputs import (
    BridgeError,
    Output,
    SwitchError,
    Targets,
    ToBridge,
    ToSwitch,
    build_to_bridge,
    build_to_switch,
    describe,
)
from fsm.policy import Policy
from fsm.switch_events import Command, SwitchEvent, parse_switch_event
from fsm.switching import SwitchSide, bounded_add

__all__ = [
    "BridgeError",
    "Engine",
    "Output",
    "SwitchError",
    "Targets",
    "ToBridge",
    "ToSwitch",
    "describe",
]


_new_tuple: Final = tuple.__new__
_build_command: Final = builder(Command)


class Engine(SwitchSide):
    """One client engine: every interaction of one channel, and their legs."""

    def __init__(
        self,
        policy: Policy | None = None,
        targets: Targets | None = None,
        *,
        switch_acknowledges: bool = False,
    ) -> None:
        self.policy = policy or Policy()
        self.targets = targets or Targets()
        #: True when the switch answers every command with a `result` event
        #: (the scripted switch); False when commands take effect at once and
        #: only their events report them (the simulated switch).
        self.switch_acknowledges = switch_acknowledges
        self.clock = 0.0
        self.interactions: dict[str, Interaction] = {}
        self.destinations: dict[str, Interaction | Conversation] = {}
        self.calls: dict[str, Conversation] = {}
        self.disposed_targets: dict[str, None] = {}
        self.disposed_calls: dict[str, None] = {}
        #: legs the engine released on its own (a consult named too late)
        self.released: dict[str, None] = {}
        #: awaited command id -> interaction id
        self.awaited: dict[str, str] = {}
        #: consult command that failed or timed out before naming its leg ->
        #: interaction id; a leg named for it later is released (D-ASYNC)
        self.abandoned: dict[str, str] = {}
        #: consult commands still waiting for the switch to name their leg
        self.awaiting_leg: dict[str, str] = {}
        self.commands_issued = 0
        #: STARTED.none interactions that a consult made on the phone may
        #: join, those whose primary is held first; newest change last
        self._joinable_held: dict[str, None] = {}
        self._joinable_other: dict[str, None] = {}
        self._deadlines: list[tuple[float, str, str]] = []
        self._out: list[Output] = []

    # ------------------------------------------------------------------
    # The sans-IO surface.

    def receive_bridge(self, raw: object) -> list[Output]:
        """A message from the bridge: bytes, text or a decoded JSON object."""
        out: list[Output] = []
        self._out = out
        self._bridge_message(raw)
        self._out = []
        return out

    def receive_switch(self, raw: Mapping[str, Any] | SwitchEvent) -> list[Output]:
        """An event from the switch, decoded JSON or a :class:`SwitchEvent`."""
        self._out = []
        try:
            ev = raw if isinstance(raw, SwitchEvent) else parse_switch_event(raw)
        except RemoteProtocolError as exc:
            self._out.append(SwitchError(exc.rule, exc.message))
            return self._take()
        self._switch_event(ev)
        return self._take()

    def advance(self, seconds: float) -> list[Output]:
        """Let ``seconds`` of engine time pass; pending requests may time out
        (D-ASYNC)."""
        if not 0 <= seconds < float("inf"):
            raise LocalProtocolError(f"clock advance {seconds!r} must be finite and >= 0", "D-ASYNC")
        self._out = []
        self.clock += seconds
        while self._deadlines and self._deadlines[0][0] <= self.clock:
            _, interaction_id, request_id = heapq.heappop(self._deadlines)
            interaction = self.interactions.get(interaction_id)
            if interaction is None or interaction.executing is None:
                continue
            if interaction.executing.request.request_id != request_id:
                continue
            self._time_out(interaction)
        return self._take()

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------
    # Bridge messages.

    def _bridge_message(self, raw: object) -> None:
        read = read_message(raw, self.policy.max_frame_size)
        if isinstance(read, Defect):
            if read.echo is None:
                self._out.append(BridgeError(read.rule, read.message))
            else:
                self._refuse(read.echo, read.rule, read.message, prefix=False)
            return
        headers, spec, properties, props = read
        request_id = headers.request_id
        assert request_id is not None
        target = headers.target
        dest = self.destinations.get(target)
        if dest is None:
            if target in self.disposed_targets:
                self._refuse(headers, "D-LIFE-4", f"destination {target} was disposed")
            else:
                self._refuse(headers, "D-TARGET", f"no destination {target!r} is known")
            return
        if type(dest) is Interaction:
            interaction = dest
            if spec.destination != "interaction":
                self._refuse(headers, "D-TARGET", f"{target} is an interaction, not a conversation")
                return
        else:
            assert type(dest) is Conversation
            if spec.destination != "conversation":
                self._refuse(headers, "D-TARGET", f"{target} is a conversation, not an interaction")
                return
            interaction = self.interactions[dest.interaction_id]
        seen = dest.request_ids
        if request_id in seen:
            self._refuse(headers, "D-DUP", f"duplicate requestId {request_id}")
            return
        if len(seen) < self.policy.max_request_ids:
            seen[request_id] = None
        elif spec.trigger != "dispose":
            # D-BOUND; dispose stays possible (D-LIFE-4), and needs no record:
            # once it ran, every later message is refused as disposed
            self._refuse(
                headers,
                "D-BOUND",
                f"{target} has seen {len(seen)} requestIds, the limit (policy "
                "max_request_ids); only dispose is still accepted",
            )
            return
        if spec.kind == QUERY:
            self._query(headers, spec, interaction, dest)
            return
        if dest.lifecycle != m.INITIALIZED and spec.trigger != "dispose":
            self._refuse(headers, "D-LIFE-5", f"{target} is not initialized; send its init query")
            return
        if interaction.executing is None and not interaction.waiting:
            if interaction.lifecycle != m.DISPOSED:
                # nothing ahead of it (D-SERIAL): it runs now, with the headers
                # and properties its intake built
                self._execute(interaction, spec, headers, props, dest)
                return
        else:
            held = len(interaction.waiting) + (interaction.executing is not None)
            if held >= self.policy.max_pending_requests:
                self._refuse(
                    headers,
                    "D-BOUND",
                    f"{held} requests are already pending on this interaction (policy max_pending_requests)",
                )
                return
        request = Request(name=headers.name, target=target, request_id=request_id, properties=properties)
        if interaction.waiting:
            interaction.waiting.append(request)
        else:
            interaction.waiting = [request]
        self._pump(interaction)

    def _query(
        self,
        headers: Headers,
        spec: RequestSpec,
        interaction: Interaction,
        dest: Interaction | Conversation,
    ) -> None:
        """Queries change nothing and are answered at once (D-SERIAL)."""
        if spec.name == "interaction.query.data":
            if dest.lifecycle != m.INITIALIZED:
                self._refuse(headers, "D-LIFE-5", f"{headers.target} is not initialized")
                return
            self._respond(headers, body={"interaction-data": copy_data(interaction.data)})
            return
        if isinstance(dest, Interaction):
            body: dict[str, Any] = self.init_snapshot(dest)
            listed = [c["id"] for c in body["conversations"].values()]
            # D-CC-3: the init phase lasts until every listed leg is created.
            dest.init_pending = {c: None for c in listed if dest.legs[c].bridge_id is None} or NO_CALLS
        else:
            body = self.conversation_snapshot(dest)
        self._respond(headers, body=body)
        LIFECYCLE.fire(dest, "init")

    def init_snapshot(self, interaction: Interaction) -> dict[str, Any]:
        """The interaction.query.init body (S-INIT-1..5, D-INIT-7, D-CONV-ID)."""
        state = interaction.top
        conversations: dict[str, dict[str, str]] = {}
        if state in (m.ALERTING, m.DIALING, m.STARTED) and interaction.primary is not None:
            conversations["primary"] = {"id": interaction.primary}
        consult = interaction.leg("consult")
        if state == m.STARTED and consult is not None and consult.live:
            conversations["consult"] = {"id": consult.call}
        return {
            "interaction-state": state,
            "interaction-data": copy_data(interaction.data),
            "conversations": conversations,
        }

    @staticmethod
    def conversation_snapshot(leg: Conversation) -> dict[str, Any]:
        return {"conversation-state": leg.state, "nativeid": leg.call, "role": leg.role}

    # ------------------------------------------------------------------
    # Executing requests, one at a time per interaction (D-SERIAL).

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
            for guard in guards:
                reason_or_none = guard.check(context)
                if reason_or_none is not None:
                    self._refuse(headers, guard.rule, reason_or_none)
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
        headers = _headers_of(pending.request)
        if error is None:
            props = {}
            if pending.request.name == "interaction.request.consult" and interaction.consult:
                props = {"nativeid": interaction.consult}
            self._respond(headers, properties=props)
        else:
            self._refuse(headers, rule, error)

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
            self._emit(event("interaction.datachanged", interaction.target, changed))

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

    # ------------------------------------------------------------------
    # Firing interaction triggers, and the actions of their edges.

    def _fire_if_edge(self, interaction: Interaction, trigger: str) -> None:
        """Fire a trigger derived from a leg's new state, where the table has
        an edge for it (a primary retrieved with no consult changes nothing)."""
        edge = INTERACTION.fire_if_edge(interaction, trigger, self.policy)
        if edge is not None:
            self._after(interaction, edge, edge.source)

    def _fire(self, interaction: Interaction, trigger: str) -> None:
        before = interaction.state
        edge = INTERACTION.fire(interaction, trigger, self.policy)
        if edge.dest is not None or edge.action is not None:
            self._after(interaction, edge, before)

    def _after(self, interaction: Interaction, edge: m.Edge, before: str) -> None:
        """What follows an interaction edge from state ``before``: the event of
        a new top-level state, the edge's action, the joinable index."""
        if edge.dest is None:  # internal: the state is unchanged
            if edge.action is not None:
                getattr(self, f"_action_{edge.action}")(interaction)
            return
        now = TOP_OF[interaction.state]
        if now != TOP_OF[before] and interaction.lifecycle == m.INITIALIZED:
            self._emit(event(_INTERACTION_EVENT[now], interaction.target))
        if edge.action is not None:
            getattr(self, f"_action_{edge.action}")(interaction)
        self._index(interaction)

    def _action_promote_consult(self, interaction: Interaction) -> None:
        """D-PRIMARY-LOSS: the live consult leg becomes the primary."""
        consult = interaction.leg("consult")
        assert consult is not None
        consult.role = "primary"
        interaction.primary, interaction.consult = consult.call, None

    def _action_consult_over(self, interaction: Interaction) -> None:
        """D-CONSULT-END: the primary stays held, unless policy retrieves it.
        While a request is executing it owns the legs and nothing is retrieved."""
        interaction.consult = None
        primary = interaction.leg("primary")
        if (
            self.policy.reconnect_on_consult_end
            and interaction.executing is None
            and primary is not None
            and primary.state == m.HELD
        ):
            self._command("retrieve", primary.call)

    def _action_abandon_consult(self, interaction: Interaction) -> None:
        """The primary ended while a consult waited for its leg: the consult
        fails, and a leg named for it later is released."""
        pending = interaction.executing
        if pending is not None and pending.request.name == "interaction.request.consult":
            self._abandon(interaction, pending)
            self._finish(
                interaction,
                error="the primary call ended before the consult call was placed",
                rule="D-PRIMARY-LOSS",
            )

    # ------------------------------------------------------------------
    # Emitting.

    def _emit(self, message: Message) -> None:
        self._out.append(build_to_bridge(message))

    def _respond(
        self,
        headers: Headers,
        properties: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer SUCCESS (S-REQ-1); what :func:`fsm.messages.response` makes,
        built here directly: one is made for nearly every input."""
        self._out.append(
            build_to_bridge(
                build_message(
                    build_headers(RESPONSE, headers.name, headers.target, headers.request_id, SUCCESS),
                    properties or {},
                    body,
                )
            )
        )

    def _refuse(self, headers: Headers, rule: str, reason: str, *, prefix: bool = True) -> None:
        short = headers.name.rpartition(".")[2] or "message"
        text = f"{short} refused: {reason}" if prefix else reason
        self._out.append(build_to_bridge(response(headers, error=text), rule))


#: top-level interaction state -> the event that announces it (interaction.started, ...)
_INTERACTION_EVENT: Final = {state: f"interaction.{state.lower()}" for state in set(TOP_OF.values())}
#: request name -> the engine method that carries it out, for requests that
#: do more than fire their trigger and ask the switch (``_do_<short name>``)
_EFFECTS: Final[dict[str, Any]] = {
    name: effect
    for name, spec in CATALOG.items()
    if (effect := Engine.__dict__.get(f"_do_{spec.short}")) is not None
}
#: request name -> its request guards, in order (looked up once)
_GUARDS_OF: Final[dict[str, tuple[Guard, ...]]] = {
    name: tuple(GUARDS[guard] for guard in spec.guards) for name, spec in CATALOG.items()
}


# --------------------------------------------------------------------------
# Helpers.


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


def read_properties(spec: RequestSpec, properties: dict[str, str]) -> Any:
    """The structured properties of an already validated request."""
    if spec.properties is FreeProperties:
        return dict(properties)
    if spec.properties is NoProperties:
        return NoProperties()
    return spec.properties(**properties)


def _headers_of(request: Request) -> Headers:
    return build_headers(CATALOG[request.name].kind, request.name, request.target, request.request_id)


def _request_of(headers: Headers) -> Request:
    assert headers.request_id is not None
    return Request(name=headers.name, target=headers.target, request_id=headers.request_id)

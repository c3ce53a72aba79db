"""The sans-IO engine: the client side of the telephony interaction destination.

Feed it what the bridge sends (:meth:`Engine.receive_bridge`), what the
switch reports (:meth:`Engine.receive_switch`) and the passing of time
(:meth:`Engine.advance`); each call returns the outputs it caused, in order:
messages to the bridge, commands to the switch, and errors about input it
could not use. The engine sends nothing itself, reads no clock and never
raises on bad input.

This module reads and addresses what the bridge sends, answers queries,
fires interaction triggers and emits; running a request whose turn it is
is in ``fsm.execution``, what the switch reports in ``fsm.switching``.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any, Final

import attrs

from fsm import machines as m
from fsm.catalog import RequestSpec, read_properties
from fsm.errors import LocalProtocolError, RemoteProtocolError
from fsm.execution import ExecutionSide
from fsm.intake import Defect, read_message
from fsm.machines import INTERACTION, LIFECYCLE, TOP_OF
from fsm.messages import (
    QUERY,
    RESPONSE,
    SUCCESS,
    Headers,
    Message,
    bound_data,
    build_headers,
    build_message,
    copy_data,
    count_keys,
    event,
    response,
)
from fsm.model import NO_CALLS, Conversation, Interaction, Request
from fsm.outputs import (
    BridgeError,
    Output,
    SwitchError,
    Targets,
    ToBridge,
    ToSwitch,
    build_to_bridge,
    describe,
)
from fsm.policy import Policy
from fsm.switch_events import SwitchEvent, parse_switch_event

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


class Engine(ExecutionSide):
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
        #: the same commands -> engine time until which the first new leg
        #: is taken as theirs (D-ASYNC)
        self.abandoned_until: dict[str, float] = {}
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
        out: list[Output] = []
        self._out = out
        try:
            ev = raw if isinstance(raw, SwitchEvent) else parse_switch_event(raw)
        except RemoteProtocolError as exc:
            out.append(SwitchError(exc.rule, exc.message))
        else:
            if ev.data and count_keys(ev.data) + 3 > self.policy.max_data_keys:
                ev = self._bound_data(ev)
            if ev.trimmed:  # D-DATA: accepted without what broke it
                shown = ", ".join(ev.trimmed[:SHOWN_DROPPED])
                more = len(ev.trimmed) - SHOWN_DROPPED
                dropped = f"{shown} and {more} more" if more > 0 else shown
                out.append(
                    SwitchError("D-DATA", f"{ev.kind} {ev.call}: dropped data {dropped}", refused=False)
                )
            self._switch_event(ev)
        self._out = []
        return out

    def _bound_data(self, ev: SwitchEvent) -> SwitchEvent:
        """D-DATA, D-BOUND: the event with its data cut to what
        ``max_data_keys`` leaves beside the ani, dnis and destination keys
        it also becomes."""
        named = sum(1 for value in (ev.ani, ev.dnis, ev.destination) if value)
        kept, dropped = bound_data(ev.data, max(self.policy.max_data_keys - named, 0))
        if not dropped:
            return ev
        return attrs.evolve(ev, data=kept, trimmed=(*ev.trimmed, *dropped))

    def advance(self, seconds: float) -> list[Output]:
        """Let ``seconds`` of engine time pass; pending requests may time out
        (D-ASYNC)."""
        if not 0 <= seconds < float("inf"):
            raise LocalProtocolError(f"clock advance {seconds!r} must be finite and >= 0", "D-BAD")
        end = self.clock + seconds
        if end >= MAX_CLOCK:
            raise LocalProtocolError(
                f"clock advance {seconds:g} would bring the engine clock to 10^12 seconds or beyond", "D-BAD"
            )
        self._out = []
        # D-SERIAL: deadline by deadline, so that a request that starts when
        # the one before it timed out gets its timer from that moment
        while self._deadlines and self._deadlines[0][0] <= end:
            deadline, interaction_id, request_id = heapq.heappop(self._deadlines)
            self.clock = max(self.clock, deadline)
            interaction = self.interactions.get(interaction_id)
            if interaction is None or interaction.executing is None:
                continue
            if interaction.executing.request.request_id != request_id:
                continue
            self._time_out(interaction)
        self.clock = end
        return self._take()

    def _take(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------
    # Bridge messages.

    def _bridge_message(self, raw: object) -> None:
        read = read_message(raw, self.policy.max_frame_size)
        if isinstance(read, Defect):
            echo = read.echo
            if echo is None:
                self._out.append(BridgeError(read.rule, read.message))
                return
            dest = self.destinations.get(echo.target)
            if dest is not None:  # D-DUP is judged first; a malformed message's id counts as seen
                seen = dest.request_ids
                assert echo.request_id is not None
                if echo.request_id in seen:
                    self._refuse(echo, "D-DUP", f"duplicate requestId {echo.request_id}")
                    return
                if len(seen) < self.policy.max_request_ids:
                    seen[echo.request_id] = None
            self._refuse(echo, read.rule, read.message, prefix=False)
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
        seen = dest.request_ids  # D-DUP is judged first, on the destination the target names
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
        if spec.kind == QUERY:
            self._query(headers, spec, interaction, dest)
            return
        if dest.lifecycle != m.INITIALIZED and spec.trigger != "dispose":
            self._refuse(headers, "D-LIFE-5", f"{target} is not initialized; send its init query")
            return
        if spec.trigger == "dispose" and (interaction.executing is not None or interaction.waiting):
            # D-SERIAL: a dispose does not wait, and is never refused for a full queue (D-BOUND)
            self._dispose_now(headers, interaction, dest)
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
            # D-CC-3: the init phase lasts until every listed leg is created;
            # a re-init keeps it open for the legs an earlier init listed
            pending = {**dest.init_pending, **dict.fromkeys(listed)}
            dest.init_pending = {c: None for c in pending if dest.legs[c].bridge_id is None} or NO_CALLS
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
        """D-CONSULT-END: the primary stays held, unless policy retrieves it,
        also while a request of the interaction executes (the retrieve is the
        engine's own command)."""
        interaction.consult = None
        primary = interaction.leg("primary")
        if self.policy.reconnect_on_consult_end and primary is not None and primary.state == m.HELD:
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

    def _respond(self, headers: Headers | Request, body: dict[str, Any] | None = None) -> None:
        """Answer SUCCESS (S-REQ-1) to the request named, targeted and
        identified by ``headers`` (a waiting request's record will do), with
        the response JSON as the body (D-BODY); what
        :func:`fsm.messages.response` makes, built here directly: one is made
        for nearly every input."""
        self._out.append(
            build_to_bridge(
                build_message(
                    build_headers(RESPONSE, headers.name, headers.target, headers.request_id, SUCCESS),
                    body if body is not None else {},
                )
            )
        )

    def _refuse(self, headers: Headers, rule: str, reason: str, *, prefix: bool = True) -> None:
        short = headers.name.rpartition(".")[2] or "message"
        text = f"{short} refused: {reason}" if prefix else reason
        self._out.append(build_to_bridge(response(headers, error=text), rule))


#: The engine clock stays below this many seconds (D-BAD).
MAX_CLOCK: Final = 1e12
#: D-DATA: how many dropped keys an error output names (then "and N more")
SHOWN_DROPPED: Final = 20
#: top-level interaction state -> the event that announces it (interaction.started, ...)
_INTERACTION_EVENT: Final = {state: f"interaction.{state.lower()}" for state in set(TOP_OF.values())}
# --------------------------------------------------------------------------
# Helpers.

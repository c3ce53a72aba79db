"""The watcher of the messages between bridge and client (the checker's core).

A :class:`Watcher` is fed, in the order they happened, the queries and
requests the bridge sent (:meth:`Watcher.from_bridge`), the responses and
events the client sent (:meth:`Watcher.from_client`) and, optionally, the
switch lines of a trace (:meth:`Watcher.switch`, which only tracks). Each
call returns the violations that message proves, each naming its rule of
``spec/protocol.md``; :meth:`Watcher.finish` ends the run (S-REQ-1: a request
still unanswered then was never answered). The watcher keeps the requests
and their answers; what events and SUCCESS answers tell about the
destinations is judged by :class:`~fsm.checker.events.EventJudge`, on the
:class:`~fsm.checker.state.TraceState` both are given.

D-SERIAL and D-ASYNC: a request is judged against every state its
destination was seen in between the moment it could start executing (its
arrival, or the response to the request before it on the same interaction,
whichever is later) and its response; the order of a response and the
events its request caused is never relied on. A request answered SUCCESS
before that moment (the request ahead of it still unanswered) never
started: D-SERIAL.

D-DUP: per (target, requestId), k messages need k responses, at most one of
them not the D-DUP refusal. A trace line names the rule of each FAILURE
(harness.md, H-CMD); fed without it (the wire has none), a FAILURE to a
repeated requestId is taken for the refusal.
"""

from __future__ import annotations

from typing import Any

from fsm.catalog import Valid
from fsm.checker.events import CONVERSATION_INIT, INIT, EventJudge
from fsm.checker.model import Asked, TargetRule
from fsm.checker.rules import (
    Finding,
    creation_refusal,
    envelope_findings,
    header_findings,
    property_refusal,
    state_refusal,
)
from fsm.checker.state import TraceState, Violation
from fsm.checker.tree import TREE_INITS, TREE_KINDS, TreeJudge
from fsm.errors import Refusal
from fsm.intake import Defect, echo_of, read_message
from fsm.machines import CONVERSATION, INTERACTION
from fsm.messages import EVENT, FAILURE, REQUEST, RESPONSE, SUCCESS
from fsm.outputs import Targets
from fsm.policy import Policy

#: every init query (S-LIFE-2)
_INITS = frozenset({INIT, CONVERSATION_INIT, *TREE_INITS})


class Watcher:
    """Follows every destination of one run from its messages, and reports
    the rules they break. ``policy`` gives the deployment choices the rules
    depend on (D-XFER-1: ``transfer_while_consult_ringing``). ``targets`` is
    the D-TARGET addressing rule, the engine's ``Targets`` (its processor
    names the control destination, F-TARGET)."""

    def __init__(self, policy: Policy | None = None, targets: TargetRule | None = None) -> None:
        #: what the messages showed of every destination, shared with the
        #: judge of events, which may ask for a group to be judged again
        self.state = TraceState(policy=policy or Policy(), targets=targets or Targets())
        self._tree = TreeJudge(self.state)
        self._events = EventJudge(self.state, self.reevaluate, self._tree)
        self._awaiting: dict[tuple[str, str], list[Asked]] = {}
        self._queues: dict[str, list[Asked]] = {}
        self._answered: dict[tuple[str, str], int] = {}
        #: ``{"connection": N}`` lines seen (harness.md, "Traces")
        self.connections = 0
        #: messages unanswered when a connection dropped: each may still get
        #: its one response, late, on a later connection (a client that keeps
        #: its state across a crash sends its outbox first), none is required
        self._late: dict[tuple[str, str], list[Asked]] = {}
        #: D-DUP: requestIds a destination surely got (one of its messages
        #: was answered); it keeps them while it lives
        self._seen: set[tuple[str, str]] = set()
        #: D-DUP: the line of the one response per requestId that is not the
        #: D-DUP refusal (the message was judged, whatever the result)
        self._executed: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------
    # The API.

    def from_bridge(self, message: object, line: int, malformed: str | None = None) -> list[Violation]:
        """A query or request the bridge sent: it now awaits one response.
        A malformed one is the client's to refuse (D-BAD); what the trace
        then holds of the client is judged, not the bridge's message.
        ``malformed``: the trace line says the message held what no output
        may hold, and records what could be written of it (harness.md)."""
        found: list[Violation] = []
        if malformed is not None:
            header = message.get("header") if isinstance(message, dict) else None
            read: Valid | Defect = Defect(Refusal("D-BAD", malformed), echo_of(header))
        else:
            read = read_message(message, self.state.policy.max_frame_size)
        if isinstance(read, Defect):
            echo = read.echo
            if echo is not None and echo.request_id is not None:
                # D-DUP: a malformed message's requestId counts as seen too
                self._ask(
                    Asked(
                        line=line,
                        name=echo.name,
                        target=echo.target,
                        request_id=echo.request_id,
                        spec=None,
                        defect=read,
                        remembered=self._remembers(echo.target),
                    )
                )
            return found
        headers, spec = read.headers, read.spec
        assert headers.request_id is not None
        dest = self.state.destinations.get(headers.target)
        fits = dest is not None and dest.kind == spec.destination
        repeat = self._repeats((headers.target, headers.request_id))
        asked = Asked(
            line=line,
            name=headers.name,
            target=headers.target,
            request_id=headers.request_id,
            spec=spec,
            properties=read.properties,
            group=dest.group if dest is not None else None,
            # a repeat is refused at once (D-DUP): it never waits its turn
            queued=fits and spec.kind == REQUEST and not repeat,
            after_dispose=dest is not None and dest.disposed,
            init_before=dest is not None and (dest.initialized or dest.init_asked > 0),
            remembered=self._remembers(headers.target),
        )
        if dest is not None and fits and spec.name in _INITS:
            dest.init_asked += 1
        self._ask(asked)
        return found

    def from_client(self, message: object, line: int, rule: str | None = None) -> list[Violation]:
        """A response or an event the client sent; ``rule``: the rule ID a
        trace line gives a FAILURE response (harness.md, H-CMD), None when
        not known (the wire does not carry it)."""
        found: list[Finding] = envelope_findings(message)
        headers = message.get("header") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(headers, dict):
            return [Violation(line, finding) for finding in found]
        kind = headers.get("type")
        if kind == RESPONSE or (kind != EVENT and ("requestId" in headers or "result" in headers)):
            if kind != RESPONSE:
                found.append(Refusal("S-REQ-2", f"a response has type {RESPONSE}, not {kind!r}"))
            found += self._response(headers, message, line, rule)
        else:
            if kind != EVENT:
                found.append(Refusal("S-EVT-0", f"an event has type {EVENT}, not {kind!r}"))
            found += self._events.event(headers, message)
        return [Violation(line, finding) for finding in found]

    def switch(self, entry: object, line: int) -> list[Violation]:
        """A switch event or command line. The rules are judged on the
        messages alone, so a switch line breaks none; it only tells that the
        trace shows the switch, and which call leg may have ended (a leg the
        messages said was live stays so until then: D-CONS-2)."""
        self.state.shows_switch = True
        event = entry.get("event") if isinstance(entry, dict) and entry.get("from") == "switch" else None
        if isinstance(event, dict):
            self._events.switch_event(event)
        return []

    def connected(self) -> None:
        """A ``{"connection": N}`` trace line (harness.md, "Traces"): a new
        connection started; after the first, the one before it dropped, and
        what it left unanswered is lost, not unanswered (D-RECONNECT)."""
        if self.connections:
            self.connection_lost()
        self.connections += 1

    def connection_lost(self) -> None:
        """The connection dropped: what awaited a response will not get one
        on it, and what the client sent meanwhile is lost. Pending messages
        are no longer owed a response (no S-REQ-1 for them), but each may
        still get its one response later, and every state becomes unknown
        until the next init response or event; the destinations stay
        initialized on the client."""
        for key, waiting in self._awaiting.items():
            self._late.setdefault(key, []).extend(waiting)
        self._awaiting.clear()
        self._queues.clear()
        for dest in self.state.destinations.values():
            dest.init_asked = 0
        for facts in self.state.interactions.values():
            facts.forget_states()

    def finish(self, line: int) -> list[Violation]:
        """The end of the run (S-REQ-1): every message still awaiting its
        response was never answered."""
        found = [
            Violation(
                asked.line,
                Refusal(
                    "S-REQ-1",
                    f"{asked.label} to {asked.target} was never answered (the trace ends at line {line})",
                ),
            )
            for waiting in self._awaiting.values()
            for asked in waiting
        ]
        self._awaiting.clear()
        self._queues.clear()
        return sorted(found, key=lambda v: v.line)

    # ------------------------------------------------------------------
    # Requests and their windows (D-SERIAL).

    def _remembers(self, target: str) -> bool:
        """D-DUP: ``target`` keeps the requestIds it sees (a target that
        names no destination, or a disposed one, keeps none)."""
        dest = self.state.destinations.get(target)
        return dest is not None and not dest.disposed

    def _repeats(self, key: tuple[str, str]) -> bool:
        """D-DUP: a message with requestId ``key`` repeats one the client
        surely got: answered, or awaiting an answer on this connection (one
        lost with a connection may never have reached it, D-RECONNECT)."""
        return key in self._seen or any(a.remembered for a in self._awaiting.get(key, ()))

    def _ask(self, asked: Asked) -> None:
        asked.repeat = self._repeats(asked.key)
        self._awaiting.setdefault(asked.key, []).append(asked)
        if asked.queued and asked.group is not None:
            queue = self._queues.setdefault(asked.group, [])
            queue.append(asked)
            if len(queue) == 1:
                self._open(asked)
            else:
                # D-SERIAL: it waits; it is judged from the moment the request
                # ahead of it is answered, never on the states before
                asked.held = False

    def _open(self, asked: Asked) -> None:
        """``asked`` may start executing now: its window opens."""
        asked.opened = True
        asked.refusal = self._precondition(asked)
        asked.held = asked.refusal is None

    def _precondition(self, asked: Asked) -> Finding | None:
        """Why ``asked`` may not execute now (None: it may)."""
        spec = asked.spec
        if spec is None or spec.trigger is None or spec.machine != "state" or asked.group is None:
            return None
        if spec.destination in TREE_KINDS:
            return None
        facts = self.state.interactions[asked.group]
        if spec.destination == "conversation":
            nativeid = self.state.destinations[asked.target].nativeid
            refusal = state_refusal(CONVERSATION, spec, facts.leg_states(nativeid), self.state.policy)
        else:
            refusal = state_refusal(INTERACTION, spec, facts.states(), self.state.policy)
        if refusal is None:
            refusal = property_refusal(spec, asked.properties, self.state.policy)
        if refusal is None and spec.trigger == "createconversation":
            refusal = creation_refusal(facts, asked.properties["id"], asked.properties["nativeid"])
        return refusal

    def reevaluate(self, group: str) -> None:
        """Something changed on ``group``: a precondition that holds now held
        during the window of every request waiting there."""
        for asked in self._queues.get(group, ()):
            if asked.opened and not asked.held and self._precondition(asked) is None:
                asked.held = True

    def _settled(self, asked: Asked) -> None:
        if asked.group is None:
            return
        queue = self._queues.get(asked.group, [])
        if asked in queue:
            queue.remove(asked)
        if queue and not queue[0].opened:
            self._open(queue[0])
        self.reevaluate(asked.group)

    # ------------------------------------------------------------------
    # Responses (S-REQ-1, S-REQ-2).

    def _response(
        self, headers: dict[str, Any], message: dict[str, Any], line: int, rule: str | None
    ) -> list[Finding]:
        rid, target = headers.get("requestId"), headers.get("target")
        if not isinstance(rid, str) or not isinstance(target, str):
            return [Refusal("S-REQ-2", "a response echoes its request's target and requestId (strings)")]
        key = (target, rid)
        result = headers.get("result")
        taken = self._take(key, result, rule)
        if taken is None:
            return [self._unmatched(key)]
        asked, late = taken
        self._answered[key] = line
        if asked.remembered:
            self._seen.add(key)
        found = header_findings(asked.name, asked.label, headers, message)
        found += self._count(asked, result, rule, line)
        if late:
            # The one response of a message sent before a connection dropped:
            # what a SUCCESS tells is applied (a dispose happened), but it is
            # not judged: the states of its time are gone.
            if result == SUCCESS:
                self._apply(asked, message)
            return found
        dest = self.state.destinations.get(asked.target)
        if dest is not None and asked.spec is not None and asked.spec.name in _INITS:
            dest.init_asked = max(0, dest.init_asked - 1)
        if result == SUCCESS:
            found += self._judge(asked, message)
            if asked.remembered:
                self._executed.setdefault(key, line)
            self._apply(asked, message)
        self._settled(asked)
        return found

    def _take(self, key: tuple[str, str], result: object, rule: str | None) -> tuple[Asked, bool] | None:
        """The message a response to ``key`` answers, and whether it was
        sent before a connection dropped (None: no message awaits it). A
        repeated requestId is answered at once with the D-DUP refusal, while
        the original keeps its own response (S-REQ-1): a response that may
        be the refusal goes to the latest repeat, any other to the original;
        a message of this connection before one lost with the last."""
        waiting = self._awaiting.get(key, [])
        late = self._late.get(key, [])
        if not waiting and not late:
            return None
        picked: Asked
        if not waiting:
            picked = late[0]
        elif result == FAILURE and rule in (None, "D-DUP"):
            picked = next((a for a in reversed(waiting) if a.repeat), waiting[-1 if len(waiting) > 1 else 0])
        else:
            picked = next((a for a in waiting if not a.repeat), waiting[0])
        is_late = picked not in waiting
        source, store = (late, self._late) if is_late else (waiting, self._awaiting)
        source.remove(picked)
        if not source:
            del store[key]
        return picked, is_late

    def _count(self, asked: Asked, result: object, rule: str | None, line: int) -> list[Finding]:
        """D-DUP: at most one response per (target, requestId) is not the
        D-DUP refusal. A SUCCESS is judged in :meth:`_judge`; here a FAILURE
        whose trace line names another rule, to a repeat, is reported, and
        a FAILURE that was no refusal is counted."""
        if result != FAILURE:
            return []
        refusal = rule == "D-DUP" if rule is not None else asked.repeat
        if refusal or not asked.remembered:
            return []
        first = self._executed.get(asked.key)
        if first is None:
            self._executed[asked.key] = line
            return []
        if rule is None or not asked.repeat:
            return []
        return [
            Refusal(
                "D-DUP",
                f"{asked.label} repeats a requestId answered at line {first}, yet was refused by "
                f"{rule}, not as a duplicate: a repeated requestId is never judged again",
            )
        ]

    def _unmatched(self, key: tuple[str, str]) -> Finding:
        target, rid = key
        if key in self._answered:
            return Refusal(
                "S-REQ-1",
                f"a second response to requestId {rid} on {target} (answered at line {self._answered[key]})",
            )
        others = sorted(t for t, r in self._awaiting if r == rid)
        if others:
            return Refusal(
                "S-REQ-2",
                f"requestId {rid} awaits an answer on {others[0]}; the target {target} does not echo it",
            )
        return Refusal("S-REQ-2", f"requestId {rid} on {target} matches no request awaiting an answer")

    def _judge(self, asked: Asked, message: dict[str, Any]) -> list[Finding]:
        """A SUCCESS response: was the message allowed to succeed?"""
        spec = asked.spec
        if spec is None:
            assert asked.defect is not None
            return [
                Refusal(
                    asked.defect.rule,
                    f"{asked.label} is malformed ({asked.defect.message}), yet answered SUCCESS",
                )
            ]
        dest = self.state.destinations.get(asked.target)
        what = f"{spec.short} (line {asked.line}) answered SUCCESS"
        if dest is None and spec.creates is not None:
            return self._tree.judge_answer(spec, message, what)  # a new session (D-CTRL-3)
        if dest is None and self._tree.learn(spec, asked.target):
            dest = self.state.destinations.get(asked.target)
            asked.group = asked.target
        if dest is None or dest.kind != spec.destination:
            return [
                Refusal("D-TARGET", f"{what}, but {asked.target} names no {spec.destination} destination")
            ]
        if asked.after_dispose:
            return [Refusal("D-LIFE-4", f"{what}, but {asked.target} was disposed before it arrived")]
        first = self._executed.get(asked.key)
        if first is not None:
            return [
                Refusal(
                    "D-DUP",
                    f"{what}, but requestId {asked.request_id} was answered at line {first} already "
                    "there: a repeated requestId is refused as duplicate, never executed",
                )
            ]
        needs_init = spec.name not in _INITS and spec.trigger != "dispose"
        if needs_init and not (asked.init_before and dest.initialized):
            return [Refusal("D-LIFE-5", f"{what}, but {asked.target} was not initialized when it arrived")]
        if asked.queued and not asked.opened and spec.trigger != "dispose":
            ahead = self._queues.get(dest.group, [asked])[0]
            return [
                Refusal(
                    "D-SERIAL",
                    f"{what} before {ahead.label}, which was ahead of it on {dest.group}, was "
                    "answered: it waits for that one, and is checked against the state it leaves",
                )
            ]
        found: list[Finding] = []
        if not asked.held and asked.refusal is not None:
            found.append(Refusal(asked.refusal.rule, f"{what}, but {asked.refusal.reason}"))
        if dest.kind in TREE_KINDS:
            return found + self._tree.judge_answer(spec, message, what, asked.target)
        facts = self.state.interactions[dest.group]
        return found + self._events.judge_answer(spec, facts, dest, message, what)

    def _apply(self, asked: Asked, message: dict[str, Any]) -> None:
        """What a SUCCESS response tells about its destination."""
        dest = self.state.destinations.get(asked.target)
        spec = asked.spec
        if spec is not None and spec.destination in TREE_KINDS:
            if dest is None or dest.kind == spec.destination:
                self._tree.apply_answer(spec, asked.target, message)
        elif spec is not None and dest is not None and dest.kind == spec.destination:
            self._events.apply_answer(asked, self.state.interactions[dest.group], dest, message)

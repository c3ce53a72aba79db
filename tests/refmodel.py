"""An independent reference model of the client side of the protocol.

Written from ``spec/protocol.md`` and ``spec/harness.md`` only: the message
table and the preconditions below restate the spec's tables as plain data,
and nothing is imported from the engine. The model reads a run the way a
person reads its trace (the ``run`` inputs and outputs in order, switch
events the simulated switch generates included), keeps its own view of every
interaction, leg and destination, and for every query and request it
predicts the answer:

- at arrival: D-BAD (malformed), D-TARGET (unknown destination, wrong kind),
  D-LIFE-4 (disposed), D-DUP, D-LIFE-5 (not initialized), D-BOUND;
- when the request starts executing (D-SERIAL: one at a time per
  interaction, in arrival order): the state preconditions of the spec's
  tables, S-CONS-1, D-CONS-2, D-XFER-1, D-CONF-1, D-ALT-1, S-CC-1, D-CC-2,
  D-CC-3;
- for a request that asks something of the switch: SUCCESS or FAILURE once
  the switch has settled it (its events, its ``result``), FAILURE at the
  D-ASYNC timeout.

It also checks what the engine sends: S-REQ-1 and S-REQ-2 on every response,
S-EVT-0 on every event, S-LIFE-2 and D-LIFE-4 (no event on a destination
before its init is answered, none after it is disposed), D-LIFE-3 with
D-EVT-2 (the events of a step are exactly the changes of that step on
initialized destinations), S-INIT-1..5, D-INIT-7 and D-CONV-ID on init
responses, S-EVT-1, D-NEW.

Where the spec leaves an outcome open the model predicts ``EITHER`` (each
place says why). Inputs whose consequences it could not follow at all raise
:class:`Ambiguous`: the generator must not produce them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
#: the spec allows SUCCESS and FAILURE
EITHER: Final = "EITHER"

QUERY: Final = "cti.query"
REQUEST: Final = "cti.request"
RESPONSE: Final = "cti.response"
EVENT: Final = "cti.event"

# States of an interaction (top level) and of a conversation (call leg).
ALERTING: Final = "ALERTING"
DIALING: Final = "DIALING"
STARTED: Final = "STARTED"
ENDED: Final = "ENDED"
COMPLETED: Final = "COMPLETED"
TALKING: Final = "TALKING"
HELD: Final = "HELD"
LIVE: Final = frozenset({DIALING, ALERTING, TALKING, HELD})
CONNECTED: Final = frozenset({TALKING, HELD})
RINGING: Final = frozenset({DIALING, ALERTING})
NOT_COMPLETED: Final = frozenset({ALERTING, DIALING, STARTED, ENDED})
#: S-INIT-3: the states in which the init response lists the primary
WITH_PRIMARY: Final = frozenset({ALERTING, DIALING, STARTED})

# Destination lifecycle (S-LIFE-1).
SETUP: Final = "SETUP"
INITIALIZED: Final = "INITIALIZED"
DISPOSED: Final = "DISPOSED"

DTMF: Final = frozenset("0123456789*#ABCD")


@dataclass(frozen=True)
class Spec:
    """One row of the spec's message tables."""

    kind: str
    #: "interaction" or "conversation"
    destination: str
    #: required string properties; None: free key -> string pairs
    properties: tuple[str, ...] | None = ()
    #: states of the destination in which it is valid; None: any state
    valid_when: frozenset[str] | None = None
    #: the consult an interaction request needs: "none" (no consult
    #: requested or live) or "connected" (a TALKING or HELD consult leg)
    consult: str | None = None
    #: the switch operation it asks for (harness.md "Switch commands")
    op: str | None = None
    #: the rule cited when it is refused for the state
    rule: str = ""


#: Every query and request of the spec ("Telephony requests", "Generic
#: interaction destination", "Conversation destination", D-LIFE-4).
MESSAGES: Final[dict[str, Spec]] = {
    "interaction.query.init": Spec(QUERY, "interaction"),
    "interaction.query.data": Spec(QUERY, "interaction"),
    "conversation.query.init": Spec(QUERY, "conversation"),
    "interaction.request.accept": Spec(
        REQUEST, "interaction", valid_when=frozenset({ALERTING}), op="answer", rule="D-GENERIC"
    ),
    "interaction.request.reject": Spec(
        REQUEST, "interaction", valid_when=frozenset({ALERTING}), op="reject", rule="D-GENERIC"
    ),
    "interaction.request.complete": Spec(
        REQUEST, "interaction", properties=None, valid_when=frozenset({ENDED}), rule="D-GENERIC"
    ),
    "interaction.request.setdata": Spec(
        REQUEST, "interaction", properties=None, valid_when=NOT_COMPLETED, rule="D-GENERIC"
    ),
    "interaction.request.dispose": Spec(REQUEST, "interaction", rule="D-LIFE-4"),
    "interaction.request.createconversation": Spec(
        REQUEST, "interaction", properties=("id", "nativeid"), rule="S-CC-1"
    ),
    "interaction.request.consult": Spec(
        REQUEST,
        "interaction",
        properties=("destination",),
        valid_when=frozenset({STARTED}),
        consult="none",
        op="consult",
        rule="S-CONS-1",
    ),
    "interaction.request.consulttransfer": Spec(
        REQUEST,
        "interaction",
        valid_when=frozenset({STARTED}),
        consult="connected",
        op="transfer",
        rule="D-XFER-1",
    ),
    "interaction.request.consultconference": Spec(
        REQUEST,
        "interaction",
        valid_when=frozenset({STARTED}),
        consult="connected",
        op="conference",
        rule="D-CONF-1",
    ),
    "interaction.request.alternate": Spec(
        REQUEST,
        "interaction",
        valid_when=frozenset({STARTED}),
        consult="connected",
        op="alternate",
        rule="D-ALT-1",
    ),
    "conversation.request.answer": Spec(
        REQUEST, "conversation", valid_when=frozenset({ALERTING}), op="answer", rule="D-CONV"
    ),
    "conversation.request.release": Spec(
        REQUEST, "conversation", valid_when=LIVE, op="release", rule="D-CONV"
    ),
    "conversation.request.hold": Spec(
        REQUEST, "conversation", valid_when=frozenset({TALKING}), op="hold", rule="D-CONV"
    ),
    "conversation.request.retrieve": Spec(
        REQUEST, "conversation", valid_when=frozenset({HELD}), op="retrieve", rule="D-CONV"
    ),
    "conversation.request.blindtransfer": Spec(
        REQUEST,
        "conversation",
        properties=("destination",),
        valid_when=CONNECTED,
        op="blindtransfer",
        rule="D-CONV",
    ),
    "conversation.request.blindconference": Spec(
        REQUEST,
        "conversation",
        properties=("destination",),
        valid_when=frozenset({TALKING}),
        op="blindconference",
        rule="D-CONV",
    ),
    "conversation.request.senddtmf": Spec(
        REQUEST,
        "conversation",
        properties=("digits",),
        valid_when=frozenset({TALKING}),
        op="senddtmf",
        rule="D-CONV",
    ),
    "conversation.request.dispose": Spec(REQUEST, "conversation", rule="D-LIFE-4"),
}

#: What a switch event does to a leg (harness.md "Switch events"; the
#: conversation states of protocol.md). A pair not listed is out of order:
#: the leg cannot get there by that event (ENDED is terminal), so the event
#: is ignored. A repeated ``dialing`` confirms a leg already named by a
#: ``result`` (harness.md: the result and the dialing event name the same
#: call, in either order).
LEG_EVENTS: Final[dict[tuple[str, str], str]] = {
    (DIALING, "dialing"): DIALING,
    (DIALING, "alerting"): ALERTING,
    (DIALING, "connected"): TALKING,
    (ALERTING, "connected"): TALKING,
    (TALKING, "held"): HELD,
    (HELD, "retrieved"): TALKING,
    **{(state, "ended"): ENDED for state in LIVE},
    **{(state, "failed"): ENDED for state in LIVE},
}

#: Switch event kinds: (required fields, optional string fields), harness.md.
EVENT_KINDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "offered": (("call", "device"), ("ani", "dnis")),
    "dialing": (("call",), ("device", "destination")),
    "alerting": (("call",), ()),
    "connected": (("call",), ()),
    "held": (("call",), ()),
    "retrieved": (("call",), ()),
    "ended": (("call",), ("cause",)),
    "failed": (("call",), ("reason",)),
    "result": (("command", "ok"), ("call", "reason")),
    "link": (("up",), ("reason",)),
}


def usable_request_id(value: object) -> TypeGuard[str]:
    """D-BAD: a non-empty string of at most 256 code points without a lone surrogate."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 256
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    )


class Ambiguous(Exception):
    """An input whose consequences the spec leaves open in a way the model
    cannot follow; the generator must not produce it."""


@dataclass(eq=False)
class Leg:
    call: str
    interaction: str
    role: str
    state: str
    bridge_id: str | None = None
    target: str | None = None
    #: "" until createconversation, then SETUP, INITIALIZED, DISPOSED
    lifecycle: str = ""
    request_ids: set[str] = field(default_factory=set)
    #: a former primary that lost its role to a promoted consult leg: its
    #: conversation init may name either role (D-PRIMARY-LOSS says only what
    #: the promoted leg's role is)
    role_either: bool = False
    #: when it last was TALKING: the tick at which it became TALKING, moved
    #: on to the tick at which it left TALKING (S-ALT-1: the active leg is the
    #: last one that was TALKING; of two legs that are both TALKING, the one
    #: that became TALKING last)
    talked_at: int = 0


@dataclass(eq=False)
class Record:
    """A bridge message with a requestId that needs its one response."""

    rid: str
    name: str
    target: str
    step: int
    malformed: bool = False
    #: the expected result once decided
    verdict: str | None = None
    rule: str = ""
    why: str = ""
    answered: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    #: checks a SUCCESS response's body; returns the problems found
    check_body: Callable[[Any], list[str]] | None = None
    #: runs when the SUCCESS response is seen
    on_success: Callable[[], None] | None = None
    #: the engine clock when it arrived
    arrived: float = 0.0

    @property
    def short(self) -> str:
        return self.name.rpartition(".")[2]


@dataclass(eq=False)
class Executing:
    """The request an interaction is executing (D-SERIAL)."""

    record: Record
    op: str | None
    #: the legs it acts on, fixed when it started
    calls: tuple[str, ...] = ()
    deadline: float = math.inf
    command: str | None = None
    #: the result it must get now that the switch settled it
    due: str | None = None
    #: a FAILURE response is acceptable before anything settles it
    may_fail: bool = False
    timed_out: bool = False
    #: consult: the leg the switch named
    named: str | None = None
    #: the engine time it started executing
    started: float = 0.0
    #: answered FAILURE because its destination was disposed (D-SERIAL)
    cancelled: bool = False


@dataclass(eq=False)
class Interaction:
    id: str
    target: str
    top: str
    primary: str
    lifecycle: str = SETUP
    legs: dict[str, Leg] = field(default_factory=dict)
    #: when its last executing request finished (D-SERIAL: the next one's timer starts then)
    free_since: float = 0.0
    consult: str | None = None
    consult_requested: bool = False
    #: data keys set by setdata, with their values
    data: dict[str, str] = field(default_factory=dict)
    #: data keys whose value the model does not know
    uncertain: set[str] = field(default_factory=set)
    #: D-DATA: the top-level keys the interaction's data holds, and how many
    #: keys it holds at every level
    data_top: set[str] = field(default_factory=set)
    data_count: int = 0
    #: D-CC-3: listed in the last init response and not yet created
    init_pending: set[str] = field(default_factory=set)
    #: listed in any init response
    init_listed: set[str] = field(default_factory=set)
    #: S-CC-1, D-CC-4: named by a consult response or an interaction.consult
    #: event, not yet created
    creatable: set[str] = field(default_factory=set)
    request_ids: set[str] = field(default_factory=set)
    waiting: list[Record] = field(default_factory=list)
    executing: Executing | None = None

    def consult_leg(self) -> Leg | None:
        return self.legs[self.consult] if self.consult is not None else None

    def live_legs(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.state in LIVE]


@dataclass(frozen=True)
class DataChange:
    """An interaction.datachanged the model expects (D-EVT-3): ``certain``
    keys must be in it; ``possible`` keys may be; an empty ``certain`` makes
    the whole event optional."""

    certain: dict[str, str]
    possible: dict[str, str]


class Reference:
    """The model. Feed it every trace entry with :meth:`consume` between
    :meth:`begin_step` and :meth:`end_step`; each returns the problems it
    found as ``RULE: explanation`` strings."""

    def __init__(
        self,
        *,
        acknowledges: bool,
        channel: str = "S1.G1.1001",
        control: str = "proc-1.CONTROL",
        transfer_while_consult_ringing: bool = False,
        reconnect_on_consult_end: bool = False,
        request_timeout: float = 30.0,
        max_legs: int = 64,
        max_pending: int = 64,
        max_data_keys: int = 1_000,
    ) -> None:
        #: the switch answers every command with a `result` (scripted)
        self.acknowledges = acknowledges
        self.channel = channel
        #: the control destination (F-CTRL-1), and whether the switch link is up (D-CTRL-3)
        self.control = control
        self.link_up = True
        self.transfer_while_consult_ringing = transfer_while_consult_ringing
        self.reconnect_on_consult_end = reconnect_on_consult_end
        self.request_timeout = request_timeout
        self.max_legs = max_legs
        self.max_pending = max_pending
        self.max_data_keys = max_data_keys
        self.clock = 0.0
        self.ticks = 0
        self.step = 0
        self.interactions: dict[str, Interaction] = {}
        self.disposed: dict[str, Interaction] = {}
        #: target -> (interaction id, call or None for the interaction)
        self.targets: dict[str, tuple[str, str | None]] = {}
        self.disposed_targets: set[str] = set()
        #: call -> interaction id, for legs of live interactions
        self.calls: dict[str, str] = {}
        #: calls whose events are ignored: legs of disposed interactions
        #: (D-LIFE-4) and legs the engine released (D-ASYNC)
        self.ignored: set[str] = set()
        #: every call id the switch has reported
        self.seen_calls: set[str] = set()
        #: command id -> the command, as issued
        self.commands: dict[str, dict[str, Any]] = {}
        #: consult commands that failed before naming their leg: "timeout"
        #: (D-ASYNC: a leg named later is released) or "maybe" (the primary
        #: ended first; the spec does not say)
        self.abandoned: dict[str, str] = {}
        self.records: dict[str, list[Record]] = {}
        #: (target, requestId) of every message a destination has seen (D-DUP)
        self.seen_ids: set[tuple[str, str]] = set()
        self.problems: list[str] = []
        self._reset_step()

    # ------------------------------------------------------------------
    # Steps.

    def _reset_step(self) -> None:
        self.due: list[Record] = []
        self.expected_events: dict[str, list[tuple[str, dict[str, str] | None]]] = {}
        self.actual_events: dict[str, list[tuple[str, dict[str, str]]]] = {}
        self.expected_data: dict[str, list[DataChange]] = {}
        self.actual_data: dict[str, list[dict[str, str]]] = {}
        self.next_commands: list[tuple[Executing | None, dict[str, Any]]] = []
        self.expected_releases: set[str] = set()
        self.optional_releases: set[str] = set()
        self.protocol_errors_expected = 0
        self.protocol_errors_either = 0
        self.protocol_errors_seen = 0
        self.stray_responses = 0

    def begin_step(self) -> None:
        self.step += 1
        self._reset_step()

    def end_step(self) -> list[str]:
        for rec in self.due:
            if not rec.answered:
                self._problem("S-REQ-1", f"{rec.name} {rec.rid} was not answered at once ({rec.why})")
        for i in self.interactions.values():
            p = i.executing
            if p is not None and p.due is not None and not p.record.answered:
                self._problem(
                    "D-ASYNC",
                    f"{p.record.name} {p.record.rid} is settled ({p.due}) but was not answered",
                )
        low = self.protocol_errors_expected
        high = low + self.protocol_errors_either
        got = self.protocol_errors_seen + self.stray_responses
        if not low <= got <= high or self.stray_responses > self.protocol_errors_either:
            self._problem(
                "D-BAD",
                f"expected {low}..{high} protocol errors, got {self.protocol_errors_seen}"
                f" (and {self.stray_responses} responses to no request)",
            )
        self._compare_events()
        for _, command in self.next_commands:
            self._problem("harness", f"expected switch command {command} was not issued")
        for call in sorted(self.expected_releases):
            self._problem("D-ASYNC", f"late consult leg {call} was not released")
        problems, self.problems = self.problems, []
        return problems

    def pending(self) -> set[tuple[str, str]]:
        """(target, requestId) of requests waiting or executing."""
        out: set[tuple[str, str]] = set()
        for i in self.interactions.values():
            records = [*i.waiting, *([i.executing.record] if i.executing is not None else [])]
            out.update((r.target, r.rid) for r in records if not r.answered)
        return out

    def finish(self) -> list[str]:
        """S-REQ-1 at the end of a run: every message answered, or still
        legitimately waiting or executing."""
        pending = self.pending()
        for records in self.records.values():
            for rec in records:
                if not rec.answered and (rec.target, rec.rid) not in pending:
                    self._problem("S-REQ-1", f"{rec.name} {rec.rid} on {rec.target} was never answered")
        problems, self.problems = self.problems, []
        return problems

    def _problem(self, rule: str, text: str) -> None:
        self.problems.append(f"{rule}: {text}")

    # ------------------------------------------------------------------
    # Trace entries.

    def consume(self, entry: Any) -> None:
        if not isinstance(entry, dict):
            return
        if "malformed" in entry:  # an input that held values no trace can hold (D-BAD)
            self._malformed_input(entry)
        elif entry.get("from") == "bridge" and "message" in entry:
            self._bridge(entry["message"])
        elif entry.get("from") == "switch":
            self._switch(entry.get("event"))
        elif entry.get("from") == "clock":
            self._clock(entry.get("advance"))
        elif entry.get("to") == "bridge":
            self._to_bridge(entry.get("message"))
        elif entry.get("to") == "switch":
            self._command(entry.get("command"))
        elif "protocol_error" in entry:
            self.protocol_errors_seen += 1

    # ------------------------------------------------------------------
    # Bridge messages (D-BAD first, then the destination checks).

    def _bridge(self, msg: Any) -> None:
        headers = msg.get("header") if isinstance(msg, dict) else None
        if not isinstance(headers, dict):
            headers = {}
        rid = headers.get("requestId")
        defect = self._defect(msg)
        if defect is not None:
            if usable_request_id(rid):
                self._refuse_malformed(headers, rid, defect)
            else:  # D-BAD: no usable requestId, nothing to answer
                self.protocol_errors_expected += 1
            return
        rid, name, target = headers["requestId"], headers["name"], headers["target"]
        spec = MESSAGES[name]
        body = dict(msg.get("body") or {})
        # D-ENV: keys a message does not take are ignored
        props = body if spec.properties is None else {k: body[k] for k in spec.properties}
        rec = self._record(rid, name, target, properties=props)
        where = self.targets.get(target)
        if where is None:
            if target in self.disposed_targets:
                self._decide(rec, FAILURE, "D-LIFE-4", "destination disposed")
            else:
                self._decide(rec, FAILURE, "D-TARGET", "unknown destination")
            return
        iid, call = where
        if (call is None) != (spec.destination == "interaction"):
            self._decide(rec, FAILURE, "D-TARGET", f"{name} sent to a {spec.destination}'s target")
            return
        i = self.interactions[iid]
        dest_ids = i.request_ids if call is None else i.legs[call].request_ids
        if rid in dest_ids:
            self._decide(rec, FAILURE, "D-DUP", "duplicate requestId")
            return
        dest_ids.add(rid)
        self.seen_ids.add((target, rid))
        lifecycle = i.lifecycle if call is None else i.legs[call].lifecycle
        if spec.kind == QUERY:
            self._query(rec, i, call, lifecycle)
            return
        if lifecycle != INITIALIZED and rec.short != "dispose":
            self._decide(rec, FAILURE, "D-LIFE-5", "not initialized")
            return
        if rec.short == "dispose" and (i.executing is not None or i.waiting):
            self._dispose_now(i, rec, call)
            return
        held = len(i.waiting) + (i.executing is not None)
        if held >= self.max_pending:
            self._decide(rec, FAILURE, "D-BOUND", "too many pending requests")
            return
        i.waiting.append(rec)
        self._pump(i)

    def _malformed_input(self, entry: dict[str, Any]) -> None:
        """D-BAD: the input changed nothing; a bridge message whose recorded
        header still has a requestId (the trace leaves out an unusable one)
        is answered FAILURE, else it is a protocol error."""
        if entry.get("from") != "bridge":
            return
        msg = entry.get("message")
        headers = msg.get("header") if isinstance(msg, dict) else None
        rid = headers.get("requestId") if isinstance(headers, dict) else None
        if isinstance(headers, dict) and usable_request_id(rid):
            self._refuse_malformed(headers, rid, str(entry["malformed"]))
        else:
            self.protocol_errors_expected += 1

    def _refuse_malformed(self, headers: dict[str, Any], rid: str, defect: str) -> None:
        """D-BAD: a malformed message with a usable requestId: FAILURE."""
        name, target = headers.get("name"), headers.get("target")
        rec = self._record(
            rid,
            name if isinstance(name, str) else "",
            target if isinstance(target, str) else "",
            malformed=True,
        )
        self._decide(rec, FAILURE, "D-BAD", defect)

    def _defect(self, msg: Any) -> str | None:
        """Why a bridge message is malformed (D-BAD), or None (F-ENV: the
        message is {header, body}; D-ENV: unknown keys are ignored). Raises
        Ambiguous for shapes the spec does not settle."""
        if not isinstance(msg, dict):
            return "message is not an object"
        unwritable = _unwritable(msg, 1)
        if unwritable is not None:
            return unwritable
        if "headers" in msg or "properties" in msg:
            return "the old envelope: the envelope is {header, body}"
        headers = msg.get("header")
        if not isinstance(headers, dict):
            return "no header object"
        if "result" in headers or "errorMessage" in headers:
            return "a query or request with a result or errorMessage"
        kind, name, target = headers.get("type"), headers.get("name"), headers.get("target")
        if not isinstance(kind, str) or kind not in (QUERY, REQUEST):
            return f"type {kind!r}"
        if not isinstance(name, str) or name not in MESSAGES:
            return f"name {name!r}"
        if MESSAGES[name].kind != kind:
            return f"{name} sent as {kind}"
        if not isinstance(target, str):
            return f"target {target!r}"
        rid = headers.get("requestId")
        if not usable_request_id(rid):
            return f"requestId {rid!r}"
        props = msg.get("body")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            return "body is not an object"
        required = MESSAGES[name].properties
        if required is None:
            bad = [k for k, v in props.items() if not isinstance(v, str)]
            return f"property {bad[0]} is not a string" if bad else None
        for key in required:
            if key not in props:
                return f"property {key} is missing"
            if not isinstance(props[key], str):
                return f"property {key} is not a string"
        return None

    def _record(
        self,
        rid: str,
        name: str,
        target: str,
        *,
        malformed: bool = False,
        properties: dict[str, str] | None = None,
    ) -> Record:
        rec = Record(rid, name, target, self.step, malformed, properties=properties or {}, arrived=self.clock)
        self.records.setdefault(rid, []).append(rec)
        return rec

    def _decide(self, rec: Record, verdict: str, rule: str, why: str) -> None:
        """An answer due in this step."""
        rec.verdict, rec.rule, rec.why = verdict, rule, why
        self.due.append(rec)

    # ------------------------------------------------------------------
    # Queries: answered at once, change nothing (D-SERIAL), except that an
    # init response initializes its destination.

    def _query(self, rec: Record, i: Interaction, call: str | None, lifecycle: str) -> None:
        if rec.name == "interaction.query.data":
            if lifecycle != INITIALIZED:
                self._decide(rec, FAILURE, "D-LIFE-5", "data before init")
                return
            rec.check_body = lambda body: self._check_data_body(i, body)
        elif call is None:
            rec.check_body = lambda body: self._check_init(i, body)
            rec.on_success = lambda: self._initialized(i)
        else:
            leg = i.legs[call]
            rec.check_body = lambda body: self._check_conversation_init(i, leg, body)

            def initialized() -> None:
                leg.lifecycle = INITIALIZED

            rec.on_success = initialized
        self._decide(rec, SUCCESS, "S-LIFE-1", "query")

    def expected_conversations(self, i: Interaction) -> dict[str, dict[str, str]]:
        """S-INIT-3, S-INIT-4, D-INIT-7, D-CONV-ID."""
        out: dict[str, dict[str, str]] = {}
        if i.top in WITH_PRIMARY:
            out["primary"] = {"id": i.primary}
        consult = i.consult_leg()
        if i.top == STARTED and consult is not None and consult.state in LIVE:
            out["consult"] = {"id": consult.call}
        return out

    def _check_init(self, i: Interaction, body: Any) -> list[str]:
        problems: list[str] = []
        if not isinstance(body, dict) or set(body) != {
            "interaction-state",
            "interaction-data",
            "conversations",
        }:
            return [f"S-INIT-1: init body {body!r}"]
        state, data, conversations = (
            body["interaction-state"],
            body["interaction-data"],
            body["conversations"],
        )
        problems += [f"S-INIT-1: {p}" for p in _data_problems(data, "interaction-data")]
        if not isinstance(conversations, dict):
            return [*problems, f"S-INIT-2: conversations is {conversations!r}"]
        if state in WITH_PRIMARY and "primary" not in conversations:
            problems.append(f"S-INIT-3: {state} without a primary: {conversations}")
        if "consult" in conversations and state != STARTED:
            problems.append(f"S-INIT-4: consult listed in {state}: {conversations}")
        if state in (ENDED, COMPLETED) and conversations:
            problems.append(f"S-INIT-5: conversations in {state}: {conversations}")
        if state != i.top:
            problems.append(f"D-EVT-2: init says {state}, the model has {i.top}")
        expected = self.expected_conversations(i)
        if conversations != expected:
            problems.append(f"D-INIT-7/D-CONV-ID: conversations {conversations}, expected {expected}")
        problems += self._data_agrees(i, data)
        return problems

    def _initialized(self, i: Interaction) -> None:
        if i.lifecycle == SETUP:
            i.lifecycle = INITIALIZED
        listed = {c["id"] for c in self.expected_conversations(i).values()}
        i.init_pending = {c for c in listed if i.legs[c].bridge_id is None}
        i.init_listed |= listed

    def _check_conversation_init(self, i: Interaction, leg: Leg, body: Any) -> list[str]:
        if not isinstance(body, dict) or set(body) != {"conversation-state", "nativeid", "role"}:
            return [f"S-LIFE-1: conversation init body {body!r}"]
        problems = []
        if body["conversation-state"] != leg.state or body["nativeid"] != leg.call:
            problems.append(f"D-CONV-ID: conversation init {body}, the model has {leg.state} {leg.call}")
        role = "primary" if leg.call == i.primary else leg.role
        roles = {"primary", "consult"} if leg.role_either and leg.call != i.primary else {role}
        if body["role"] not in roles:
            problems.append(f"D-PRIMARY-LOSS: role {body['role']!r}, expected {sorted(roles)}")
        return problems

    def _check_data_body(self, i: Interaction, body: Any) -> list[str]:
        if not isinstance(body, dict) or set(body) != {"interaction-data"}:
            return [f"D-GENERIC: data body {body!r}"]
        data = body["interaction-data"]
        problems = [f"S-INIT-1: {p}" for p in _data_problems(data, "interaction-data")]
        return problems + self._data_agrees(i, data)

    def _data_agrees(self, i: Interaction, data: Any) -> list[str]:
        if not isinstance(data, dict):
            return []
        return [
            f"D-EVT-3: interaction-data {key}={data.get(key)!r}, setdata gave {value!r}"
            for key, value in i.data.items()
            if data.get(key) != value
        ]

    # ------------------------------------------------------------------
    # Requests, one at a time per interaction (D-SERIAL). Conversation
    # requests queue on their interaction: a conversation is a child of the
    # interaction destination, and its requests act on the same calls.

    def _pump(self, i: Interaction) -> None:
        while i.executing is None and i.waiting and i.lifecycle != DISPOSED:
            self._start(i, i.waiting.pop(0))

    def _start(self, i: Interaction, rec: Record) -> None:
        """The request starts executing: its guards are judged now. It holds
        the queue until its response is seen, and what it did is applied
        then, so that the model follows the engine's outputs in order."""
        where = self.targets.get(rec.target)
        if where is None:
            self._hold(i, rec, FAILURE, "D-LIFE-4", "destination disposed while the request waited")
            return
        spec = MESSAGES[rec.name]
        call = where[1]
        if rec.short == "dispose":
            self._hold(i, rec, SUCCESS, "D-LIFE-4", "dispose")
            rec.on_success = lambda: self._dispose(i, call)
            return
        if spec.op is not None and not self.link_up:  # D-CTRL-3: no switch, no request that needs it
            self._hold(i, rec, FAILURE, "D-CTRL-3", "the link to the switch is down")
            return
        leg = i.legs[call] if call is not None else None
        verdict, rule, why = self._guard(i, leg, rec)
        if verdict != SUCCESS or spec.op is None:
            self._hold(i, rec, verdict, rule, why)
            if verdict != FAILURE:
                rec.on_success = lambda: self._apply(i, rec)
            return
        # D-SERIAL: the timer starts when the request before it finished,
        # which a clock input may have passed already (then it is due now)
        started = max(rec.arrived, i.free_since)
        p = Executing(rec, spec.op, deadline=started + self.request_timeout)
        if p.deadline <= self.clock:
            p.due, p.timed_out = FAILURE, True
            if rec.short == "consult":
                i.consult_requested = False
        command: dict[str, Any] = {"op": spec.op}
        if leg is not None:
            p.calls = (leg.call,)
            command["call"] = leg.call
            for key in ("destination", "digits"):
                if key in rec.properties:
                    command[key] = rec.properties[key]
        elif rec.short == "alternate":
            consult = i.consult_leg()
            assert consult is not None
            primary = i.legs[i.primary]
            consult_active = consult.talked_at > primary.talked_at
            active, other = (consult, primary) if consult_active else (primary, consult)
            if active.state != TALKING and other.state == TALKING:
                # S-ALT-1: a held active leg hands over to the one that talks
                active, other = other, active
            p.calls = (active.call, other.call)
        elif rec.short in ("consulttransfer", "consultconference"):
            assert i.consult is not None
            p.calls = (i.primary, i.consult)
        else:
            p.calls = (i.primary,)
            command["call"] = i.primary
            if rec.short == "consult":
                command["destination"] = rec.properties["destination"]
                i.consult_requested = True
        if not self.acknowledges and rec.short in ("blindconference", "senddtmf"):
            # Nothing for the simulated switch to report: answered at once.
            p = Executing(rec, None, due=SUCCESS)
        rec.rule, rec.why = rule, why
        i.executing = p
        self.next_commands.append((p, command))

    def _hold(self, i: Interaction, rec: Record, verdict: str, rule: str, why: str) -> None:
        """A request answered at once, with nothing asked of the switch."""
        rec.rule, rec.why = rule, why
        i.executing = Executing(rec, None, due=verdict, started=max(rec.arrived, i.free_since))

    def _guard(self, i: Interaction, leg: Leg | None, rec: Record) -> tuple[str, str, str]:
        spec = MESSAGES[rec.name]
        props = rec.properties
        if leg is not None:
            if spec.valid_when is not None and leg.state not in spec.valid_when:
                return FAILURE, spec.rule, f"{rec.short} on a {leg.state} leg"
            if "destination" in (spec.properties or ()) and not props["destination"].strip():
                raise Ambiguous("blind transfer or conference to an empty destination")
            if rec.short == "senddtmf":
                digits = props["digits"]
                if not digits:
                    raise Ambiguous("senddtmf without digits")
                if not set(digits) <= DTMF:
                    return FAILURE, "D-CONV", f"digits {digits!r}"
            return SUCCESS, spec.rule, ""
        if rec.short == "createconversation":
            return self._guard_create(i, props["id"], props["nativeid"])
        if spec.valid_when is not None and i.top not in spec.valid_when:
            return FAILURE, spec.rule, f"{rec.short} while {i.top}"
        if rec.short in ("setdata", "complete"):
            added = len(set(props) - i.data_top)
            if added and i.data_count + added > self.max_data_keys:
                return FAILURE, "D-DATA", f"{i.data_count} + {added} data keys"
        consult = i.consult_leg()
        if spec.consult == "none":
            if i.consult_requested or consult is not None:
                return FAILURE, "D-CONS-2", "a consult is already requested or active"
            destination = props["destination"]
            if not destination:
                return FAILURE, "D-CONS-2", "empty destination"
            if not destination.strip():
                raise Ambiguous("consult to a blank destination")
            if len(i.legs) >= self.max_legs:
                return FAILURE, "D-BOUND", "too many legs"
        elif spec.consult == "connected":
            if consult is None:
                return FAILURE, spec.rule, f"{rec.short} without a consult leg"
            ringing_ok = rec.short == "consulttransfer" and self.transfer_while_consult_ringing
            if consult.state not in CONNECTED and not (ringing_ok and consult.state in RINGING):
                return FAILURE, spec.rule, f"{rec.short} with a {consult.state} consult leg"
        return SUCCESS, spec.rule, ""

    def _guard_create(self, i: Interaction, bridge_id: str, nativeid: str) -> tuple[str, str, str]:
        """S-CC-1, D-CC-2, D-CC-3."""
        if not bridge_id or "." in bridge_id:
            return FAILURE, "D-CC-2", f"conversation id {bridge_id!r} is empty or holds a '.'"
        leg = i.legs.get(nativeid)
        if leg is None:
            return FAILURE, "D-CC-2", f"nativeid {nativeid} names no leg of this interaction"
        # Where the strict reading allows it, COMPLETED makes it EITHER: the
        # spec lets createconversation follow a consult response at any
        # time, while the interaction's tables end in COMPLETED.
        allowed = EITHER if i.top == COMPLETED else SUCCESS
        for other in i.legs.values():
            if other.bridge_id == bridge_id and other.call != nativeid:
                # A conversation that was disposed: is its id still
                # "registered"? The spec does not say.
                verdict = EITHER if other.lifecycle == DISPOSED else FAILURE
                return verdict, "D-CC-3", f"id {bridge_id} is registered for {other.call}"
        if leg.bridge_id is not None:
            if leg.lifecycle == DISPOSED:
                # Re-registering a disposed conversation: D-CC-3 says
                # re-registration succeeds, D-LIFE-4 that the destination
                # is gone. Open.
                return EITHER, "D-CC-3", "its conversation was disposed"
            if leg.bridge_id != bridge_id:
                return FAILURE, "D-CC-3", f"nativeid {nativeid} is registered as {leg.bridge_id}"
            return allowed, "D-CC-3", "re-registration"
        if nativeid in i.init_pending or nativeid in i.creatable:
            return allowed, "S-CC-1", "initialization phase or named by a consult"
        if nativeid in i.init_listed:
            # Listed by an earlier init response but not by the last one: does
            # a re-init close the first phase? The spec does not say.
            return EITHER, "D-CC-3", "listed by an earlier init only"
        return FAILURE, "S-CC-1", f"nativeid {nativeid} was never listed or named"

    def _apply(self, i: Interaction, rec: Record) -> None:
        """The effect of a request answered SUCCESS at once."""
        if rec.short in ("setdata", "complete"):  # D-DATA: the keys it adds
            i.data_count += len(set(rec.properties) - i.data_top)
            i.data_top.update(rec.properties)
        if rec.short == "createconversation":
            self._created(i, rec.properties)
        elif rec.short == "setdata":
            certain = {}
            possible = {}
            for key, value in rec.properties.items():
                if key in i.uncertain:
                    possible[key] = value
                elif i.data.get(key) != value:
                    certain[key] = value
                i.data[key] = value
                i.uncertain.discard(key)
            if i.lifecycle == INITIALIZED and (certain or possible):
                self.expected_data.setdefault(i.target, []).append(DataChange(certain, possible))
        elif rec.short == "complete":
            # Whether wrap-up keys become interaction data is not said: a
            # datachanged for them is allowed, not required.
            if i.lifecycle == INITIALIZED and rec.properties:
                self.expected_data.setdefault(i.target, []).append(DataChange({}, dict(rec.properties)))
            for key in rec.properties:
                i.data.pop(key, None)
                i.uncertain.add(key)
            self._set_top(i, COMPLETED)

    def _created(self, i: Interaction, props: dict[str, str]) -> None:
        leg = i.legs[props["nativeid"]]
        if leg.bridge_id is None or leg.lifecycle == DISPOSED:
            if leg.target is not None:
                self.targets.pop(leg.target, None)
            leg.bridge_id = props["id"]
            leg.target = f"{i.target}.{leg.bridge_id}"
            leg.lifecycle = SETUP
            leg.request_ids = set()
            self.targets[leg.target] = (i.id, leg.call)
            self.disposed_targets.discard(leg.target)
        i.init_pending.discard(leg.call)
        i.creatable.discard(leg.call)

    def _dispose_now(self, i: Interaction, rec: Record, call: str | None) -> None:
        """D-SERIAL: a dispose does not wait. What executes or waits on its
        destination or below is answered FAILURE first, then the dispose."""
        below = f"{rec.target}."
        p = i.executing
        if p is not None and (p.record.target == rec.target or p.record.target.startswith(below)):
            p.due = FAILURE
            p.cancelled = True  # a consult's leg the switch names later is released (D-ASYNC)
        kept = []
        for waiting in i.waiting:
            if waiting.target == rec.target or waiting.target.startswith(below):
                self._decide(waiting, FAILURE, "D-LIFE-4", "destination disposed")
            else:
                kept.append(waiting)
        i.waiting = kept
        self._decide(rec, SUCCESS, "D-LIFE-4", "dispose")
        rec.on_success = lambda: self._dispose(i, call)

    def _dispose(self, i: Interaction, call: str | None) -> None:
        """D-LIFE-4."""
        if call is not None:
            leg = i.legs[call]
            leg.lifecycle = DISPOSED
            assert leg.target is not None
            self._forget(leg.target)
            return
        i.lifecycle = DISPOSED
        for leg in i.legs.values():
            if leg.target is not None and leg.lifecycle != DISPOSED:
                leg.lifecycle = DISPOSED
                self._forget(leg.target)
            self.calls.pop(leg.call, None)
            self.ignored.add(leg.call)
        self._forget(i.target)
        for rec in i.waiting:
            self._decide(rec, FAILURE, "D-LIFE-4", "interaction disposed while it waited")
        i.waiting.clear()
        del self.interactions[i.id]
        self.disposed[i.id] = i

    def _forget(self, target: str) -> None:
        self.targets.pop(target, None)
        self.disposed_targets.add(target)

    # ------------------------------------------------------------------
    # Outputs to the bridge.

    def _to_bridge(self, msg: Any) -> None:
        headers = msg.get("header") if isinstance(msg, dict) else None
        if not isinstance(headers, dict):
            self._problem("S-REQ-2", f"message without headers: {msg!r}")
            return
        if headers.get("type") == RESPONSE:
            self._response(msg, headers)
        elif headers.get("type") == EVENT:
            self._event(msg, headers)
        else:
            self._problem("S-REQ-2", f"the client sent a {headers.get('type')!r}: {msg}")

    def _match(self, rid: Any, target: Any) -> Record | None:
        if not isinstance(rid, str):
            return None
        candidates = [
            r for r in self.records.get(rid, []) if not r.answered and (r.target == target or r.malformed)
        ]
        current = [r for r in candidates if r.step == self.step and r.verdict is not None]
        found = current or candidates
        return found[0] if found else None

    def _response(self, msg: dict[str, Any], headers: dict[str, Any]) -> None:
        rec = self._match(headers.get("requestId"), headers.get("target"))
        if rec is None:
            if self.protocol_errors_either:
                self.stray_responses += 1
                return
            self._problem("S-REQ-2", f"response to no request awaiting an answer: {headers}")
            return
        rec.answered = True
        result = headers.get("result")
        expected_headers = {"type", "name", "target", "requestId", "result"}
        if rec.name and headers.get("name") != rec.name:
            rule = "S-REQ-2a" if rec.name.endswith("consulttransfer") else "S-REQ-2"
            self._problem(rule, f"response named {headers.get('name')!r} to {rec.name}")
        if rec.target and headers.get("target") != rec.target:
            self._problem("S-REQ-2", f"response target {headers.get('target')!r}, sent to {rec.target}")
        if result == FAILURE:
            text = headers.get("errorMessage")
            if not isinstance(text, str) or not text.strip() or "Traceback" in text:
                self._problem("S-REQ-2", f"FAILURE without a readable errorMessage: {headers}")
            expected_headers.add("errorMessage")
        elif result != SUCCESS:
            self._problem("S-REQ-2", f"result {result!r}")
            return
        if set(headers) != expected_headers:
            self._problem("S-REQ-2", f"response headers {sorted(headers)}")
        body = msg.get("body")
        if not isinstance(body, dict) or (result == FAILURE and body):
            self._problem("D-BODY", f"response body {body!r}: an object, {{}} on FAILURE")
        i = self._interaction_of(rec)
        if i is not None and i.executing is not None:
            self._executing_answered(i, i.executing, result, msg)
            return
        if rec.verdict is None:
            self._problem("D-SERIAL", f"{rec.name} {rec.rid} answered before it started executing")
            return
        self._compare(rec, result, msg)

    def _interaction_of(self, rec: Record) -> Interaction | None:
        for i in self.interactions.values():
            if i.executing is not None and i.executing.record is rec:
                return i
        return None

    def _compare(self, rec: Record, result: str, msg: dict[str, Any]) -> None:
        if rec.verdict != EITHER and result != rec.verdict:
            self._problem(
                rec.rule or "S-REQ-2",
                f"{rec.name} {rec.rid} on {rec.target}: engine {result}, model {rec.verdict} ({rec.why})",
            )
            return
        if result == SUCCESS:
            if rec.check_body is not None:
                self.problems += rec.check_body(msg.get("body"))
            if rec.on_success is not None:
                rec.on_success()

    def _executing_answered(self, i: Interaction, p: Executing, result: str, msg: dict[str, Any]) -> None:
        rec = p.record
        i.executing = None
        if p.due is None and not (p.may_fail and result == FAILURE):
            self._problem(
                "D-ASYNC",
                f"{rec.name} {rec.rid} answered {result} before the switch settled it",
            )
        elif p.due is not None and p.due != EITHER and result != p.due:
            self._problem(
                rec.rule or "D-ASYNC",
                f"{rec.name} {rec.rid} on {rec.target}: engine {result}, model {p.due} ({rec.why})",
            )
        if result == SUCCESS:
            if rec.on_success is not None:
                rec.on_success()
            if p.op == "consult":
                props = msg.get("body", {})
                if props != {"nativeid": p.named}:
                    self._problem("S-CONS-1", f"consult SUCCESS properties {props}, leg {p.named}")
                if p.named is not None:
                    i.creatable.add(p.named)
        elif p.op == "consult" and p.named is None:
            if p.timed_out or p.cancelled:
                self.abandoned[p.command or ""] = "timeout"
            elif p.may_fail and i.consult_requested:
                self.abandoned[p.command or ""] = "maybe"
            i.consult_requested = False
        # D-SERIAL: what waited starts when this one finished: at its deadline if it timed out
        if p.op is None:  # answered at once: it finished when it started
            i.free_since = p.started
        else:
            i.free_since = p.deadline if p.timed_out and p.deadline < math.inf else self.clock
        self._pump(i)

    def _event(self, msg: dict[str, Any], headers: dict[str, Any]) -> None:
        name, target = headers.get("name"), headers.get("target")
        if (
            set(headers) != {"type", "name", "target"}
            or not isinstance(name, str)
            or not isinstance(target, str)
        ):
            self._problem("S-EVT-0", f"event headers {headers}")
            return
        props = msg.get("body", {})
        if name == "interaction.created":
            if target != self.channel:
                self._problem("D-NEW", f"interaction.created on {target}")
        elif target == self.control:
            if name != "cti.status":
                self._problem("D-CTRL-1", f"{name} on the control destination")
        elif target in self.disposed_targets:
            self._problem("D-LIFE-4", f"{name} on disposed destination {target}")
        elif target not in self.targets:
            self._problem("D-TARGET", f"{name} on unknown destination {target}")
        elif self._lifecycle(target) != INITIALIZED:
            self._problem("S-LIFE-2", f"{name} on {target} before its init was answered")
        if name == "interaction.datachanged":  # D-BODY: {"interaction-data": changed keys}
            changed = props.get("interaction-data") if isinstance(props, dict) else None
            self.actual_data.setdefault(target, []).append(changed if isinstance(changed, dict) else props)
        else:
            self.actual_events.setdefault(target, []).append((name, props))

    def _lifecycle(self, target: str) -> str:
        iid, call = self.targets[target]
        i = self.interactions[iid]
        return i.lifecycle if call is None else i.legs[call].lifecycle

    def _expect(self, target: str, name: str, props: dict[str, str] | None = None) -> None:
        self.expected_events.setdefault(target, []).append((name, props))

    def _compare_events(self) -> None:
        """D-LIFE-3, D-EVT-2: the events of this step, destination by
        destination, are exactly the changes of this step on initialized
        destinations, in order."""
        for target in sorted(set(self.expected_events) | set(self.actual_events)):
            expected = self.expected_events.get(target, [])
            actual = self.actual_events.get(target, [])
            ok = len(expected) == len(actual) and all(
                e_name == a_name and (e_props is None or e_props == a_props)
                for (e_name, e_props), (a_name, a_props) in zip(expected, actual, strict=True)
            )
            if not ok:
                self._problem(
                    "D-LIFE-3/D-EVT-2",
                    f"events on {target}: {[a[0] for a in actual]}, expected {[e[0] for e in expected]}",
                )
        for target in sorted(set(self.expected_data) | set(self.actual_data)):
            actual_data = list(self.actual_data.get(target, []))
            for change in self.expected_data.get(target, []):
                fits = bool(actual_data) and _fits(actual_data[0], change)
                if fits:
                    actual_data.pop(0)
                elif change.certain:
                    self._problem("D-EVT-3", f"no datachanged {change.certain} on {target}")
            for props in actual_data:
                self._problem("D-EVT-3", f"unexpected datachanged {props} on {target}")

    # ------------------------------------------------------------------
    # Commands to the switch.

    def _command(self, command: Any) -> None:
        if not isinstance(command, dict) or not isinstance(command.get("id"), str):
            self._problem("harness", f"malformed switch command {command!r}")
            return
        self.commands[command["id"]] = command
        if self.next_commands:
            p, expected = self.next_commands.pop(0)
            got = {k: command.get(k) for k in expected}
            if got != expected:
                self._problem("harness", f"switch command {command}, expected {expected}")
            elif (
                p is not None
                and p.op in ("transfer", "conference", "alternate")
                and command.get("call") not in p.calls
            ):
                self._problem("harness", f"{p.op} command on {command.get('call')}, legs {p.calls}")
            if p is not None:
                p.command = command["id"]
            return
        op, call = command.get("op"), command.get("call")
        if op == "release" and call in self.expected_releases | self.optional_releases:
            self.expected_releases.discard(call)
            self.optional_releases.discard(call)
            return
        if op == "retrieve" and self.reconnect_on_consult_end:
            return  # D-CONSULT-END: the policy retrieves the held primary
        self._problem("harness", f"switch command {command} that no request asked for")

    # ------------------------------------------------------------------
    # The clock (D-ASYNC).

    def _clock(self, advance: Any) -> None:
        if isinstance(advance, bool) or not isinstance(advance, int | float):
            return
        if not 0 <= advance < math.inf or (type(advance) is int and advance > 2**53):
            return  # D-BAD: an error, nothing changes
        if self.clock + advance >= 1e12:
            return  # D-BAD: the clock stays below 10^12 s
        self.clock += advance
        for i in self.interactions.values():
            p = i.executing
            # "After" the timeout: at the deadline itself it has passed.
            if p is not None and p.op is not None and p.due is None and p.deadline <= self.clock:
                p.due = FAILURE
                p.timed_out = True
                if p.record.short == "consult":
                    i.consult_requested = False

    # ------------------------------------------------------------------
    # Switch events.

    def _switch(self, ev: Any) -> None:
        if not _valid_event(ev):
            return
        kind = ev["kind"]
        if kind == "result":
            self._result(ev["command"], ev["ok"], ev.get("call", ""))
            return
        if kind == "link":
            self._link(ev["up"], ev.get("reason", ""))
            return
        call = ev["call"]
        self.seen_calls.add(call)
        if call in self.ignored:
            return
        iid = self.calls.get(call)
        if kind == "offered":
            if iid is None:
                self._new_interaction(call, ALERTING)
                self._arrived_data(self.interactions[call], ev)
            return
        if iid is None:
            if kind == "dialing":
                self._new_leg(call)
                if call in self.interactions:  # a new outbound interaction (D-NEW)
                    self._arrived_data(self.interactions[call], ev)
            return
        i = self.interactions[iid]
        self._leg_event(i, i.legs[call], kind)

    def _link(self, up: bool, reason: str) -> None:
        """F-CTRL-3, D-CTRL-3: the status follows the link and is reported (the
        start-up exchange happened before the model starts); when it goes
        down, every request waiting on the switch is answered FAILURE now."""
        if up != self.link_up:
            status = "started" if up else "cti-lost"
            self._expect(self.control, "cti.status", {"status": status, "reason": reason})
        self.link_up = up
        if up:
            return
        for i in self.interactions.values():
            p = i.executing
            if p is not None and p.op is not None and p.due is None:
                p.due, p.cancelled = FAILURE, True
                p.record.rule, p.record.why = "D-CTRL-3", "the link went down"
                if p.record.short == "consult":
                    i.consult_requested = False

    def _arrived_data(self, i: Interaction, ev: dict[str, Any]) -> None:
        """D-DATA, S-INIT-1: what a new call's data holds: the ani, dnis and
        destination it names, then its data without the values that are not
        strings or objects, objects past 8 levels, lone surrogates, and the
        keys past max_data_keys, in order."""
        named = [key for key in ("ani", "dnis", "destination") if ev.get(key)]
        i.data_top.update(named)
        left = max(self.max_data_keys - len(named), 0)
        kept = 0

        def walk(data: dict[str, Any], level: int) -> None:
            nonlocal left, kept
            for key, value in data.items():
                if _lone_surrogate(key) or (isinstance(value, str) and _lone_surrogate(value)):
                    continue
                if not isinstance(value, str) and not (isinstance(value, dict) and level < 8):
                    continue
                if left <= 0:
                    continue
                left -= 1
                kept += 1
                if level == 1:
                    i.data_top.add(key)
                if isinstance(value, dict):
                    walk(value, level + 1)

        data = ev.get("data")
        if isinstance(data, dict):
            walk(data, 1)
        i.data_count = len(named) + kept

    def _new_interaction(self, call: str, state: str) -> None:
        """D-NEW."""
        encoded = call.replace("%", "%25").replace(".", "%2E")  # D-TARGET
        target = f"{self.channel}.{encoded}"
        i = Interaction(call, target, state, call)
        i.legs[call] = Leg(call, call, "primary", state)
        self.interactions[call] = i
        self.targets[target] = (call, None)
        self.calls[call] = call
        self._expect(self.channel, "interaction.created", {"interactionid": encoded, "type": "telephony"})

    def new_dialing_owner(self) -> tuple[str, Interaction | None]:
        """What a `dialing` event for a new call means now: ("consult", i)
        the leg of i's pending consult, ("phone", i) a consult made on the
        phone (S-EVT-1), ("outbound", None) a new interaction; or
        ("ambiguous", None) when the spec does not settle it."""
        requested = [i for i in self.interactions.values() if i.consult_requested]
        if len(requested) > 1 or self.abandoned:
            # Two consults waiting for a leg; or a consult abandoned whose
            # leg may be this one (harness.md: the first new leg is the
            # pending consult's).
            return "ambiguous", None
        if requested:
            return "consult", requested[0]
        candidates = [i for i in self.interactions.values() if i.top == STARTED and i.consult_leg() is None]
        if len(candidates) > 1 or any(i.executing is not None for i in candidates):
            # Several interactions the agent could be consulting from; or one
            # executing a request other than consult ("no consult command is
            # pending on it", but the request owns the legs).
            return "ambiguous", None
        if candidates:
            return "phone", candidates[0]
        return "outbound", None

    def _new_leg(self, call: str) -> None:
        meaning, i = self.new_dialing_owner()
        if meaning == "ambiguous":
            raise Ambiguous(f"dialing for new call {call}")
        if meaning == "outbound":
            self._new_interaction(call, DIALING)
            return
        assert i is not None
        leg = Leg(call, i.id, "consult", DIALING)
        i.legs[call] = leg
        self.calls[call] = i.id
        i.consult = call
        if meaning == "consult":
            self._named(i, call)
        elif i.lifecycle == INITIALIZED:  # S-EVT-1
            i.creatable.add(call)
            self._expect(i.target, "interaction.consult", {"nativeid": call})

    def _named(self, i: Interaction, call: str) -> None:
        """D-ASYNC: a consult is SUCCESS as soon as the switch names its leg."""
        i.consult_requested = False
        p = i.executing
        assert p is not None and p.record.short == "consult"
        p.named = call
        p.due = SUCCESS

    def _leg_event(self, i: Interaction, leg: Leg, kind: str) -> None:
        new = LEG_EVENTS.get((leg.state, kind))
        if new is None:
            return
        before = leg.state
        if new != before:
            leg.state = new
            if leg.lifecycle == INITIALIZED:
                self._expect(leg.target or "", f"conversation.{new.lower()}")
            if TALKING in (new, before):
                # S-ALT-1: leaving TALKING counts too; of two held legs, the
                # one that stopped talking last is the active one.
                self.ticks += 1
                leg.talked_at = self.ticks
            if leg.call == i.primary:
                if new == TALKING and i.top in (ALERTING, DIALING):
                    self._set_top(i, STARTED)
                elif new == ENDED:
                    self._primary_lost(i)
            elif leg.call == i.consult and new == ENDED:
                i.consult = None  # D-CONSULT-END
        self._settle(i)

    def _primary_lost(self, i: Interaction) -> None:
        """D-PRIMARY-LOSS."""
        consult = i.consult_leg()
        if consult is not None and consult.state in LIVE:
            i.legs[i.primary].role_either = True
            consult.role = "primary"
            i.primary, i.consult = consult.call, None
            if consult.state not in CONNECTED:
                self._set_top(i, DIALING)
            return
        i.consult = None
        p = i.executing
        if p is not None and p.record.short == "consult" and i.consult_requested:
            # The consult waits for a leg and no leg is left: the spec says
            # neither that it fails now nor that it keeps waiting.
            p.may_fail = True
        if i.top not in (ENDED, COMPLETED):
            self._set_top(i, ENDED)

    def _set_top(self, i: Interaction, state: str) -> None:
        if state == i.top:
            return
        i.top = state
        if i.lifecycle == INITIALIZED:  # D-EVT-2, S-LIFE-2
            self._expect(i.target, f"interaction.{state.lower()}")

    def _settle(self, i: Interaction) -> None:
        """Whether the switch has now settled the executing request."""
        p = i.executing
        if p is None or p.due is not None or p.op is None:
            return
        p.due = self._done(i, p)

    def _done(self, i: Interaction, p: Executing) -> str | None:
        short = p.record.short
        state = {call: i.legs[call].state for call in p.calls}
        first = state[p.calls[0]]
        if short == "accept":
            return SUCCESS if i.top == STARTED else FAILURE if i.top == ENDED else None
        if short in ("reject", "consulttransfer"):
            return SUCCESS if i.top == ENDED else None
        if short == "consultconference":
            primary, consult = (state[c] for c in p.calls)
            if primary == ENDED:
                return FAILURE
            return SUCCESS if consult == ENDED and primary == TALKING else None
        if short == "alternate":
            active, other = (state[c] for c in p.calls)
            if ENDED in (active, other):
                return FAILURE
            return SUCCESS if active == HELD and other == TALKING else None
        if short in ("answer", "retrieve"):
            return SUCCESS if first == TALKING else FAILURE if first == ENDED else None
        if short == "hold":
            return SUCCESS if first == HELD else FAILURE if first == ENDED else None
        if short in ("release", "blindtransfer"):
            return SUCCESS if first == ENDED else None
        return None  # consult is settled by naming its leg; the rest by `result`

    def _result(self, command: str, ok: bool, call: str) -> None:
        for i in self.interactions.values():
            p = i.executing
            if p is None or p.command != command:
                continue
            if p.due is not None:
                return
            if not ok:
                p.due = FAILURE
                if p.record.short == "consult":
                    i.consult_requested = False
            elif p.record.short in ("senddtmf", "blindconference"):
                p.due = SUCCESS  # D-DONE: at once, done when acknowledged
            elif p.record.short != "consult":
                pass  # D-DONE: accepted; its state event settles it
            elif i.consult_requested and call:
                if call in self.seen_calls:
                    raise Ambiguous(f"result names known call {call} as a consult leg")
                self.seen_calls.add(call)
                leg = Leg(call, i.id, "consult", DIALING)
                i.legs[call] = leg
                self.calls[call] = i.id
                i.consult = call
                self._named(i, call)
            return
        kind = self.abandoned.pop(command, None)
        if kind is not None and ok and call and call not in self.seen_calls:
            # D-ASYNC: a leg named after the consult failed is released.
            self.seen_calls.add(call)
            self.ignored.add(call)
            (self.expected_releases if kind == "timeout" else self.optional_releases).add(call)


def _unwritable(value: Any, level: int) -> str | None:
    """D-BAD, wherever it appears: a lone surrogate, an integer beyond 2^53,
    a float not finite, nesting deeper than 32 levels (the message is 1)."""
    if isinstance(value, str):
        return "a lone surrogate" if any(0xD800 <= ord(c) <= 0xDFFF for c in value) else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return "an integer beyond 2^53" if abs(value) > 2**53 else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number that is not finite"
    if level > 32:
        return "nesting deeper than 32 levels"
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    for key, item in items:
        found = _unwritable(key, level) if isinstance(key, str) else None
        found = found or _unwritable(item, level + 1)
        if found:
            return found
    return None


def _valid_event(ev: Any) -> bool:
    """harness.md: a switch event with a missing required field or a wrong
    type changes nothing; nor does one holding a lone surrogate (D-BAD)."""
    if not isinstance(ev, dict) or ev.get("kind") not in EVENT_KINDS:
        return False
    if any(isinstance(v, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in v) for v in ev.values()):
        return False
    kind = ev["kind"]
    required, optional = EVENT_KINDS[kind]
    if any(key not in ev for key in required):
        return False
    if kind == "result":
        if not isinstance(ev["command"], str) or not isinstance(ev["ok"], bool):
            return False
    elif kind == "link":
        if not isinstance(ev["up"], bool):
            return False
    elif not isinstance(ev["call"], str) or not ev["call"]:
        return False
    if kind == "offered" and (not isinstance(ev["device"], str) or not ev["device"]):
        return False  # H-SW-1: an offered call names its device
    if any(key in ev and not isinstance(ev[key], str) for key in optional):
        return False
    # D-DATA: data that is an object is trimmed of what breaks it, not refused
    if "data" in ev and (kind != "offered" or not isinstance(ev["data"], dict)):
        return False
    if set(ev) - {"kind", "data", *required, *optional}:
        raise Ambiguous(f"switch event with fields harness.md does not list: {ev}")
    return True


def _lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _data_problems(value: Any, where: str) -> list[str]:
    """S-INIT-1: interaction data is strings or objects of the same kind."""
    if not isinstance(value, dict):
        return [f"{where} is {value!r}, not an object"]
    problems: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict):
            problems += _data_problems(item, f"{where}.{key}")
        elif not isinstance(item, str):
            problems.append(f"{where}.{key} is {item!r}")
    return problems


def _fits(props: dict[str, str], change: DataChange) -> bool:
    allowed = {**change.possible, **change.certain}
    return (
        bool(props)
        and set(change.certain) <= set(props)
        and all(key in allowed and allowed[key] == value for key, value in props.items())
    )

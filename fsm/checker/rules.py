"""The trace checker's judgements: response bodies, and the preconditions of
requests, read from the same tables the engine runs.

Each function returns findings, ``(rule ID, explanation)``, and changes
nothing; :mod:`fsm.checker` turns them into violations at a trace line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, cast

import attrs

from fsm.catalog import GUARDS, GuardContext, RequestSpec, first_refusal, read_properties
from fsm.checker.model import TOP_STATES, WITH_PRIMARY, WITHOUT_CONVERSATIONS, InteractionFacts
from fsm.errors import Refusal
from fsm.machines import (
    CONVERSATION_STATES,
    STARTED,
    Edge,
    StateMachine,
    join_words,
    top,
)
from fsm.messages import FAILURE, MAX_DATA_DEPTH, SUCCESS, check_data, count_keys
from fsm.policy import Policy

#: What a check of the checker finds: a rule the trace breaks and why.
Finding = Refusal

#: Request guards that look at the request's properties only, so that the
#: checker can run them as they are.
PROPERTY_GUARDS: Final = frozenset({"destination_given", "blind_destination_given", "digits_valid"})
ROLES: Final = ("primary", "consult")


# --------------------------------------------------------------------------
# Response bodies.


@attrs.frozen
class InitSnapshot:
    """The parts of an interaction.query.init body the checker follows."""

    #: a top-level state, or None when the body does not give a valid one
    state: str | None
    #: role -> CTI id, or None when ``conversations`` is unreadable
    listed: dict[str, str] | None


def check_init_body(body: object, max_keys: int) -> tuple[list[Finding], InitSnapshot]:
    """S-INIT-1..5 against the state the body itself reports; D-DATA with
    ``max_keys`` (policy max_data_keys)."""
    if not isinstance(body, dict):
        what = "no body" if body is None else f"the body {body!r}"
        return [Refusal("S-INIT-1", f"init response has {what}; it must be an object")], InitSnapshot(
            None, None
        )
    found: list[Finding] = []
    state = body.get("interaction-state")
    if state not in TOP_STATES:
        found.append(
            Refusal("S-INIT-1", f"interaction-state {state!r} is not one of {join_words(TOP_STATES)}")
        )
        state = None
    if "interaction-data" not in body:
        found.append(Refusal("S-INIT-1", "init response has no interaction-data"))
    else:
        found += _data_findings(body["interaction-data"], "interaction-data", max_keys)
    extra = sorted(set(body) - {"interaction-state", "interaction-data", "conversations"})
    if extra:
        found.append(Refusal("S-INIT-1", f"init response has unknown key {', '.join(extra)}"))
    conversations = body.get("conversations")
    listed: dict[str, str] | None = None
    if "conversations" not in body:
        found.append(
            Refusal("S-INIT-2", "init response has no conversations (it must be {} when there is none)")
        )
    elif not isinstance(conversations, dict):
        found.append(Refusal("S-INIT-2", f"conversations must be an object, got {conversations!r}"))
    else:
        listed = {}
        for role, entry in conversations.items():
            if role not in ROLES:
                found.append(Refusal("S-INIT-1", f"conversations has unknown role {role!r}"))
            elif not _is_conversation_entry(entry):
                found.append(
                    Refusal("S-INIT-1", f'conversations.{role} must be {{"id": CTI id}}, got {entry!r}')
                )
            else:
                listed[role] = entry["id"]
    if state is not None and listed is not None:
        found += _listing_findings(state, listed)
    return found, InitSnapshot(state, listed)


def _is_conversation_entry(entry: object) -> bool:
    if not isinstance(entry, dict) or set(entry) != {"id"}:
        return False
    ident = entry["id"]
    return isinstance(ident, str) and bool(ident)


def _listing_findings(state: str, listed: Mapping[str, str]) -> list[Finding]:
    found: list[Finding] = []
    if state in WITH_PRIMARY and "primary" not in listed:
        found.append(Refusal("S-INIT-3", f"the state is {state}, yet conversations lists no primary"))
    if "consult" in listed and state != STARTED:
        found.append(
            Refusal("S-INIT-4", f"the state is {state}, yet conversations lists a consult (needs STARTED)")
        )
    if state in WITHOUT_CONVERSATIONS and listed:
        roles = ", ".join(listed)
        found.append(
            Refusal("S-INIT-5", f"the state is {state}, yet conversations lists {roles} (must be {{}})")
        )
    return found


def _data_findings(data: object, where: str, max_keys: int) -> list[Finding]:
    """S-INIT-1: strings or objects of the same kind; D-DATA: at most
    MAX_DATA_DEPTH levels and ``max_keys`` keys (policy max_data_keys)."""
    try:
        check_data(data, where)
    except TypeError as exc:
        return [Refusal("S-INIT-1", str(exc))]
    assert isinstance(data, dict)
    found: list[Finding] = []
    depth = _depth(data)
    if depth > MAX_DATA_DEPTH:
        found.append(Refusal("D-DATA", f"{where} nests {depth} levels deep, more than {MAX_DATA_DEPTH}"))
    keys = count_keys(data)
    if keys > max_keys:
        found.append(Refusal("D-DATA", f"{where} holds {keys} keys, more than max_data_keys ({max_keys})"))
    return found


def _depth(data: dict[str, Any]) -> int:
    """How deep interaction data nests; the data object is level 1."""
    deepest, level, layer = 0, 0, [data]
    while layer:
        level += 1
        deepest = level
        layer = [item for value in layer for item in value.values() if isinstance(item, dict)]
    return deepest


def check_conversation_body(body: object) -> tuple[list[Finding], tuple[str, str, str] | None]:
    """The conversation.query.init body: ``{"conversation-state", "nativeid",
    "role"}`` (D-CONV). Returns the findings and (state, nativeid, role)
    when the body is sound."""
    keys = ("conversation-state", "nativeid", "role")
    if not isinstance(body, dict) or set(body) != set(keys):
        return [
            Refusal("D-CONV", f"conversation init body must have exactly the keys {', '.join(keys)}")
        ], None
    state, nativeid, role = (body[k] for k in keys)
    found: list[Finding] = []
    if state not in CONVERSATION_STATES:
        found.append(
            Refusal("D-CONV", f"conversation-state {state!r} is not one of {join_words(CONVERSATION_STATES)}")
        )
    if not isinstance(nativeid, str) or not nativeid:
        found.append(Refusal("D-CONV-ID", f"nativeid {nativeid!r} is not a CTI id"))
    if role not in ROLES:
        found.append(Refusal("D-CONV", f"role {role!r} is not primary or consult"))
    return found, None if found else (state, nativeid, role)


def check_data_body(body: object, max_keys: int) -> list[Finding]:
    """The interaction.query.data body: ``{"interaction-data": {...}}``."""
    if not isinstance(body, dict) or set(body) != {"interaction-data"}:
        return [Refusal("D-GENERIC", 'the data query answer must be {"interaction-data": {...}}')]
    return _data_findings(body["interaction-data"], "interaction-data", max_keys)


# --------------------------------------------------------------------------
# Preconditions.


def state_refusal(
    machine: StateMachine, spec: RequestSpec, states: Iterable[str], policy: Policy
) -> Finding | None:
    """None when ``spec``'s trigger may fire from one of ``states``; else the
    rule and why not. The rule is chosen as the engine chooses it: a guard's
    rule, the request's substate rule when the top-level state is right but
    the substate is not (consult while one is active: D-CONS-2), or the
    edge's rule."""
    assert spec.trigger is not None
    ordered = [s for s in machine.states if s in set(states)]
    refusals: list[tuple[str, Refusal]] = []
    for state in ordered:
        outcome = machine.check(state, spec.trigger, policy)
        if isinstance(outcome, Edge):
            return None
        refusals.append((state, outcome))
    if not refusals:
        return None
    state, refusal = refusals[0]
    if refusal.guard is not None:
        return Refusal(refusal.rule, refusal.reason)
    sources = machine.sources(spec.trigger)
    rule = refusal.rule
    if spec.substate_rule and top(state) in {top(s) for s in sources}:
        rule = spec.substate_rule
    seen = join_words(s for s, _ in refusals)
    allowed = join_words(dict.fromkeys(sources))
    return Refusal(rule, f"the {machine.name} was {seen} throughout, and {spec.short} needs {allowed}")


def property_refusal(spec: RequestSpec, properties: dict[str, str], policy: Policy) -> Finding | None:
    """The request's guards that judge its properties only (a consult's
    destination, DTMF digits), run as the engine runs them."""
    names = [n for n in spec.guards if n in PROPERTY_GUARDS]
    if not names:
        return None
    structured = _structure(spec, properties)
    if structured is None:
        return None
    # These guards read the properties only; they get no interaction.
    context = GuardContext(cast(Any, None), None, structured, policy)
    return first_refusal((GUARDS[name] for name in names), context)


def _structure(spec: RequestSpec, properties: dict[str, str]) -> object:
    try:
        return read_properties(spec, properties)
    except TypeError:
        return None


def creation_refusal(facts: InteractionFacts, bridge_id: str, nativeid: str) -> Finding | None:
    """createconversation: the guards of the catalog, in the engine's order,
    on what the messages told (D-CC-2, D-CC-3, D-LIFE-4, S-CC-1, D-CC-4)."""
    leg = facts.legs.get(nativeid)
    if leg is None:
        return Refusal(
            "D-CC-2",
            f"nativeid {nativeid!r} names no call leg the client announced "
            "(init snapshot, consult response or interaction.consult event)",
        )
    for other in facts.legs.values():
        if other.bridge_id == bridge_id and other.nativeid != nativeid:
            return Refusal(
                "D-CC-3", f"conversation id {bridge_id!r} was registered for nativeid {other.nativeid!r}"
            )
    if leg.bridge_id is not None and leg.bridge_id != bridge_id:
        return Refusal("D-CC-3", f"nativeid {nativeid!r} was registered as conversation {leg.bridge_id!r}")
    if leg.disposed:
        return Refusal("D-LIFE-4", f"the conversation of nativeid {nativeid!r} was disposed")
    if leg.bridge_id == bridge_id or nativeid in facts.init_pending or nativeid in facts.creatable:
        return None
    return Refusal(
        "S-CC-1",
        f"nativeid {nativeid!r} was neither listed by the last init response and not yet "
        "created, nor named by a consult response or interaction.consult event",
    )


# --------------------------------------------------------------------------
# Responses.

TRANSFER: Final = "interaction.request.consulttransfer"
#: The name the seed's response table gives consulttransfer's response (S-REQ-2a).
SEED_SLIP: Final = "interaction.request.reject"


def header_findings(
    asked_name: str, label: str, headers: dict[str, Any], message: dict[str, Any]
) -> list[Finding]:
    """S-REQ-2, S-REQ-2a: the echoed name, the result, the errorMessage."""
    found: list[Finding] = []
    name = headers.get("name")
    if name != asked_name:
        if asked_name == TRANSFER and name == SEED_SLIP:
            found.append(Refusal("S-REQ-2a", f"the response to {label} is named {SEED_SLIP}, not {TRANSFER}"))
        else:
            found.append(Refusal("S-REQ-2", f"the response to {label} is named {name!r}, not {asked_name!r}"))
    result = headers.get("result")
    if result not in (SUCCESS, FAILURE):
        found.append(
            Refusal("S-REQ-2", f"the response to {label} has result {result!r}, not SUCCESS or FAILURE")
        )
    if result == FAILURE:
        error = headers.get("errorMessage")
        if not isinstance(error, str) or not error.strip():
            found.append(Refusal("S-REQ-2", f"the FAILURE response to {label} has no errorMessage"))
        elif "Traceback (most recent call last)" in error:
            found.append(Refusal("S-REQ-2", f"the errorMessage of the response to {label} is a stack trace"))
    body = message.get("body")
    if not isinstance(body, dict):
        found.append(
            Refusal("D-ENV", f"the response to {label} has no body object (the client always writes one)")
        )
    elif result == FAILURE and body:
        found.append(Refusal("D-BODY", f"the FAILURE response to {label} has a body; it is always {{}}"))
    return found


def envelope_findings(message: object) -> list[Finding]:
    """F-ENV, D-ENV: a message the client writes is ``{"header": ...,
    "body": ...}``. One in the guessed envelope of old (``headers``,
    ``properties``) is D-BAD; the client writes a body always and exactly
    the header keys of the table."""
    if not isinstance(message, dict):
        return [Refusal("D-BAD", "a message is a JSON object {header, body}")]
    old = [key for key in ("headers", "properties") if key in message]
    if old:
        keys = " and ".join(repr(k) for k in old)
        return [Refusal("D-BAD", f"a message with {keys}: the envelope is {{header, body}} (F-ENV)")]
    header = message.get("header")
    if not isinstance(header, dict):
        return [Refusal("F-ENV", "a message has a header object")]
    found: list[Finding] = []
    extra = sorted(set(header) - _CLIENT_HEADER_KEYS)
    if extra:
        found.append(Refusal("D-ENV", f"the client writes no header key {', '.join(map(repr, extra))}"))
    if not isinstance(message.get("body"), dict):
        found.append(
            Refusal("D-ENV", f"{header.get('name')!r} has no body object (the client always writes one)")
        )
    return found


#: The header keys the client may write (the table of "Messages").
_CLIENT_HEADER_KEYS: Final = frozenset({"type", "name", "target", "requestId", "result", "errorMessage"})


def message_body(message: dict[str, Any]) -> dict[str, Any]:
    """The body of a message, ``{}`` when it has none (D-ENV)."""
    body = message.get("body")
    return body if isinstance(body, dict) else {}


def is_text(value: object) -> bool:
    """A non-empty string."""
    return isinstance(value, str) and bool(value)

"""A scripted agent session: what the customer, the agent and the clock do.

A session is a list of steps, one JSON object each (a file of steps is JSONL):

- ``{"actor": "customer", "event": SWITCH_EVENT}``: the outside world acts on
  the switch (harness.md switch events: ``offered``, ``ended``, ...);
- ``{"actor": "agent", "action": ACTION, "role": "primary", "body": {...}}``:
  the agent's desktop asks the bridge for an action (see
  ``adapters.bridge.ACTIONS``; ``role`` picks the conversation for
  conversation actions; ``dial`` with ``{"destination": NUMBER}`` asks the
  agent's telephony channel for an outbound call, whose interaction the
  next steps act on);
- ``{"actor": "clock", "advance": SECONDS}``;
- ``{"actor": "far", "do": "call" | "hangup" | "dtmf", "party": NAME, ...}``:
  a far end acts over real SIP (``demo --switch sip`` only; the fields are
  those of the cast's control lines, :mod:`adapters.sip.cast`);
- ``{"actor": "bridge", "wait": WAIT, "timeout": SECONDS}``: the bridge
  waits before its next step, for what a real far end makes it wait for
  (``timeout`` default 30; a wait that times out fails the run, naming what
  it waited for). WAIT is ``{"seconds": N}``, ``{"event": NAME}`` (an event
  of that name arrives, on any destination), or ``{"state": STATE}`` (the step's interaction
  reaches STATE; with ``"role": "primary" | "consult"``, that conversation
  does: ``TALKING``, ``HELD``, ``ENDED``, ...). In the one-process demos
  the switch settles before every step, so an event or state wait only
  checks, and ``seconds`` advances the clock.

Every step may carry ``"say"``: a caption for people. ``interaction`` names
the interaction an agent step acts on (default: the newest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from adapters.bridge import ACTIONS
from fsm.codec import JSONDecodeError, loads

Step = dict[str, Any]

#: what a far end can be told to do (adapters.sip.cast)
FAR_ACTIONS = ("call", "hangup", "dtmf")

#: The demo's call (harness.md): offer, init, accept, consult, alternate,
#: conference, second consult, transfer, complete.
DEMO_CALL: list[Step] = [
    {
        "actor": "customer",
        "say": "a customer calls; the bridge initializes the interaction and its conversation",
        "event": {
            "kind": "offered",
            "call": "c1",
            "device": "1001",
            "ani": "5551000",
            "dnis": "800",
            "data": {"account": {"id": "42", "tier": "gold"}},
        },
    },
    {"actor": "agent", "action": "accept", "say": "the agent accepts the call"},
    {
        "actor": "agent",
        "action": "consult",
        "body": {"destination": "200"},
        "say": "the agent consults an expert at 200 (the customer is held)",
    },
    {"actor": "agent", "action": "alternate", "say": "the agent alternates back to the customer"},
    {"actor": "agent", "action": "alternate", "say": "and back to the expert"},
    {"actor": "agent", "action": "conference", "say": "the agent conferences the expert in"},
    {
        "actor": "agent",
        "action": "consult",
        "body": {"destination": "300"},
        "say": "the agent consults a second expert at 300",
    },
    {"actor": "agent", "action": "transfer", "say": "the agent transfers the customer to 300"},
    {
        "actor": "agent",
        "action": "complete",
        "body": {"wrapup": "transferred"},
        "say": "the agent completes the wrap-up; the bridge disposes the interaction",
    },
]


def agents_call(count: int, steps: list[Step] | None = None) -> list[Step]:
    """``count`` agents' copies of ``steps`` (the demo's call), interleaved
    step by step: agent k (agent-k at end-point 1000+k) gets call ``c<k>``
    on its own device, and its agent steps name that interaction."""
    steps = steps or DEMO_CALL
    copies: list[list[Step]] = []
    for k in range(1, count + 1):
        call, device = f"c{k}", f"{1000 + k}"
        copy: list[Step] = []
        for step in steps:
            step = dict(step)
            if step["actor"] == "customer":
                event = dict(step["event"])
                if event.get("call") == "c1":
                    event["call"] = call
                if "device" in event:
                    event["device"] = device
                step["event"] = event
            elif step["actor"] == "agent":
                step["interaction"] = call
            if "say" in step:
                step["say"] = f"agent-{k}: {step['say']}"
            copy.append(step)
        copies.append(copy)
    return [step for group in zip(*copies, strict=True) for step in group]


class BadSession(ValueError):
    """A step file that cannot be played, with the line and the reason."""


def check_step(step: object, where: str) -> Step:
    if not isinstance(step, dict):
        raise BadSession(f"{where}: a step must be a JSON object")
    actor = step.get("actor")
    if actor == "customer":
        if not isinstance(step.get("event"), dict):
            raise BadSession(f"{where}: a customer step needs an 'event' object")
    elif actor == "agent":
        if step.get("action") not in ACTIONS:
            raise BadSession(f"{where}: unknown action {step.get('action')!r}; known: {', '.join(ACTIONS)}")
        props = step.get("body", {})
        if not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values()):
            raise BadSession(f"{where}: 'body' must be an object of strings")
    elif actor == "clock":
        advance = step.get("advance")
        if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
            raise BadSession(f"{where}: a clock step needs 'advance' >= 0")
    elif actor == "far":
        if step.get("do") not in FAR_ACTIONS:
            raise BadSession(f"{where}: a far step needs 'do': one of {', '.join(FAR_ACTIONS)}")
        if not isinstance(step.get("party"), str) or not step["party"]:
            raise BadSession(f"{where}: a far step needs 'party', a non-empty string")
    elif actor == "bridge":
        _check_wait(step, where)
    else:
        raise BadSession(f"{where}: 'actor' must be customer, agent, clock, far or bridge")
    return step


#: what a bridge step can wait for
WAITS: Final = ("seconds", "event", "state")
#: how long a bridge step waits by default, in seconds
WAIT_TIMEOUT: Final = 30.0


def _check_wait(step: Step, where: str) -> None:
    wait = step.get("wait")
    if not isinstance(wait, dict) or len(set(wait) & set(WAITS)) != 1:
        raise BadSession(f"{where}: a bridge step needs 'wait': an object with one of {', '.join(WAITS)}")
    (kind,) = set(wait) & set(WAITS)
    value = wait[kind]
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
            raise BadSession(f"{where}: 'wait' seconds must be a number from 0 to 3600")
    elif not isinstance(value, str) or not value:
        raise BadSession(f"{where}: 'wait' {kind} must be a non-empty string")
    if wait.get("role", "primary") not in ("primary", "consult"):
        raise BadSession(f"{where}: 'wait' role must be primary or consult")
    timeout = step.get("timeout", WAIT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise BadSession(f"{where}: 'timeout' must be a number of seconds, above 0 and at most 3600")


def describe_wait(step: Step) -> str:
    """What a bridge step waits for, in words (its caption, and its failure)."""
    wait = step["wait"]
    if "seconds" in wait:
        return f"{wait['seconds']:g} s"
    if "event" in wait:
        return f"event {wait['event']}"
    subject = f"the {wait['role']} conversation" if "role" in wait else "the interaction"
    if step.get("interaction"):
        subject += f" of {step['interaction']}"
    return f"{subject} to be {wait['state']}"


def load_steps(path: Path) -> list[Step]:
    steps = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadSession(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = loads(line)
        except JSONDecodeError as exc:
            raise BadSession(f"{path}:{number}: not JSON: {exc.msg}") from None
        steps.append(check_step(item, f"{path}:{number}"))
    return steps

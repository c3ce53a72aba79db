"""Building inputs for ``telephony-fsm run`` and reading its outputs.

Inputs are the JSON objects of the line protocol (spec/harness.md):
``{"from": "bridge", "message": ...}``, ``{"from": "switch", "event": ...}``
and ``{"from": "clock", "advance": ...}``. A raw string stands for a line
as it is (to feed malformed input).

:func:`run_cli` drives the command as one subprocess; :func:`run_inprocess`
does the same with :class:`adapters.runner.Runner` in this process. Both
return the outputs of each input, grouped by the ``{"done": SEQ}`` markers
(the markers themselves left out).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeAlias

from adapters.runner import Runner
from fsm.policy import Policy
from tests.driver import (
    CH,
    CONTROL,
    DEVICE,
    GROUP,
    SESSION,
    Driver,
    cmd_id,
    commands,
    events,
    messages,
    responses,
)

#: The repository root (the CLI runs with it as working directory).
ROOT = Path(__file__).resolve().parent.parent

Entry: TypeAlias = dict[str, Any]
Line: TypeAlias = "dict[str, Any] | str"
Group: TypeAlias = list[dict[str, Any]]

QUERY = "cti.query"
REQUEST = "cti.request"
RESPONSE = "cti.response"
EVENT = "cti.event"


# --------------------------------------------------------------------------
# Targets.


def itarget(interaction_id: str, channel: str = CH) -> str:
    """D-TARGET, D-NEW: the interaction destination ``CHANNEL.INTERACTIONID``."""
    return f"{channel}.{interaction_id}"


def ctarget(interaction_id: str, bridge_id: str, channel: str = CH) -> str:
    """D-TARGET: a conversation is its interaction's target plus ``.BRIDGEID``."""
    return f"{itarget(interaction_id, channel)}.{bridge_id}"


# --------------------------------------------------------------------------
# Inputs.


def switch(kind: str, call: str, **fields: Any) -> Entry:
    """A switch event input: ``{"from": "switch", "event": {"kind", "call", ...}}``."""
    event: dict[str, Any] = {"kind": kind, "call": call, **fields}
    return {"from": "switch", "event": event}


def offered(
    call: str, ani: str | None = None, dnis: str | None = None, data: dict[str, Any] | None = None
) -> Entry:
    """The switch offers a call to the agent."""
    fields: dict[str, Any] = {}
    if ani is not None:
        fields["ani"] = ani
    if dnis is not None:
        fields["dnis"] = dnis
    if data is not None:
        fields["data"] = data
    return switch("offered", call, device=DEVICE, **fields)


def dialing(call: str, destination: str | None = None) -> Entry:
    """A new or known leg dialing on the agent's device (the agent dials on the phone)."""
    if destination is None:
        return switch("dialing", call, device=DEVICE)
    return switch("dialing", call, device=DEVICE, destination=destination)


def agent(state: str, device: str = DEVICE) -> Entry:
    """The switch reports the device's login state."""
    return {"from": "switch", "event": {"kind": "agent", "device": device, "state": state}}


def login_lines(switch: str = "simulated") -> list[Entry]:
    """The start-up and agent-1's login, as harness.md's script of ``run``
    has them; a scripted switch's agent events after activate and ready."""
    lines = [
        request("cti.request.status", CONTROL, "login-1"),
        query("cti.query.capabilities", CONTROL, "login-2"),
        message(QUERY, "session.query.init", SESSION, "login-3", {"name": "agent-1"}),
        query("channelgroup.query.init", GROUP, "login-4"),
        query("channel.query.init", CH, "login-5"),
        request("channel.request.activate", CH, "login-6"),
    ]
    if switch == "scripted":
        lines.append(agent("loggedin"))
    lines.append(request("channel.request.ready", CH, "login-7"))
    if switch == "scripted":
        lines.append(agent("ready"))
    return lines


def result(command: str, ok: bool = True, call: str | None = None, reason: str | None = None) -> Entry:
    """A scripted switch's answer to a command."""
    event: dict[str, Any] = {"kind": "result", "command": command, "ok": ok}
    if call is not None:
        event["call"] = call
    if reason is not None:
        event["reason"] = reason
    return {"from": "switch", "event": event}


def message(
    kind: str,
    name: str,
    target: str,
    rid: str | None,
    properties: dict[str, Any] | None = None,
) -> Entry:
    """A bridge message input with the given headers (``rid`` None: no requestId)."""
    headers: dict[str, Any] = {"type": kind, "name": name, "target": target}
    if rid is not None:
        headers["requestId"] = rid
    msg: dict[str, Any] = {"header": headers}
    if properties:
        msg["body"] = properties
    return {"from": "bridge", "message": msg}


def request(name: str, target: str, rid: str, **properties: Any) -> Entry:
    """A ``cti.request`` from the bridge."""
    return message(REQUEST, name, target, rid, properties)


def query(name: str, target: str, rid: str) -> Entry:
    """A ``cti.query`` from the bridge."""
    return message(QUERY, name, target, rid)


def clock(seconds: float) -> Entry:
    """Let engine time pass (D-ASYNC)."""
    return {"from": "clock", "advance": seconds}


# --------------------------------------------------------------------------
# Running.


def _line_text(line: Line) -> str:
    return line if isinstance(line, str) else json.dumps(line)


def _expected_seq(line: Line, lineno: int) -> Any:
    if isinstance(line, dict):
        return line.get("seq", lineno)
    try:
        item = json.loads(line)
    except json.JSONDecodeError:
        return lineno
    return item.get("seq", lineno) if isinstance(item, dict) else lineno


def group_outputs(lines: Sequence[Line], outputs: Iterable[Entry], start: int = 1) -> list[Group]:
    """Split ``outputs`` at the ``done`` markers; assert that input i (line
    number ``start + i``) got exactly its own done, in order."""
    groups: list[Group] = []
    current: Group = []
    for entry in outputs:
        if set(entry) == {"done"}:
            assert len(groups) < len(lines), f"more done markers than inputs: {entry}"
            seq = _expected_seq(lines[len(groups)], start + len(groups))
            assert seq == entry["done"], f"done marker {entry} for input {len(groups) + 1}"
            for key in ("error", "protocol_error"):
                for item in (e[key] for e in current if key in e):
                    assert seq == item["input"], f"{key} names input {item['input']}, not {seq}"
            groups.append(current)
            current = []
        else:
            current.append(entry)
    nothing: Group = []
    assert nothing == current, f"outputs after the last done marker: {current}"
    assert len(lines) == len(groups), f"{len(lines)} inputs but {len(groups)} done markers"
    return groups


def run_cli_process(
    lines: Sequence[Line], *args: str, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """``python -m adapters.cli run *args`` fed ``lines``: the finished process."""
    stdin = "".join(_line_text(line) + "\n" for line in lines)
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", "run", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def run_cli(lines: Sequence[Line], *args: str, login: bool = True) -> list[Group]:
    """Run ``telephony-fsm run *args`` as ONE subprocess fed all ``lines``,
    after the login of :func:`login_lines` unless ``login`` is False;
    return the outputs of each of ``lines`` (grouped by its done marker)."""
    prelude: list[Line] = (
        list(login_lines("scripted" if "scripted" in args else "simulated")) if login else []
    )
    proc = run_cli_process([*prelude, *lines], *args)
    clean_exit = 0
    assert clean_exit == proc.returncode, proc.stderr
    outputs = [json.loads(text) for text in proc.stdout.splitlines()]
    return group_outputs([*prelude, *lines], outputs)[len(prelude) :]


def make_policy(policy: Policy | Sequence[str] | None = None) -> Policy:
    """A policy from a Policy, a list of ``NAME=VALUE`` settings, or None."""
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    return Policy().with_settings(list(policy))


def make_runner(
    switch: str = "simulated",
    policy: Policy | Sequence[str] | None = None,
    trace: IO[str] | None = None,
    login: bool = True,
) -> Runner:
    """A runner as ``telephony-fsm run`` composes it (the test driver's),
    with the agent logged in unless ``login`` is False."""
    if switch not in ("simulated", "scripted"):
        raise ValueError(f"unknown switch {switch!r}")
    driver = Driver(make_policy(policy), scripted=switch == "scripted", trace=trace, login=login)
    return driver.runner


def feed_lines(runner: Runner, lines: Sequence[Line], start: int = 1) -> list[Group]:
    """Feed ``lines`` (numbered from ``start``) to ``runner``; grouped outputs."""
    outputs: list[Entry] = []
    for offset, line in enumerate(lines):
        # Serialized at once, as the command writes them: an output must not
        # share state with the engine that a later input could change.
        outputs += json.loads(json.dumps(runner.feed(_line_text(line), start + offset)))
    return group_outputs(lines, outputs, start)


def run_inprocess(
    lines: Sequence[Line],
    switch: str = "simulated",
    policy: Policy | Sequence[str] | None = None,
) -> list[Group]:
    """The in-process equivalent of :func:`run_cli`, on ``Runner.feed``."""
    return feed_lines(make_runner(switch, policy), lines)


# --------------------------------------------------------------------------
# Reading outputs.


def bridge_messages(groups: Iterable[Group]) -> list[dict[str, Any]]:
    """Every message to the bridge, in order, over all groups."""
    return [message for group in groups for message in messages(group)]


def event_view(group: Group) -> list[tuple[str, str, dict[str, str]]]:
    """Events as ``(name, target, properties)``; also checks S-EVT-0 (no requestId)."""
    out = []
    for msg in events(group):
        headers = msg["header"]
        assert "requestId" not in headers, f"S-EVT-0: event with a requestId: {msg}"
        out.append((headers["name"], headers["target"], msg.get("body", {})))
    return out


def command_view(group: Group) -> list[tuple[str, str]]:
    """Commands as ``(op, call)``."""
    return [(cmd["op"], cmd["call"]) for cmd in commands(group)]


def success(
    name: str,
    target: str,
    rid: str,
    properties: dict[str, str] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """The exact SUCCESS response to a message (S-REQ-2), as on the wire:
    its body the response JSON, or ``properties`` (a consult's nativeid), or
    ``{}`` (D-BODY)."""
    return {
        "header": {
            "type": RESPONSE,
            "name": name,
            "target": target,
            "requestId": rid,
            "result": "SUCCESS",
        },
        "body": body if body is not None else dict(properties or {}),
    }


def only_response(group: Group) -> dict[str, Any]:
    """The one response of a group (S-REQ-1: exactly one)."""
    found = responses(group)
    one = 1
    assert one == len(found), f"expected exactly one response, got {found}"
    return found[0]


def assert_failure(msg: dict[str, Any], name: str, target: str, rid: str, *words: str) -> str:
    """``msg`` is the FAILURE response to (name, target, rid) (S-REQ-2): the
    echoed headers, a non-empty errorMessage containing each of ``words``
    (case-insensitive), an empty body (D-BODY). Returns the errorMessage."""
    headers = dict(msg["header"])
    error = headers.pop("errorMessage", None)
    expected = {"type": RESPONSE, "name": name, "target": target, "requestId": rid, "result": "FAILURE"}
    assert expected == headers
    assert isinstance(error, str), f"FAILURE without errorMessage: {msg}"
    assert error.strip(), "empty errorMessage"
    assert "Traceback" not in error
    for word in words:
        assert word.lower() in error.lower(), f"{word!r} not in errorMessage {error!r}"
    assert {"header", "body"} == set(msg), f"FAILURE not in the envelope {{header, body}}: {msg}"
    assert {} == msg["body"], f"FAILURE with a body: {msg}"
    return error


# --------------------------------------------------------------------------
# Expected outputs.

INIT = "interaction.query.init"
DATA = "interaction.query.data"
CINIT = "conversation.query.init"
CREATE = "interaction.request.createconversation"
ACCEPT = "interaction.request.accept"
REJECT = "interaction.request.reject"
COMPLETE = "interaction.request.complete"
SETDATA = "interaction.request.setdata"
DISPOSE = "interaction.request.dispose"
CONSULT = "interaction.request.consult"
TRANSFER = "interaction.request.consulttransfer"
CONFERENCE = "interaction.request.consultconference"
ALTERNATE = "interaction.request.alternate"
HOLD = "conversation.request.hold"
RETRIEVE = "conversation.request.retrieve"
RELEASE = "conversation.request.release"


_responses = responses
_commands = commands


class Failure:
    """An expected FAILURE response: echoed headers exact, errorMessage
    present and containing each of ``words`` (case-insensitive)."""

    def __init__(self, name: str, target: str, rid: str, *words: str) -> None:
        self.name = name
        self.target = target
        self.rid = rid
        self.words = words

    def __repr__(self) -> str:
        return f"Failure({self.name!r}, {self.target!r}, {self.rid!r}, *{self.words!r})"


ExpectedResponse: TypeAlias = "dict[str, Any] | Failure"
EventView: TypeAlias = "tuple[str, str] | tuple[str, str, dict[str, Any]]"


def cmd(command_id: str, op: str, call: str, **extra: str) -> dict[str, str]:
    """An expected switch command (harness.md "Switch commands")."""
    return {"id": command_id, "op": op, "call": call, **extra}


def expect(
    group: Group,
    *,
    responses: Sequence[ExpectedResponse] = (),
    events: Sequence[EventView] = (),
    commands: Sequence[dict[str, str]] = (),
    errors: Sequence[str] = (),
    protocol_errors: Sequence[str] = (),
) -> None:
    """Assert the outputs of one input, kind by kind, in order within each
    kind, and nothing else. Responses are exact wire messages (see
    :func:`success`) or :class:`Failure`; events are ``(name, target)`` or
    ``(name, target, properties)``; commands are exact; errors and protocol
    errors are substrings of their messages, one per output."""
    known = 0
    actual_responses = _responses(group)
    assert len(responses) == len(actual_responses), (
        f"expected {len(responses)} responses, got {actual_responses}"
    )
    for want, got in zip(responses, actual_responses, strict=True):
        if isinstance(want, Failure):
            assert_failure(got, want.name, want.target, want.rid, *want.words)
        else:
            assert want == got
    known += len(actual_responses)
    want_events = [(e[0], e[1], e[2] if len(e) == 3 else {}) for e in events]
    assert want_events == event_view(group), f"events: expected {want_events}, got {event_view(group)}"
    known += len(want_events)
    assert list(commands) == _commands(group)
    known += len(commands)
    for key, wanted in (("error", errors), ("protocol_error", protocol_errors)):
        found = [entry[key]["message"] for entry in group if key in entry]
        assert len(wanted) == len(found), f"expected {len(wanted)} {key} outputs, got {found}"
        for word, text in zip(wanted, found, strict=True):
            assert word.lower() in text.lower(), f"{word!r} not in {key} {text!r}"
        known += len(found)
    assert len(group) == known, f"unexpected outputs in {group}"


def assert_answered_once(lines: Sequence[Line], groups: Sequence[Group], unanswered: int = 0) -> None:
    """S-REQ-1 over a whole run: every bridge query or request with a
    requestId got exactly one response with the same target and requestId
    (counted as multisets, so a D-DUP repeat needs its own response);
    ``unanswered`` requests may still be pending at the end."""
    asked: dict[tuple[str, str], int] = {}
    for line in lines:
        if isinstance(line, dict) and line.get("from") == "bridge":
            headers = line["message"].get("header", {})
            if isinstance(headers.get("requestId"), str) and headers.get("type") in (QUERY, REQUEST):
                key = (headers.get("target"), headers["requestId"])
                asked[key] = asked.get(key, 0) + 1
    answered: dict[tuple[str, str], int] = {}
    for msg in bridge_messages(groups):
        headers = msg["header"]
        if headers["type"] == RESPONSE:
            key = (headers["target"], headers["requestId"])
            answered[key] = answered.get(key, 0) + 1
    for key, count in answered.items():
        assert asked.get(key, 0) >= count, f"S-REQ-1: {count} responses to {key}"
    missing = sum(asked.values()) - sum(answered.values())
    assert unanswered == missing, f"S-REQ-1: {missing} requests unanswered"


# --------------------------------------------------------------------------
# Scenarios shared by the end-to-end and the snapshot tests. The interaction
# is c1 (D-NEW: named after its primary call) at target IT, its primary
# conversation b1 at P, the consult conversations b2 (K1) and b3 (K2).

IT = itarget("c1")
P = ctarget("c1", "b1")
K1 = ctarget("c1", "b2")
K2 = ctarget("c1", "b3")


def inbound_setup(ani: str = "5551000") -> list[Line]:
    """offered c1 -> init (r1) -> createconversation b1/c1 (r2) -> conversation init (r3)."""
    return [
        offered("c1", ani=ani),
        query(INIT, IT, "r1"),
        request(CREATE, IT, "r2", id="b1", nativeid="c1"),
        query(CINIT, P, "r3"),
    ]


def full_call() -> list[Line]:
    """The demo call on the simulated switch: setup, accept, consult 200,
    its conversation, re-init, alternate twice, conference, re-init, second
    consult 300, its conversation, consulttransfer, complete, dispose."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="200"),
        request(CREATE, IT, "r6", id="b2", nativeid="sim-1"),
        query(CINIT, K1, "r7"),
        query(INIT, IT, "r8"),
        request(ALTERNATE, IT, "r9"),
        request(ALTERNATE, IT, "r10"),
        request(CONFERENCE, IT, "r11"),
        query(INIT, IT, "r12"),
        request(CONSULT, IT, "r13", destination="300"),
        request(CREATE, IT, "r14", id="b3", nativeid="sim-2"),
        query(CINIT, K2, "r15"),
        request(TRANSFER, IT, "r16"),
        request(COMPLETE, IT, "r17", wrapup="sale"),
        request(DISPOSE, IT, "r18"),
    ]


def busy_consult() -> list[Line]:
    """Setup, accept, consult to busy-1 (SUCCESS, then the leg fails), its
    conversation created (ENDED), re-init, primary init, alternate (refused),
    a new consult to 200."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="busy-1"),
        request(CREATE, IT, "r6", id="b2", nativeid="sim-1"),
        query(CINIT, K1, "r7"),
        query(INIT, IT, "r8"),
        query(CINIT, P, "r9"),
        request(ALTERNATE, IT, "r10"),
        request(CONSULT, IT, "r11", destination="200"),
    ]


def primary_loss() -> list[Line]:
    """Setup, accept, consult 200 (connected), its conversation, the
    customer hangs up, re-init, consult conversation re-init, alternate
    (refused), release of the promoted leg, complete."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(CONSULT, IT, "r5", destination="200"),
        request(CREATE, IT, "r6", id="b2", nativeid="sim-1"),
        query(CINIT, K1, "r7"),
        switch("ended", "c1", cause="hangup"),
        query(INIT, IT, "r8"),
        query(CINIT, K1, "r9"),
        request(ALTERNATE, IT, "r10"),
        request(RELEASE, K1, "r11"),
        request(COMPLETE, IT, "r12"),
    ]


def scripted_setup() -> list[Line]:
    """On the scripted switch: setup, accept (cmd-1), connected, result cmd-1."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        switch("connected", "c1"),
        result(cmd_id(1)),
    ]


def scripted_timeout() -> list[Line]:
    """Scripted: setup, consult (cmd-2), held, clock 29.5 (nothing), clock
    0.5 (FAILURE), re-init, the late result naming x9 (released: cmd-3),
    x9 ended (ignored), a new consult (cmd-4), its leg x10 dialing."""
    return [
        *scripted_setup(),
        request(CONSULT, IT, "r5", destination="200"),
        switch("held", "c1"),
        clock(29.5),
        clock(0.5),
        query(INIT, IT, "r6"),
        result(cmd_id(2), call="x9"),
        switch("ended", "x9", cause="released"),
        request(CONSULT, IT, "r7", destination="201"),
        dialing("x10", "201"),
    ]


def serial() -> list[Line]:
    """Scripted: setup without accept; accept (cmd-1) pending; reject,
    consult and a hold of the primary arrive and wait; a data query is
    answered at once; 25 s pass; the call connects (accept answered, then
    reject judged against STARTED, then consult starts: cmd-2); result
    cmd-1; 25 s pass (consult's timer started at 25 s, so no timeout);
    x1 dialing names the consult leg (SUCCESS, hold starts: cmd-3); the
    late result of cmd-2; 5 s pass; c1 held (hold answered)."""
    return [
        *inbound_setup(),
        request(ACCEPT, IT, "r4"),
        request(REJECT, IT, "r5"),
        request(CONSULT, IT, "r6", destination="200"),
        request(HOLD, P, "r7"),
        query(DATA, IT, "r8"),
        clock(25),
        switch("connected", "c1"),
        result(cmd_id(1)),
        clock(25),
        dialing("x1", "200"),
        result(cmd_id(2), call="x1"),
        clock(5),
        switch("held", "c1"),
    ]

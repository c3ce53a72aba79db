"""What each engine command does in SIP: one generator per operation.

An operation is a generator function: nothing of it runs before the
scheduler first advances it, so that a failure is its result. It acts on
the softphone's :class:`~adapters.sip.calls.Line` and
yields a condition each time it must wait for SIP (a leg reaching a state,
a transfer's NOTIFY); the scheduler (``adapters.sip.scheduler``) resumes it
when the condition holds. It returns the leg its result names (consult), or
None; raising :class:`~adapters.sip.calls.Failed` fails it with that reason.

| command | SIP |
|---|---|
| answer | 200 OK to the INVITE |
| reject | 603 Decline |
| release | BYE (CANCEL while an outbound call rings, 603 while an inbound one does) |
| hold / retrieve | re-INVITE with sendonly / sendrecv |
| consult | hold the primary, then INVITE the destination |
| alternate | hold the active leg, then retrieve the other |
| transfer | REFER with Replaces to the primary's party; BYE once it reports 200 |
| conference | retrieve both legs and mix them in the conference bridge |
| blindtransfer | REFER to the destination; BYE once it reports 200 |
| blindconference | INVITE the destination and mix it into the leg |
| senddtmf | RFC 4733 telephone-events |
| dial | INVITE the destination from the agent's device |
| login, logout | REGISTER / unREGISTER at the registrar (digest auth); without one, local state |
| ready, notready | no SIP: the softphone keeps the state, reported as `agent` events |
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Final

from adapters.sip import ua
from adapters.sip.calls import Failed, Leg, Line, SoftCall, live
from fsm.switch_events import Command, SwitchEvent

pj = ua.pj

#: what a running operation waits for: None (not yet), True (done), or a
#: failure reason
Condition = Callable[[], "bool | str | None"]
Operation = Generator[Condition, None, "str | None"]


def answer(line: Line, command: Command) -> Operation:
    leg = line.leg(command.call)
    if leg.outbound or leg.state != "offered":
        raise Failed(f"call {leg.name} is not ringing in")
    prm = pj.CallOpParam()
    prm.statusCode = 200
    leg.calls[0].answer(prm)
    yield reaches(leg, "connected")
    return None


def reject(line: Line, command: Command) -> Operation:
    return (yield from _end(line.leg(command.call), line, "rejected"))


def release(line: Line, command: Command) -> Operation:
    return (yield from _end(line.leg(command.call), line, "released"))


def hold(line: Line, command: Command) -> Operation:
    yield from _hold(line.leg(command.call))
    return None


def retrieve(line: Line, command: Command) -> Operation:
    yield from _retrieve(line.leg(command.call))
    return None


def consult(line: Line, command: Command) -> Operation:
    primary = line.leg(command.call)
    if primary.state == "connected":
        yield from _hold(primary)
    destination = command.destination or ""
    if not destination:
        raise Failed("consult needs a destination")
    call = line.dial(destination)
    leg = line.new_leg([call], outbound=True, state="dialing")
    # its dialing event, then the result naming the same leg (harness.md: either order)
    line.events.append(
        SwitchEvent(kind="dialing", call=leg.name, device=line.config.device, destination=destination)
    )
    return leg.name


def dial(line: Line, command: Command) -> Operation:
    """An outbound call from the agent's device (D-TCH-1): INVITE the destination."""
    destination = command.destination or ""
    if not destination:
        raise Failed("dial needs a destination")
    leg = line.new_leg([line.dial(destination)], outbound=True, state="dialing")
    line.events.append(
        SwitchEvent(kind="dialing", call=leg.name, device=line.config.device, destination=destination)
    )
    return leg.name
    yield  # a generator, like every operation


def _agent_state(state: str) -> Callable[[Line, Command], Operation]:
    """login / logout without a registrar, ready / notready always: the
    softphone keeps the agent's state itself (SIP has no ready state) and
    reports it as the switch would."""

    def operation(line: Line, command: Command) -> Operation:
        line.events.append(
            SwitchEvent(kind="agent", device=command.device or line.config.device, state=state)
        )
        return None
        yield  # a generator, like every operation

    return operation


def _registration(on: bool) -> Callable[[Line, Command], Operation]:
    """login / logout: REGISTER / unREGISTER the agent's account at the
    registrar (when the softphone has one), answering its digest challenge;
    done when it answers 2xx (the line reports the agent event), failed with
    its status otherwise."""
    local = _agent_state("loggedin" if on else "loggedout")

    def operation(line: Line, command: Command) -> Operation:
        if not line.config.registrar:
            return (yield from local(line, command))
        if on == line.registered:  # nothing to ask: report the state as it is
            return (yield from local(line, command))
        for _ in range(3):
            try:
                seen = line.register(on)
                break
            except Exception as exc:  # pjsua2.Error: a refresh of the registration is under way
                if "EBUSY" not in str(getattr(exc, "reason", exc)):
                    raise
                before = line.registrations
                yield lambda before=before: True if line.registrations != before else None  # type: ignore[misc]
        else:
            raise Failed("the registrar kept the account busy: three tries")

        def answered() -> bool | str | None:
            if line.registrations == seen:
                return None
            if line.registered == on:
                return True
            verb = "REGISTER" if on else "unREGISTER"
            return f"{verb} at {line.config.registrar} failed: {line.registration_status}"

        yield answered
        return None

    return operation


def alternate(line: Line, command: Command) -> Operation:
    active, other = line.leg(command.call), line.leg(command.other)
    yield from _hold(active)
    yield from _retrieve(other)
    return None


def transfer(line: Line, command: Command) -> Operation:
    primary, consulted = line.leg(command.call), line.leg(command.consult)
    if len(live(primary)) != 1 or len(live(consulted)) != 1:
        raise Failed(
            "attended transfer joins one party to one other (REFER with Replaces); "
            "a leg that is a conference cannot be carried over"
        )
    target, replaced = live(primary)[0], live(consulted)[0]
    primary.end_cause = consulted.end_cause = "transferred"
    target.transfer_done = False
    target.xferReplaces(replaced, pj.CallOpParam(True))
    yield transferred(target, primary, consulted)
    line.hangup(primary, 200)
    deadline = time.monotonic() + line.config.transfer_grace

    def both_ended() -> bool | str | None:
        if primary.state == "ended" and consulted.state == "ended":
            return True
        if time.monotonic() > deadline and consulted.state != "ended":
            line.hangup(consulted, 200)  # its party did not end the replaced call
        return None

    yield both_ended
    return None


def conference(line: Line, command: Command) -> Operation:
    primary, consulted = line.leg(command.call), line.leg(command.consult)
    if consulted.state not in ("connected", "held"):
        raise Failed(f"call {consulted.name} is not connected")
    yield from _retrieve(primary)
    yield from _retrieve(consulted)
    for call in consulted.calls:
        call.leg = primary
        primary.calls.append(call)
    consulted.calls = []
    consulted.state = "ended"
    line.events.append(SwitchEvent(kind="ended", call=consulted.name, cause="conferenced"))
    line.dirty = True
    return None


def blindtransfer(line: Line, command: Command) -> Operation:
    leg = line.leg(command.call)
    calls = live(leg)
    if len(calls) != 1:
        raise Failed("blind transfer refers one party; this leg is a conference")
    leg.end_cause = "transferred"
    target = calls[0]
    target.transfer_done = False
    target.xfer(line.uri(command.destination or ""), pj.CallOpParam(True))
    yield transferred(target, leg)
    line.hangup(leg, 200)
    yield reaches(leg, "ended")
    return None


def blindconference(line: Line, command: Command) -> Operation:
    leg = line.leg(command.call)
    call = line.dial(command.destination or "")
    call.leg = leg
    leg.calls.append(call)

    def joined() -> bool | str | None:
        if call.ended:
            leg.calls.remove(call)
            return f"{command.destination} did not join: {call.status}"
        return True if call.confirmed and call.media != "none" else None

    yield joined
    line.dirty = True
    return None


def senddtmf(line: Line, command: Command) -> Operation:
    leg = line.leg(command.call)
    for call in live(leg):
        call.dialDtmf(command.digits or "")
    return None
    yield  # a generator that completes at once


#: op (harness.md "Switch commands") -> its operation
OPERATIONS: Final[dict[str, Callable[[Line, Command], Operation]]] = {
    op.__name__: op
    for op in (
        answer,
        reject,
        release,
        hold,
        retrieve,
        consult,
        alternate,
        transfer,
        conference,
        blindtransfer,
        blindconference,
        senddtmf,
        dial,
    )
} | {
    "login": _registration(True),
    "logout": _registration(False),
    "ready": _agent_state("ready"),
    "notready": _agent_state("notready"),
}


# -- the steps operations share, and what they wait for


def _end(leg: Leg, line: Line, cause: str) -> Operation:
    leg.end_cause = cause
    line.hangup(leg, 603)
    yield reaches(leg, "ended")
    return None


def _hold(leg: Leg) -> Generator[Condition, None, None]:
    if leg.state == "held":
        return
    if leg.state != "connected":
        raise Failed(f"call {leg.name} is not talking")
    for call in leg.calls:
        if not call.ended:
            call.refused = ""
            call.setHold(pj.CallOpParam(True))
    yield reaches(leg, "held")


def _retrieve(leg: Leg) -> Generator[Condition, None, None]:
    if leg.state == "connected":
        return
    if leg.state != "held":
        raise Failed(f"call {leg.name} is not held")
    for call in leg.calls:
        if not call.ended:
            call.refused = ""
            call.unholding = True
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)
    yield reaches(leg, "connected")


def reaches(leg: Leg, state: str) -> Condition:
    def condition() -> bool | str | None:
        if leg.state == state:
            return True
        for call in leg.calls:
            if call.refused:
                return call.refused
        if leg.state == "ended":
            return f"call {leg.name} ended" + (f": {leg.calls[0].status}" if leg.calls else "")
        return None

    return condition


def transferred(target: SoftCall, *legs: Leg) -> Condition:
    def condition() -> bool | str | None:
        if target.refused:
            return target.refused
        if target.transfer_done:
            if target.transfer_status.startswith("2"):
                return True
            for leg in legs:
                leg.end_cause = ""
            return f"transfer failed: {target.transfer_status}"
        if target.ended:
            return f"call {target.leg.name if target.leg else '?'} ended during the transfer"
        return None

    return condition

"""The agent's SIP softphone as a :class:`~adapters.switch.Switch`.

Each engine command becomes SIP (PJSIP through pjsua2); each SIP state
change becomes the switch event the engine expects. Commands return no
events: what they cause arrives later, and :meth:`SipSoftphone.poll` (called
from the adapter's own loop) hands it over, in order. The softphone
acknowledges every command with a ``result`` event once the SIP operation
has completed (ok) or failed (``reason``: the SIP status, e.g.
``486 Busy Here``), so it runs with ``switch_acknowledges=True``.

A *leg* is what the engine calls a call (``sip-1``, ``sip-2``, ...). A leg
is one SIP call, except after a conference: the consult leg's calls join
the primary leg, which then stands for the softphone's three-way mix (its
own conference bridge) and ends when the last of its calls ends.

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
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Generator
from typing import Any

import attrs

from adapters.sip import ua
from fsm.switch_events import Command, SwitchEvent

pj = ua.pj
_CallBase: Any = pj.Call if pj is not None else object
_AccountBase: Any = pj.Account if pj is not None else object

#: what a running operation waits for: None (not yet), True (done), or a
#: failure reason
Condition = Callable[[], "bool | str | None"]
Operation = Generator[Condition, None, "str | None"]


class Failed(Exception):
    """An operation cannot go on; the message is the result's reason."""


class SoftCall(_CallBase):  # type: ignore[misc]
    """One SIP call of the softphone."""

    def __init__(self, phone: SipSoftphone, call_id: int | None = None) -> None:
        if call_id is None:
            super().__init__(phone.account)
        else:
            super().__init__(phone.account, call_id)
        self.phone = phone
        self.leg: Leg | None = None
        self.state = pj.PJSIP_INV_STATE_NULL
        self.status = ""
        self.media = "none"
        #: the last re-INVITE or REFER this side sent was refused
        self.refused = ""
        self.transfer_status = ""
        self.transfer_done = False
        #: hung up by this side: its media goes away with its ports
        self.ending = False

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        self.state = info.state
        self.status = ua.status_text(info.lastStatusCode, info.lastReason)
        self.phone.changed(self)

    def onCallMediaState(self, prm: Any) -> None:
        self.media = ua.media_direction(self)
        self.phone.changed(self)

    def onCallTsxState(self, prm: Any) -> None:
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = event.body.tsxState.tsx
        if (
            tsx.role == pj.PJSIP_ROLE_UAC
            and tsx.method in ("INVITE", "REFER")
            and tsx.state in (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED)
            and tsx.statusCode >= 300
            and self.state == pj.PJSIP_INV_STATE_CONFIRMED
        ):
            self.refused = f"{tsx.method} refused: {ua.status_text(tsx.statusCode, tsx.statusText)}"
            self.phone.changed(self)

    def onCallTransferStatus(self, prm: Any) -> None:
        self.transfer_status = ua.status_text(prm.statusCode, prm.reason)
        if prm.finalNotify or prm.statusCode >= 200:
            self.transfer_done = True
            prm.cont = False
        self.phone.changed(self)

    @property
    def ended(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_DISCONNECTED)

    @property
    def confirmed(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_CONFIRMED)


class SoftAccount(_AccountBase):  # type: ignore[misc]
    def __init__(self, phone: SipSoftphone) -> None:
        super().__init__()
        self.phone = phone

    def onIncomingCall(self, prm: Any) -> None:
        self.phone.incoming(SoftCall(self.phone, prm.callId), prm.rdata.wholeMsg)


@attrs.define(eq=False)
class Leg:
    """What the engine knows as one call."""

    name: str
    outbound: bool
    calls: list[SoftCall]
    #: offered, dialing, alerting, connected, held, ended
    state: str
    #: the cause its ``ended`` event will carry, when the softphone ended it
    end_cause: str = ""
    ever_connected: bool = False


@attrs.define
class SipConfig:
    """Where the softphone listens and where it dials."""

    #: the address its UDP transport binds to (port 0: any free port)
    host: str = "127.0.0.1"
    port: int = 5060
    #: the user part of its own SIP URI
    user: str = "agent"
    #: ``host:port`` that a destination without ``sip:`` is dialled at
    domain: str = "127.0.0.1:5070"
    #: seconds a transferred consult leg may take to be ended by its party
    transfer_grace: float = 2.0


class SipSoftphone:
    """The agent's softphone: a Switch over real SIP."""

    def __init__(self, config: SipConfig | None = None) -> None:
        self.config = config or SipConfig()
        self.endpoint, self.port = ua.start_endpoint(self.config.host, self.config.port)
        self.uri = f"sip:{self.config.user}@{self.config.host}:{self.port}"
        self.account = SoftAccount(self)
        self.account.create(ua.account_config(self.uri))
        self.legs: dict[str, Leg] = {}
        self.legs_made = 0
        self._calls: list[SoftCall] = []
        self._events: list[SwitchEvent] = []
        self._operations: list[tuple[Command, Operation, Condition]] = []
        self._dirty = False
        self.closed = False

    # -- the Switch protocol
    @property
    def acknowledges(self) -> bool:
        return True

    def observe(self, event: SwitchEvent) -> None:
        """Events come from SIP itself, never from outside."""
        return None

    def answer(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._answer)

    def reject(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._reject)

    def release(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._release)

    def hold(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._hold_op)

    def retrieve(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._retrieve_op)

    def consult(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._consult)

    def transfer(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._transfer)

    def conference(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._conference)

    def alternate(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._alternate)

    def blindtransfer(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._blindtransfer)

    def blindconference(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._blindconference)

    def senddtmf(self, command: Command) -> list[SwitchEvent]:
        return self._start(command, self._senddtmf)

    # -- the adapter's loop
    def poll(self, wait_ms: int = 0) -> list[SwitchEvent]:
        """Let SIP run for up to ``wait_ms``; return the events since the last call."""
        if not self.closed:
            self.endpoint.libHandleEvents(wait_ms)
            self._settle()
        events, self._events = self._events, []
        return events

    @property
    def busy(self) -> bool:
        """True while a command is still being carried out."""
        return bool(self._operations)

    def close(self) -> None:
        if self.closed:
            return
        self.endpoint.hangupAllCalls()
        for _ in range(30):
            self.endpoint.libHandleEvents(10)
        # every Call object must be gone before the library is
        self._operations.clear()
        self.legs.clear()
        self._calls.clear()
        self.account.shutdown()
        del self.account
        gc.collect()
        self.closed = True
        self.endpoint.libDestroy()

    def mix(self) -> dict[str, list[str]]:
        """Who hears whom in the conference bridge: for each call (by its
        remote party) the parties its audio is sent to (``agent``: the
        softphone's own audio device)."""
        names = {0: "agent"}
        for call in self._calls:
            audio = ua.audio_of(call)
            if audio is not None:
                names[audio.getPortId()] = ua.user_of(call.getInfo().remoteUri)
        links = self._bridge()[1]
        pairs = [(names.get(source, str(source)), names.get(sink, str(sink))) for source, sink in links]
        heard: dict[str, list[str]] = {}
        # by party, the agent first: PJSIP's slot numbers depend on when each
        # call's media came up, which would make the same mix read differently
        for source, sink in sorted(pairs, key=lambda pair: (_party_order(pair[0]), _party_order(pair[1]))):
            heard.setdefault(source, []).append(sink)
        return heard

    # -- SIP callbacks
    def incoming(self, call: SoftCall, message: str) -> None:
        self._calls.append(call)
        info = call.getInfo()
        leg = self._new_leg([call], outbound=False, state="offered")
        self._events.append(
            SwitchEvent(
                kind="offered",
                call=leg.name,
                ani=ua.user_of(info.remoteUri),
                dnis=ua.request_user(message) or ua.user_of(info.localUri),
                data=ua.data_of(message),
            )
        )
        prm = pj.CallOpParam()
        prm.statusCode = 180
        call.answer(prm)

    def changed(self, call: SoftCall) -> None:
        """A call's state or media moved: update its leg and say what changed."""
        self._dirty = True
        leg = call.leg
        if leg is None or leg.state == "ended":
            return
        if call.ended:
            self._call_ended(leg, call)
            return
        if leg.state == "dialing" and call.state == pj.PJSIP_INV_STATE_EARLY:
            self._move(leg, "alerting")
        elif leg.state in ("offered", "dialing", "alerting") and call.confirmed and call.media != "none":
            leg.ever_connected = True
            self._move(leg, "connected")
        elif leg.state == "connected" and self._all(leg, ("sendonly", "inactive")):
            self._move(leg, "held")
        elif leg.state == "held" and self._all(leg, ("sendrecv", "recvonly")):
            self._move(leg, "retrieved")

    def _call_ended(self, leg: Leg, call: SoftCall) -> None:
        live = [c for c in leg.calls if not c.ended]
        if live:  # a party left the mix; the leg goes on
            return
        if leg.outbound and not leg.ever_connected:
            leg.state = "ended"
            self._events.append(SwitchEvent(kind="failed", call=leg.name, reason=call.status))
            return
        leg.state = "ended"
        cause = leg.end_cause or f"remote: {call.status}"
        self._events.append(SwitchEvent(kind="ended", call=leg.name, cause=cause))

    # -- operations
    def _start(self, command: Command, operation: Callable[[Command], Operation]) -> list[SwitchEvent]:
        generator = operation(command)
        self._advance(command, generator)
        return []

    def _advance(self, command: Command, generator: Operation) -> None:
        try:
            condition = next(generator)
        except StopIteration as stop:
            self._result(command, ok=True, call=stop.value or "")
            return
        except Failed as exc:
            self._result(command, ok=False, reason=str(exc))
            return
        except Exception as exc:  # pjsua2.Error: the SIP stack refused the operation
            reason = getattr(exc, "reason", "") or str(exc)
            self._result(command, ok=False, reason=f"the SIP stack refused {command.op}: {reason}")
            return
        self._operations.append((command, generator, condition))

    def _settle(self) -> None:
        """Carry out the mix and move every operation whose condition holds."""
        if self._dirty:
            self._dirty = False
            self._remix()
            self._calls = [c for c in self._calls if not (c.ended and c.leg is None)]
        progress = True
        while progress:
            progress = False
            waiting = self._operations
            self._operations = []
            for command, generator, condition in waiting:
                outcome = condition()
                if outcome is None:
                    self._operations.append((command, generator, condition))
                elif outcome is True:
                    progress = True
                    self._advance(command, generator)
                else:
                    generator.close()
                    self._result(command, ok=False, reason=str(outcome))
            if progress and self._dirty:
                self._dirty = False
                self._remix()

    def _result(self, command: Command, *, ok: bool, call: str = "", reason: str = "") -> None:
        self._events.append(SwitchEvent(kind="result", command=command.id, ok=ok, call=call, reason=reason))

    def _leg(self, name: str | None) -> Leg:
        leg = self.legs.get(name or "")
        if leg is None or leg.state == "ended":
            raise Failed(f"no live call {name!r} on the softphone")
        return leg

    def _answer(self, command: Command) -> Operation:
        leg = self._leg(command.call)
        if leg.outbound or leg.state != "offered":
            raise Failed(f"call {leg.name} is not ringing in")
        prm = pj.CallOpParam()
        prm.statusCode = 200
        leg.calls[0].answer(prm)
        yield self._reaches(leg, "connected")
        return None

    def _reject(self, command: Command) -> Operation:
        leg = self._leg(command.call)
        leg.end_cause = "rejected"
        self._hangup(leg, 603)
        yield self._reaches(leg, "ended")
        return None

    def _release(self, command: Command) -> Operation:
        leg = self._leg(command.call)
        leg.end_cause = "released"
        self._hangup(leg, 603)
        yield self._reaches(leg, "ended")
        return None

    def _hold_op(self, command: Command) -> Operation:
        yield from self._hold(self._leg(command.call))
        return None

    def _retrieve_op(self, command: Command) -> Operation:
        yield from self._retrieve(self._leg(command.call))
        return None

    def _hold(self, leg: Leg) -> Generator[Condition, None, None]:
        if leg.state == "held":
            return
        if leg.state != "connected":
            raise Failed(f"call {leg.name} is not talking")
        for call in leg.calls:
            if not call.ended:
                call.refused = ""
                call.setHold(pj.CallOpParam(True))
        yield self._reaches(leg, "held")

    def _retrieve(self, leg: Leg) -> Generator[Condition, None, None]:
        if leg.state == "connected":
            return
        if leg.state != "held":
            raise Failed(f"call {leg.name} is not held")
        for call in leg.calls:
            if not call.ended:
                call.refused = ""
                prm = pj.CallOpParam(True)
                prm.opt.flag = pj.PJSUA_CALL_UNHOLD
                call.reinvite(prm)
        yield self._reaches(leg, "connected")

    def _consult(self, command: Command) -> Operation:
        primary = self._leg(command.call)
        if primary.state == "connected":
            yield from self._hold(primary)
        destination = command.destination or ""
        if not destination:
            raise Failed("consult needs a destination")
        call = self._dial(destination)
        leg = self._new_leg([call], outbound=True, state="dialing")
        # its dialing event, then the result naming the same leg (harness.md: either order)
        self._events.append(SwitchEvent(kind="dialing", call=leg.name, destination=destination))
        return leg.name

    def _alternate(self, command: Command) -> Operation:
        active, other = self._leg(command.call), self._leg(command.other)
        yield from self._hold(active)
        yield from self._retrieve(other)
        return None

    def _transfer(self, command: Command) -> Operation:
        primary, consult = self._leg(command.call), self._leg(command.consult)
        if len(self._live(primary)) != 1 or len(self._live(consult)) != 1:
            raise Failed(
                "attended transfer joins one party to one other (REFER with Replaces); "
                "a leg that is a conference cannot be carried over"
            )
        target, replaced = self._live(primary)[0], self._live(consult)[0]
        primary.end_cause = consult.end_cause = "transferred"
        target.transfer_done = False
        target.xferReplaces(replaced, pj.CallOpParam(True))
        yield self._transferred(target, primary, consult)
        self._hangup(primary, 200)
        deadline = time.monotonic() + self.config.transfer_grace

        def both_ended() -> bool | str | None:
            if primary.state == "ended" and consult.state == "ended":
                return True
            if time.monotonic() > deadline and consult.state != "ended":
                self._hangup(consult, 200)  # its party did not end the replaced call
            return None

        yield both_ended
        return None

    def _conference(self, command: Command) -> Operation:
        primary, consult = self._leg(command.call), self._leg(command.consult)
        if consult.state not in ("connected", "held"):
            raise Failed(f"call {consult.name} is not connected")
        yield from self._retrieve(primary)
        yield from self._retrieve(consult)
        for call in consult.calls:
            call.leg = primary
            primary.calls.append(call)
        consult.calls = []
        consult.state = "ended"
        self._events.append(SwitchEvent(kind="ended", call=consult.name, cause="conferenced"))
        self._dirty = True
        return None

    def _blindtransfer(self, command: Command) -> Operation:
        leg = self._leg(command.call)
        live = self._live(leg)
        if len(live) != 1:
            raise Failed("blind transfer refers one party; this leg is a conference")
        leg.end_cause = "transferred"
        target = live[0]
        target.transfer_done = False
        target.xfer(self._uri(command.destination or ""), pj.CallOpParam(True))
        yield self._transferred(target, leg)
        self._hangup(leg, 200)
        yield self._reaches(leg, "ended")
        return None

    def _blindconference(self, command: Command) -> Operation:
        leg = self._leg(command.call)
        call = self._dial(command.destination or "")
        call.leg = leg
        leg.calls.append(call)

        def joined() -> bool | str | None:
            if call.ended:
                leg.calls.remove(call)
                return f"{command.destination} did not join: {call.status}"
            return True if call.confirmed and call.media != "none" else None

        yield joined
        self._dirty = True
        return None

    def _senddtmf(self, command: Command) -> Operation:
        leg = self._leg(command.call)
        for call in self._live(leg):
            call.dialDtmf(command.digits or "")
        return None
        yield  # a generator that completes at once

    # -- helpers
    def _new_leg(self, calls: list[SoftCall], *, outbound: bool, state: str) -> Leg:
        self.legs_made += 1
        leg = Leg(name=f"sip-{self.legs_made}", outbound=outbound, calls=calls, state=state)
        for call in calls:
            call.leg = leg
        self.legs[leg.name] = leg
        return leg

    def _move(self, leg: Leg, kind: str) -> None:
        leg.state = "connected" if kind == "retrieved" else kind
        self._events.append(SwitchEvent(kind=kind, call=leg.name))

    def _uri(self, destination: str) -> str:
        if destination.startswith(("sip:", "sips:")):
            return destination
        return f"sip:{destination}@{self.config.domain}"

    def _dial(self, destination: str) -> SoftCall:
        call = SoftCall(self)
        self._calls.append(call)
        try:
            call.makeCall(self._uri(destination), pj.CallOpParam(True))
        except Exception as exc:  # pjsua2.Error: a URI it cannot call
            raise Failed(f"cannot call {destination!r}: {getattr(exc, 'reason', exc)}") from None
        return call

    def _hangup(self, leg: Leg, code: int) -> None:
        for call in self._live(leg):
            prm = pj.CallOpParam()
            prm.statusCode = code
            call.ending = True
            try:
                call.hangup(prm)
            except Exception:  # already ending
                continue

    @staticmethod
    def _live(leg: Leg) -> list[SoftCall]:
        return [c for c in leg.calls if not c.ended]

    def _all(self, leg: Leg, directions: tuple[str, ...]) -> bool:
        live = self._live(leg)
        return bool(live) and all(c.media in directions for c in live)

    def _reaches(self, leg: Leg, state: str) -> Condition:
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

    def _transferred(self, target: SoftCall, *legs: Leg) -> Condition:
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

    def _bridge(self) -> tuple[dict[int, Any], set[tuple[int, int]]]:
        """The conference bridge as it is now: its ports, and who transmits to whom."""
        ports = {}
        links = set()
        for media in self.endpoint.mediaEnumPorts2():
            source = media.getPortId()
            try:
                info = media.getPortInfo()  # keep it: its listeners live inside it
            except Exception:  # pjsua2.Error: PJSIP removes a port after its
                continue  # call's media went away, the enumeration still lists it
            ports[source] = media
            links |= {(source, sink) for sink in info.listeners}
        return ports, links

    def _remix(self) -> None:
        """Connect, in the conference bridge, the softphone's audio device
        (port 0) with every call of each talking leg, and those calls with
        each other; nothing else."""
        wanted: set[tuple[int, int]] = set()
        for leg in self.legs.values():
            if leg.state != "connected":
                continue
            members = []
            for call in self._live(leg):
                audio = None if call.ending else ua.audio_of(call)
                if audio is not None and call.media == "sendrecv":
                    members.append(audio.getPortId())
            for port in members:
                wanted |= {(0, port), (port, 0)}
                wanted |= {(port, other) for other in members if other != port}
        ports, links = self._bridge()
        # a call going away takes its ports and their links with it; a
        # disconnect queued for such a port would name a port that is gone
        stable = {0}
        for call in self._calls:
            audio = None if call.ended or call.ending else ua.audio_of(call)
            if audio is not None:
                stable.add(audio.getPortId())
        for source, sink in links - wanted:
            if source in stable and sink in stable and source in ports and sink in ports:
                ports[source].stopTransmit(ports[sink])
        for source, sink in wanted - links:
            if source in ports and sink in ports:
                ports[source].startTransmit(ports[sink])


def _party_order(name: str) -> tuple[bool, str]:
    return (name != "agent", name)

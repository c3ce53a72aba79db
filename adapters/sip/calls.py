"""The softphone's calls and legs: the pjsua2 objects and what they report.

A :class:`SoftCall` is one SIP call; a :class:`Leg` is what the engine
calls a call (``sip-1``, ``sip-2``, ...): one SIP call, except after a
conference, when the consult leg's calls join the primary leg, which then
stands for the softphone's three-way mix and ends when the last of its
calls ends. The :class:`Line` holds them all: it turns each SIP state change
into the switch event the engine expects, in order, and offers the
operations (``adapters.sip.operations``) what they act with: dialling,
hanging up, a leg by name. It calls nothing above it; pjsua2's callbacks
come to it.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from adapters.sip import ua
from adapters.sip.config import SipConfig
from fsm.switch_events import SwitchEvent

pj = ua.pj
logger = logging.getLogger("telephony_fsm.sip")
_CallBase: Any = pj.Call if pj is not None else object
_AccountBase: Any = pj.Account if pj is not None else object


#: what a direction other than sendrecv after a retrieve means, in words
ONE_WAY = {
    "sendonly": "sendonly, this side sends and hears nothing (the far end answered a=recvonly)",
    "recvonly": "recvonly, this side hears and is not heard (the far end answered a=sendonly)",
    "inactive": "inactive, no audio either way",
}


class Failed(Exception):
    """An operation cannot go on; the message is the result's reason."""


class SoftCall(_CallBase):  # type: ignore[misc]
    """One SIP call of the softphone; pjsua2 reports its changes to its line."""

    def __init__(self, line: Line, call_id: int | None = None) -> None:
        if call_id is None:
            super().__init__(line.account)
        else:
            super().__init__(line.account, call_id)
        self.line = line
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
        #: this side's un-hold re-INVITE is under way: its answer must bring both directions back
        self.unholding = False

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        self.state = info.state
        self.status = ua.status_text(info.lastStatusCode, info.lastReason)
        self.line.changed(self)

    def onCallMediaState(self, prm: Any) -> None:
        self.media = ua.media_direction(self)
        if self.unholding:
            self.unholding = False
            if self.media != "sendrecv":
                self.refused = f"retrieve answered with one-way media: {ONE_WAY.get(self.media, self.media)}"
        self.line.changed(self)

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
            self.line.changed(self)

    def onCallTransferStatus(self, prm: Any) -> None:
        self.transfer_status = ua.status_text(prm.statusCode, prm.reason)
        if prm.finalNotify or prm.statusCode >= 200:
            self.transfer_done = True
            prm.cont = False
        self.line.changed(self)

    @property
    def ended(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_DISCONNECTED)

    @property
    def confirmed(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_CONFIRMED)


class SoftAccount(_AccountBase):  # type: ignore[misc]
    """The softphone's SIP account: an incoming call goes to its line."""

    def __init__(self, line: Line) -> None:
        super().__init__()
        self.line = line

    def onIncomingCall(self, prm: Any) -> None:
        self.line.incoming(SoftCall(self.line, prm.callId), prm.rdata.wholeMsg)

    def onRegState(self, prm: Any) -> None:
        self.line.registration(int(prm.code), str(prm.reason), int(prm.expiration))


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


class Line:
    """Every call and leg of the softphone, and the events they caused."""

    def __init__(self, uri: str, config: SipConfig) -> None:
        self.config = config
        self.account = SoftAccount(self)
        self.account.create(
            ua.account_config(
                uri,
                media_host=config.media_host or config.host,
                registrar=config.registrar,
                expires=config.expires,
                proxy=config.proxy,
                auth_user=config.auth_user or config.user,
                password=config.password,
                params=config.uri_params(),
            )
        )
        #: the account is registered at the registrar; the status of the
        #: last registration answer, and how many answers came so far
        self.registered = False
        self.registration_status = ""
        self.registrations = 0
        self.legs: dict[str, Leg] = {}
        self.legs_made = 0
        self.calls: list[SoftCall] = []
        #: the events since they were last taken, in order
        self.events: list[SwitchEvent] = []
        #: the media of a talking leg changed: the mix must be redone
        self.dirty = False

    def take_events(self) -> list[SwitchEvent]:
        events, self.events = self.events, []
        return events

    # -- what pjsua2 reports
    def incoming(self, call: SoftCall, message: str) -> None:
        self.calls.append(call)
        info = call.getInfo()
        held = sum(not c.ended for c in self.calls) - 1
        if held >= self.config.max_calls:
            logger.warning(
                "call from %s refused with 486 Busy Here: the softphone holds %d calls, its maximum "
                "(--sip-max-calls)",
                info.remoteUri,
                held,
            )
            prm = pj.CallOpParam()
            prm.statusCode = 486
            call.hangup(prm)
            return
        leg = self.new_leg([call], outbound=False, state="offered")
        self.events.append(
            SwitchEvent(
                kind="offered",
                call=leg.name,
                device=self.config.device,
                ani=ua.user_of(info.remoteUri),
                dnis=ua.request_user(message) or ua.user_of(info.localUri),
                data=ua.data_of(message),
            )
        )
        prm = pj.CallOpParam()
        prm.statusCode = 180
        call.answer(prm)

    def registration(self, code: int, reason: str, expiration: int) -> None:
        """The registrar answered a REGISTER (PJSIP answered its digest
        challenge already): the agent is logged in while the account is
        registered. A registration lost later (a refresh refused) is the
        switch logging the agent out."""
        self.registrations += 1
        self.registration_status = ua.status_text(code, reason)
        registered = 200 <= code < 300 and expiration > 0
        if registered != self.registered:
            self.registered = registered
            state = "loggedin" if registered else "loggedout"
            self.events.append(SwitchEvent(kind="agent", device=self.config.device, state=state))
        if not 200 <= code < 300:
            logger.warning("registration at %s: %s", self.config.registrar, self.registration_status)

    def register(self, on: bool) -> int:
        """Ask the registrar to register (or unregister) the account; the
        number of answers so far, to wait for the next."""
        seen = self.registrations
        self.account.setRegistration(on)
        return seen

    def changed(self, call: SoftCall) -> None:
        """A call's state or media moved: update its leg and say what changed."""
        self.dirty = True
        leg = call.leg
        if leg is None or leg.state == "ended":
            return
        if call.ended:
            self._call_ended(leg, call)
            return
        if leg.state == "dialing" and call.state == pj.PJSIP_INV_STATE_EARLY:
            self.move(leg, "alerting")
        elif leg.state in ("offered", "dialing", "alerting") and call.confirmed and call.media != "none":
            leg.ever_connected = True
            self.move(leg, "connected")
        elif leg.state == "connected" and self.all_media(leg, ("sendonly", "inactive")):
            self.move(leg, "held")
        elif leg.state == "held" and self.all_media(leg, ("sendrecv",)):
            # both ways again; a one-way answer fails the retrieve (SoftCall.onCallMediaState)
            self.move(leg, "retrieved")

    def _call_ended(self, leg: Leg, call: SoftCall) -> None:
        if live(leg):  # a party left the mix; the leg goes on
            return
        leg.state = "ended"
        if leg.outbound and not leg.ever_connected and not leg.end_cause:
            self.events.append(SwitchEvent(kind="failed", call=leg.name, reason=call.status))
            return
        cause = leg.end_cause or f"remote: {call.status}"
        self.events.append(SwitchEvent(kind="ended", call=leg.name, cause=cause))

    # -- what operations act with
    def leg(self, name: str | None) -> Leg:
        """The live leg ``name`` (Failed when there is none)."""
        leg = self.legs.get(name or "")
        if leg is None or leg.state == "ended":
            raise Failed(f"no live call {name!r} on the softphone")
        return leg

    def new_leg(self, calls: list[SoftCall], *, outbound: bool, state: str) -> Leg:
        self.legs_made += 1
        leg = Leg(name=f"sip-{self.legs_made}", outbound=outbound, calls=calls, state=state)
        for call in calls:
            call.leg = leg
        self.legs[leg.name] = leg
        return leg

    def move(self, leg: Leg, kind: str) -> None:
        leg.state = "connected" if kind == "retrieved" else kind
        self.events.append(SwitchEvent(kind=kind, call=leg.name))

    def uri(self, destination: str) -> str:
        if destination.startswith(("sip:", "sips:")):
            return destination
        # over tcp or tls the URI must say so, or PJSIP looks for a UDP transport
        return f"sip:{destination}@{self.config.domain}{self.config.uri_params()}"

    def dial(self, destination: str) -> SoftCall:
        call = SoftCall(self)
        self.calls.append(call)
        try:
            call.makeCall(self.uri(destination), pj.CallOpParam(True))
        except Exception as exc:  # pjsua2.Error: a URI it cannot call, or no call slot left
            reason = str(getattr(exc, "reason", exc))
            if "ETOOMANY" in reason:
                held = sum(not c.ended for c in self.calls) - 1
                reason = f"the softphone holds {held} calls, all its SIP stack takes ({reason})"
            raise Failed(f"cannot call {destination!r}: {reason}") from None
        return call

    def hangup(self, leg: Leg, code: int) -> None:
        for call in live(leg):
            prm = pj.CallOpParam()
            prm.statusCode = code
            call.ending = True
            try:
                call.hangup(prm)
            except Exception:  # already ending
                continue

    @staticmethod
    def all_media(leg: Leg, directions: tuple[str, ...]) -> bool:
        calls = live(leg)
        return bool(calls) and all(c.media in directions for c in calls)

    def forget_ended(self) -> None:
        """Drop the calls that ended and belong to no leg."""
        self.calls = [c for c in self.calls if not (c.ended and c.leg is None)]

    def close(self) -> None:
        """Every Call object must be gone before the library is."""
        self.legs.clear()
        self.calls.clear()
        self.account.shutdown()
        del self.account


def live(leg: Leg) -> list[SoftCall]:
    """The calls of ``leg`` that have not ended."""
    return [c for c in leg.calls if not c.ended]

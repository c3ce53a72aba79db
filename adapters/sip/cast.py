"""The scripted far ends: real SIP user agents on loopback, in their own process.

``python -m adapters.sip.cast --agent sip:800@127.0.0.1:5060`` starts one
endpoint that plays every party the agent talks to, and prints
``{"ready": {"port": P, "uri": ...}}`` once it listens. Parties are named by
the user part of the URI they are called on or call from.

Who answers a call from the agent, by the number dialled (the dial plan of
the simulated switch, plus one):

- ``busy...``: rejects with 486 Busy Here;
- ``ring...``: rings (180) and never answers;
- ``hangup...``: answers, then hangs up after ``--hangup-after`` seconds;
- anything else: an expert who rings and answers.

Every party plays a tone of its own into each call, so what a party hears
(the level of the audio it receives) tells whose media reaches it.

Control, one JSON object per line on stdin:

- ``{"do": "call", "party": "5551000", "to": "800", "data": {...}}``: the
  party calls the agent (``to`` is the number dialled, the agent's DNIS;
  ``data`` travels in the ``X-Interaction-Data`` header);
- ``{"do": "hangup", "party": P}``: the party hangs up all its calls;
- ``{"do": "dtmf", "party": P, "digits": "12"}``;
- ``{"do": "report", "tag": T}``: one ``{"report": ...}`` line with every
  call's state, media direction and received audio level;
- ``{"do": "quit"}`` (or end of input).

Output, one JSON object per line on stdout: ``{"seen": ...}`` when a call
of a party changes state or media, ``{"dtmf": ...}`` for each digit
received, ``{"report": ...}``, and ``{"error": ...}`` for a control line
that cannot be used.
"""

from __future__ import annotations

import argparse
import gc
import os
import queue
import sys
import threading
import time
from typing import IO, Any

from adapters.sip import ua
from fsm.codec import dumps, loads

_TONES = (440, 523, 659, 784, 880, 988, 1175)

pj = ua.pj
_Base: Any = pj.Call if pj is not None else object
_AccountBase: Any = pj.Account if pj is not None else object


class FarCall(_Base):  # type: ignore[misc]
    """One call of one party."""

    def __init__(self, cast: Cast, account: Any, party: str, call_id: int | None = None) -> None:
        if call_id is None:
            super().__init__(account)
        else:
            super().__init__(account, call_id)
        self.cast = cast
        self.account = account
        self.party = party
        self.remote = ""
        self.state = "NULL"
        self.code = 0
        self.reason = ""
        self.media = "none"
        self.connected_at: float | None = None
        self.tone: Any = None
        self.seen_states: list[str] = []

    # pjsua2 callbacks (run inside libHandleEvents)
    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        self.state = ua.state_name(info.state)
        self.remote = ua.user_of(info.remoteUri)
        self.code = info.lastStatusCode
        self.reason = info.lastReason
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.connected_at is None:
            self.connected_at = time.monotonic()
        self.seen_states.append(self.state)
        self.cast.seen(self)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.cast.gone(self)

    def onCallMediaState(self, prm: Any) -> None:
        self.media = ua.media_direction(self)
        audio = ua.audio_of(self)
        if audio is not None:
            if self.tone is None:
                self.tone = self.cast.tone_for(self.party)
            self.tone.startTransmit(audio)
            # a port is read only when it has a listener: the party "listens"
            # on the null sound device, so the level of what it hears is measured
            audio.startTransmit(self.cast.endpoint.audDevManager().getPlaybackDevMedia())
        self.cast.seen(self)

    def onCallTransferRequest(self, prm: Any) -> None:
        # REFER (blind or with Replaces): accept and call the new target
        new = FarCall(self.cast, self.account, self.party)
        self.cast.calls.append(new)
        prm.newCall = new
        self.cast.emit({"refer": {"party": self.party, "to": prm.dstUri}})

    def onCallReplaced(self, prm: Any) -> None:
        # an INVITE with Replaces took this call's place
        new = FarCall(self.cast, self.account, self.party, prm.newCallId)
        self.cast.calls.append(new)
        prm.newCall = new
        self.cast.emit({"replaced": {"party": self.party, "call": self.remote}})

    def onDtmfDigit(self, prm: Any) -> None:
        self.cast.emit({"dtmf": {"party": self.party, "from": self.remote, "digit": prm.digit}})

    def view(self) -> dict[str, Any]:
        level = 0
        audio = ua.audio_of(self)
        if audio is not None:
            # the port transmits into the bridge what arrives from the remote party
            level = int(audio.getTxLevel())
        return {
            "party": self.party,
            "remote": self.remote,
            "state": self.state,
            "code": self.code,
            "media": self.media,
            "rx_level": level,
        }


class FarAccount(_AccountBase):  # type: ignore[misc]
    def __init__(self, cast: Cast) -> None:
        super().__init__()
        self.cast = cast

    def onIncomingCall(self, prm: Any) -> None:
        party = ua.request_user(prm.rdata.wholeMsg)
        call = FarCall(self.cast, self, party, prm.callId)
        self.cast.calls.append(call)
        self.cast.incoming(call)


class Cast:
    def __init__(self, host: str, port: int, agent: str, hangup_after: float, out: IO[str]) -> None:
        self.out = out
        self.closed = False
        self.endpoint, self.port = ua.start_endpoint(host, port)
        self.host = host
        self.agent = agent
        self.hangup_after = hangup_after
        self.calls: list[FarCall] = []
        self.accounts: dict[str, Any] = {}
        self.tones: dict[str, Any] = {}
        self.timers: list[tuple[float, str, FarCall]] = []
        self.default = self.account_for("cast")
        self.default.setDefault()

    def account_for(self, party: str) -> Any:
        if party not in self.accounts:
            account = FarAccount(self)
            account.create(ua.account_config(f"sip:{party}@{self.host}:{self.port}"))
            self.accounts[party] = account
        return self.accounts[party]

    def tone_for(self, party: str) -> Any:
        if party not in self.tones:
            tone = pj.ToneGenerator()
            tone.createToneGenerator()
            desc = pj.ToneDesc()
            desc.freq1 = _TONES[len(self.tones) % len(_TONES)]
            desc.freq2 = 0
            desc.on_msec = 1000
            desc.off_msec = 0
            desc.volume = 0
            tones = pj.ToneDescVector()
            tones.append(desc)
            tone.play(tones, True)
            self.tones[party] = tone
        return self.tones[party]

    # -- what happens
    def emit(self, item: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.out.write(dumps(item, ascii=True) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):  # whoever read us has gone: stop
            self.closed = True

    def seen(self, call: FarCall) -> None:
        self.emit({"seen": call.view()})

    def gone(self, call: FarCall) -> None:
        self.timers = [t for t in self.timers if t[2] is not call]

    def incoming(self, call: FarCall) -> None:
        party = call.party
        prm = pj.CallOpParam()
        if party.startswith("busy"):
            prm.statusCode = 486
            call.answer(prm)
            return
        prm.statusCode = 180
        call.answer(prm)
        if party.startswith("ring"):
            return
        self.timers.append((time.monotonic() + 0.2, "answer", call))
        if party.startswith("hangup"):
            self.timers.append((time.monotonic() + 0.2 + self.hangup_after, "hangup", call))

    def due(self) -> None:
        now = time.monotonic()
        ready = [t for t in self.timers if t[0] <= now]
        self.timers = [t for t in self.timers if t[0] > now]
        for _, what, call in ready:
            if what == "answer":
                prm = pj.CallOpParam()
                prm.statusCode = 200
                call.answer(prm)
            else:
                call.hangup(pj.CallOpParam())

    # -- control
    def control(self, item: object) -> bool:
        """Carry out one control line; False to stop."""
        if not isinstance(item, dict) or not isinstance(item.get("do"), str):
            self.emit({"error": "a control line is a JSON object with 'do'"})
            return True
        do = item["do"]
        party = item.get("party")
        if do == "quit":
            return False
        if do == "report":
            calls = [c.view() for c in self.calls if c.state != "DISCONNECTED"]
            self.emit({"report": {"tag": item.get("tag"), "calls": calls}})
            return True
        if not isinstance(party, str) or not party:
            self.emit({"error": f"{do}: 'party' must be a non-empty string"})
            return True
        if do == "call":
            self.call(party, str(item.get("to", "")), item.get("data"))
        elif do == "hangup":
            for call in [c for c in self.calls if c.party == party and c.state != "DISCONNECTED"]:
                call.hangup(pj.CallOpParam())
        elif do == "dtmf":
            for call in [c for c in self.calls if c.party == party and c.state == "CONFIRMED"]:
                call.dialDtmf(str(item.get("digits", "")))
        else:
            self.emit({"error": f"unknown 'do' {do!r}: expected call, hangup, dtmf, report or quit"})
        return True

    def call(self, party: str, to: str, data: object) -> None:
        account = self.account_for(party)
        call = FarCall(self, account, party)
        self.calls.append(call)
        prm = pj.CallOpParam(True)
        if isinstance(data, dict) and data:
            header = pj.SipHeader()
            header.hName = ua.DATA_HEADER
            header.hValue = dumps(data, ascii=True)  # a SIP header: ASCII
            prm.txOption.headers.append(header)
        user, _, where = self.agent.partition(":")[2].partition("@")
        call.makeCall(f"sip:{to or user}@{where}", prm)

    def run(self, lines: queue.Queue[str | None]) -> None:
        self.emit({"ready": {"port": self.port, "uri": f"sip:cast@{self.host}:{self.port}"}})
        running = True
        while running and not self.closed:
            self.endpoint.libHandleEvents(10)
            self.due()
            while running:
                try:
                    line = lines.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    running = False
                    break
                if not line.strip():
                    continue
                try:
                    item = loads(line)
                except ValueError as exc:
                    self.emit({"error": f"control line is not JSON: {exc}"})
                    continue
                running = self.control(item)
        self.endpoint.hangupAllCalls()
        for _ in range(20):
            self.endpoint.libHandleEvents(10)
        # every Call and media object must be gone before the library is
        self.calls.clear()
        self.timers.clear()
        for tone in self.tones.values():
            tone.stop()
        self.tones.clear()
        for account in self.accounts.values():
            account.shutdown()
        self.accounts.clear()
        del self.default
        gc.collect()
        self.endpoint.libDestroy()


def _own_stdout() -> IO[str]:
    """Keep standard output for this program's JSON lines: the SIP stack
    writes its log to file descriptor 1, which now goes to standard error."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    return out


def _read(lines: queue.Queue[str | None]) -> None:
    for line in sys.stdin:
        lines.put(line)
    lines.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.sip.cast", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="UDP port (0: any free port)")
    parser.add_argument("--agent", required=True, help="the agent's SIP URI, e.g. sip:800@127.0.0.1:5060")
    parser.add_argument("--hangup-after", type=float, default=1.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    out = _own_stdout()
    try:
        cast = Cast(args.host, args.port, args.agent, args.hangup_after, out)
    except ua.SipUnavailable as exc:
        print(f"cast: {exc}", file=sys.stderr)
        return 2
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read, args=(lines,), daemon=True).start()
    cast.run(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``telephony-fsm demo --switch sip``: the main job on real SIP calls.

The reference bridge, the engine and the agent's SIP softphone run in this
process; the far ends (:mod:`adapters.sip.cast`) run in a second process
and call and answer over UDP on loopback. After each step the demo lets
SIP run until the bridge has its answers and the calls have been quiet for
a moment, then asks the far ends what they see (call state, media
direction, the level of the audio each one hears) and shows it.

``--peers FILE`` writes what the far ends reported (JSONL), for tests.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from typing import IO, Any

from adapters.demo import Demo
from adapters.session import Step
from adapters.sip.softphone import SipConfig, SipSoftphone
from fsm.codec import dumps, loads
from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory
from fsm.outputs import Targets
from fsm.policy import Policy
from fsm.switch_events import event_to_wire

#: The demo's call on real SIP: the customer calls in, the agent accepts,
#: consults the expert at 200 (and the desktop waits for her to answer, as
#: it would for a real far end), alternates twice, conferences her in; she
#: leaves; the agent consults 300, waits for the answer and transfers the
#: customer there.
SIP_CALL: list[Step] = [
    {
        "actor": "far",
        "do": "call",
        "party": "5551000",
        "to": "800",
        "data": {"account": {"id": "42", "tier": "gold"}},
        "say": "the customer at 5551000 calls 800; the softphone rings",
    },
    {"actor": "agent", "action": "accept", "say": "the agent accepts the call (200 OK)"},
    {
        "actor": "agent",
        "action": "consult",
        "body": {"destination": "200"},
        "say": "the agent consults the expert at 200 (re-INVITE sendonly to the customer, INVITE to 200)",
    },
    {
        "actor": "bridge",
        "wait": {"state": "TALKING", "role": "consult"},
        "say": "the desktop waits for the expert to answer",
    },
    {"actor": "agent", "action": "alternate", "say": "the agent alternates back to the customer"},
    {"actor": "agent", "action": "alternate", "say": "and back to the expert"},
    {
        "actor": "agent",
        "action": "conference",
        "say": "the agent conferences the expert in (three-way mix in the softphone)",
    },
    {"actor": "far", "do": "hangup", "party": "200", "say": "the expert at 200 leaves the conference"},
    {
        "actor": "agent",
        "action": "consult",
        "body": {"destination": "300"},
        "say": "the agent consults a second expert at 300",
    },
    {
        "actor": "bridge",
        "wait": {"state": "TALKING", "role": "consult"},
        "say": "the desktop waits for the second expert to answer",
    },
    {
        "actor": "agent",
        "action": "transfer",
        "say": "the agent transfers the customer to 300 (REFER with Replaces)",
    },
    {
        "actor": "agent",
        "action": "complete",
        "body": {"wrapup": "transferred"},
        "say": "the agent completes the wrap-up; the bridge disposes the interaction",
    },
]


class CastProcess:
    """The far ends' process, driven through its control lines."""

    def __init__(self, agent_uri: str, *, hangup_after: float = 1.0, log: IO[str] | None = None) -> None:
        command = [sys.executable, "-m", "adapters.sip.cast", "--agent", agent_uri]
        command += ["--hangup-after", str(hangup_after)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log if log is not None else subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self._next(10.0)
        if ready is None or "ready" not in ready:
            self.close()
            raise RuntimeError(f"the far ends did not start: {ready!r}")
        self.port: int = ready["ready"]["port"]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if line is None else loads(line)

    def send(self, item: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(dumps(item, ascii=True) + "\n")
        self.process.stdin.flush()

    def lines(self) -> list[dict[str, Any]]:
        """What the far ends reported since the last call."""
        found: list[dict[str, Any]] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return found
            if line is None:
                return found
            found.append(loads(line))

    def report(self, tag: str, timeout: float = 5.0) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Ask for a report; return it with the other lines read meanwhile."""
        self.send({"do": "report", "tag": tag})
        others: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self._next(deadline - time.monotonic())
            if item is None:
                break
            if "report" in item and item["report"].get("tag") == tag:
                return item["report"], others
            others.append(item)
        return None, others

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send({"do": "quit"})
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class SipDemo(Demo):
    def __init__(
        self,
        out: IO[str],
        phone: SipSoftphone,
        cast: CastProcess,
        *,
        colour: bool = False,
        trace: IO[str] | None = None,
        peers: IO[str] | None = None,
        policy: Policy | None = None,
        targets: Targets | None = None,
        directory: AgentDirectory = DEFAULT_DIRECTORY,
        quiet: float = 0.5,
        limit: float = 15.0,
    ) -> None:
        super().__init__(
            out, colour=colour, trace=trace, policy=policy, targets=targets, directory=directory, switch=phone
        )
        self.phone = phone
        self.cast = cast
        self.peers = peers
        self.quiet = quiet
        self.limit = limit
        self.number = 0
        self._clock = time.monotonic()

    def play(self, steps: list[Step]) -> int:
        code = 1
        try:
            code = super().play(steps)
        finally:
            self.phone.close()
            self.cast.close()
        return code

    def wait(self, step: Step) -> None:
        """A wait for time lets SIP run that long; the others are judged
        once SIP has settled (as in the simulated demo)."""
        seconds = step["wait"].get("seconds")
        if seconds is None:
            super().wait(step)
            return
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.settle()

    def step(self, step: Step) -> None:
        self.number += 1
        if step["actor"] == "far":
            self.cast.send({k: v for k, v in step.items() if k not in ("actor", "say")})
        else:
            super().step(step)
        self.settle()

    def settle(self) -> None:
        """Let SIP run until the bridge has every answer, no command is
        under way and nothing has happened for ``quiet`` seconds."""
        start = last = time.monotonic()
        while True:
            events = self.phone.poll(20)
            now = time.monotonic()
            for event in events:
                self._feed({"from": "switch", "event": event_to_wire(event)})
                last = now
            for item in self.cast.lines():
                self._peer(item)
                last = now
            if self.engine.awaited and now - self._clock >= 1.0:
                self._feed({"from": "clock", "advance": round(now - self._clock, 3)})
            if not self.engine.awaited:
                self._clock = now
            if not self.bridge.pending and not self.phone.busy and now - last >= self.quiet:
                return
            if now - start > self.limit:
                self.screen.say("error", f"  still waiting after {self.limit:g} s; going on")
                return

    def show_state(self) -> None:
        super().show_state()
        report, others = self.cast.report(str(self.number))
        for item in others:
            self._peer(item)
        if report is None:
            self.screen.say("error", "  the far ends did not report")
            return
        self._log({"step": self.number, "report": report})
        for call in report["calls"]:
            self.screen.say(
                "switch",
                f"  peer:  {call['party']} <-> {call['remote']}: {call['state']}, media {call['media']}, "
                f"hears level {call['rx_level']}",
            )
        if not report["calls"]:
            self.screen.say("switch", "  peer:  no calls at the far ends")
        mix = self.phone.mix()
        if mix:
            heard = "; ".join(f"{source} -> {', '.join(sinks)}" for source, sinks in mix.items())
            self.screen.say("switch", f"  mix:   {heard}")

    def _peer(self, item: dict[str, Any]) -> None:
        self._log({"step": self.number, **item})

    def _log(self, item: dict[str, Any]) -> None:
        if self.peers is not None:
            self.peers.write(dumps(item, ascii=True) + "\n")
            self.peers.flush()


def run_sip_demo(
    out: IO[str],
    *,
    steps: list[Step] | None = None,
    colour: bool = False,
    trace: IO[str] | None = None,
    peers: IO[str] | None = None,
    policy: Policy | None = None,
    targets: Targets | None = None,
    directory: AgentDirectory = DEFAULT_DIRECTORY,
    config: SipConfig | None = None,
    hangup_after: float = 1.0,
) -> int:
    config = config or SipConfig(port=0, user="800")
    config.device = directory.agents[0].end_point
    phone = SipSoftphone(config)
    try:
        cast = CastProcess(phone.uri, hangup_after=hangup_after)
    except BaseException:
        phone.close()
        raise
    phone.config.domain = f"127.0.0.1:{cast.port}"
    out.write(f"softphone {phone.uri}; far ends at sip:...@127.0.0.1:{cast.port}\n")
    demo = SipDemo(
        out,
        phone,
        cast,
        colour=colour,
        trace=trace,
        peers=peers,
        policy=policy,
        targets=targets,
        directory=directory,
    )
    return demo.play(steps or SIP_CALL)

"""``telephony-fsm demo``: the main job on the embedded defaults.

The reference bridge, the engine and the simulated switch run in one
process and play an agent session (by default the full call of harness.md).
Every message between bridge and client, every switch command and event is
shown as it happens, then the state of the interaction and of each leg
after every step, and a summary. Exit 0 only if no rule was broken and
every agent request succeeded.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import IO, Any

from adapters.bridge import Deliver, ReferenceBridge, Send
from adapters.runner import Runner
from adapters.session import DEMO_CALL, Step, describe_wait
from adapters.show import COLOURS, render
from adapters.simulated import SimulatedSwitch
from adapters.switch import Switch
from fsm.checker import Violation
from fsm.codec import loads
from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory
from fsm.engine import Engine, Targets, describe
from fsm.policy import Policy

_COLOURS = {**COLOURS, "head": "1", "state": "35"}


class Screen:
    """Renders trace entries as they are written, and keeps the counts."""

    def __init__(self, out: IO[str], colour: bool, trace: IO[str] | None) -> None:
        self.out = out
        self.colour = colour
        self.trace = trace
        self.counts: Counter[str] = Counter()

    def write(self, text: str) -> int:
        if self.trace is not None:
            self.trace.write(text)
        for line in text.splitlines():
            entry = loads(line)
            self._count(entry)
            who, shown = render(entry)
            self.say(who, "  " + shown)
        return len(text)

    def flush(self) -> None:
        return None

    def _count(self, entry: dict[str, Any]) -> None:
        if entry.get("from") == "bridge":
            self.counts["bridge->client"] += 1
        elif entry.get("to") == "bridge":
            self.counts["client->bridge"] += 1
        elif entry.get("to") == "switch":
            self.counts["switch commands"] += 1
        elif entry.get("from") == "switch":
            self.counts["switch events"] += 1

    def say(self, who: str, text: str) -> None:
        if self.colour:
            text = f"\x1b[{_COLOURS[who]}m{text}\x1b[0m"
        self.out.write(text + "\n")


class Demo:
    def __init__(
        self,
        out: IO[str],
        *,
        colour: bool = False,
        trace: IO[str] | None = None,
        policy: Policy | None = None,
        targets: Targets | None = None,
        directory: AgentDirectory = DEFAULT_DIRECTORY,
        switch: Switch | None = None,
    ) -> None:
        policy = policy or Policy()
        targets = targets or Targets()
        switch = switch or SimulatedSwitch()
        self.screen = Screen(out, colour, trace)
        self.engine = Engine(policy, targets, directory=directory, switch_acknowledges=switch.acknowledges)
        self.runner = Runner(self.engine, switch, trace=self.screen)  # type: ignore[arg-type]
        logins = tuple(agent.agent for agent in directory.agents)
        self.bridge = ReferenceBridge(targets, policy, logins=logins)
        #: the events the bridge had seen when the last agent step was sent (what a wait counts from)
        self.events_mark: Counter[str] = Counter()
        self.inputs = 0

    def play(self, steps: list[Step]) -> int:
        self.runner.connected(1)  # the bridge and the client in one process: one connection
        self.screen.say("head", f"\n== start-up and login of {', '.join(self.bridge.logins)}")
        self._pump(self.bridge.start())
        self.settle()
        self.show_state()
        for number, step in enumerate(steps, start=1):
            caption = step.get("say") or _caption(step)
            self.screen.say("head", f"\n== {number}. {step['actor']}: {caption}")
            self.step(step)
            self.show_state()
        self.screen.say("head", "\n== logout")
        self._pump(self.bridge.logout())
        self.settle()
        self.show_state()
        self.report(self.bridge.finish())
        return self.summary(len(steps))

    def settle(self) -> None:
        """Wait for a switch that reports on its own (none here: the
        simulated switch answers within each input)."""

    def wait(self, step: Step) -> None:
        """A bridge step (adapters.session): the switch has settled, so an
        event or a state either happened or will not; a wait for time
        advances the engine clock."""
        wait = step["wait"]
        if "seconds" in wait:
            self._feed({"from": "clock", "advance": wait["seconds"]})
            return
        before = self.events_mark[wait.get("event", "")]
        if not self.bridge.holds(wait, step.get("interaction"), before):
            self.screen.say("error", f"  waited for {describe_wait(step)}: it did not happen")
            self.bridge.outcomes.append(("wait", "FAILURE", f"{describe_wait(step)} did not happen", False))

    def step(self, step: Step) -> None:
        actor = step["actor"]
        if actor == "far":
            self.screen.say("error", "  a far-end step needs real far ends: demo --switch sip")
            self.bridge.outcomes.append(("far", "FAILURE", "no far ends with this switch", False))
        elif actor == "customer":
            self._feed({"from": "switch", "event": step["event"]})
        elif actor == "clock":
            self._feed({"from": "clock", "advance": step["advance"]})
        elif actor == "bridge":
            self.wait(step)
        elif step["action"] == "dial":
            self.events_mark = Counter(self.bridge.events_seen)
            try:
                self._pump(self.bridge.dial(step.get("body", {}).get("destination", "")))
            except ValueError as exc:
                self.screen.say("error", f"  {exc}")
                self.bridge.outcomes.append(("dial", "FAILURE", str(exc), False))
        else:
            if not self.bridge.interactions:
                self.screen.say("error", "  no interaction to act on")
                self.bridge.outcomes.append((step["action"], "FAILURE", "no interaction", False))
                return
            interaction = step.get("interaction") or list(self.bridge.interactions)[-1]
            self.events_mark = Counter(self.bridge.events_seen)
            try:
                outputs = self.bridge.request(
                    interaction, step["action"], step.get("role", "primary"), **step.get("body", {})
                )
            except ValueError as exc:  # nothing to send it to: the desktop cannot ask
                self.screen.say("error", f"  {exc}")
                self.bridge.outcomes.append((step["action"], "FAILURE", str(exc), False))
                return
            self._pump(outputs)

    def _feed(self, item: dict[str, Any]) -> None:
        self.inputs += 1
        outputs = self.runner.feed_item(item, self.inputs)
        pending: list[Any] = []
        for entry in outputs:
            if entry.get("to") == "bridge":
                pending += self.bridge.receive(entry["message"])
        self._pump(pending)

    def _pump(self, outputs: list[Any]) -> None:
        queue = deque(outputs)
        while queue:
            output = queue.popleft()
            if isinstance(output, Send):
                self.inputs += 1
                item = {"from": "bridge", "message": output.message}
                for entry in self.runner.feed_item(item, self.inputs):
                    if entry.get("to") == "bridge":
                        queue.extend(self.bridge.receive(entry["message"]))
            elif isinstance(output, Violation):
                self.report([output])
            elif isinstance(output, Deliver):
                pass  # delivered to the desktop; the trace already showed it arrive

    def report(self, violations: list[Violation]) -> None:
        for v in violations:
            self.screen.say("error", f"  VIOLATION {v.rule}: {v.explanation}")

    def show_state(self) -> None:
        self.screen.say("state", f"  state: control {self.engine.control.target} {self.engine.control.state}")
        for session in self.engine.sessions.values():
            agent = self.engine.state.directory.get(session.agent)
            device = self.engine.devices_by_end_point.get(agent.end_point) if agent is not None else None
            shown = device.state if device is not None else "?"
            self.screen.say(
                "state", f"         session {session.target} agent {session.agent}: channel {shown}"
            )
        for interaction in self.engine.interactions.values():
            self.screen.say("state", f"  state: interaction {interaction.id} {describe(interaction.state)}")
            for leg in interaction.legs.values():
                created = f" as {leg.bridge_id}" if leg.bridge_id else ""
                self.screen.say(
                    "state",
                    f"         {leg.role} leg {leg.call}: {leg.state}{created} ({leg.lifecycle.lower()})",
                )
        if not self.engine.interactions:
            self.screen.say("state", "  state: no live interaction")

    def summary(self, steps: int) -> int:
        counts = self.screen.counts
        failed = [o for o in self.bridge.outcomes if o[1] != "SUCCESS"]
        violations = len(self.bridge.violations)
        self.screen.say("head", "\n== summary")
        lines = [
            f"steps: {steps}",
            f"messages: {counts['bridge->client']} bridge -> client ({self.bridge.requests} requests), "
            f"{counts['client->bridge']} client -> bridge",
            f"switch: {counts['switch commands']} commands, {counts['switch events']} events",
            f"agent requests: {len(self.bridge.outcomes)}, failed: {len(failed)}",
            f"rule violations: {violations}",
        ]
        for line in lines:
            self.screen.say(
                "error" if line.endswith(f"violations: {violations}") and violations else "head", line
            )
        for name, _, message, _ in failed:
            self.screen.say("error", f"failed: {name}: {message}")
        return 0 if violations == 0 and not failed else 1


def _caption(step: Step) -> str:
    if step["actor"] == "agent":
        props = " ".join(f"{k}={v}" for k, v in step.get("body", {}).items())
        return f"{step['action']} {props}".strip()
    if step["actor"] == "clock":
        return f"+{step['advance']} s"
    if step["actor"] == "far":
        return f"{step['party']} {step['do']}"
    if step["actor"] == "bridge":
        return f"wait for {describe_wait(step)}"
    return f"{step['event'].get('kind')} {step['event'].get('call', '')}"


def run_demo(
    out: IO[str],
    *,
    steps: list[Step] | None = None,
    colour: bool = False,
    trace: IO[str] | None = None,
    policy: Policy | None = None,
    targets: Targets | None = None,
    directory: AgentDirectory = DEFAULT_DIRECTORY,
) -> int:
    demo = Demo(out, colour=colour, trace=trace, policy=policy, targets=targets, directory=directory)
    return demo.play(steps or DEMO_CALL)

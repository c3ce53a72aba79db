"""``telephony-fsm bridge --listen HOST:PORT``: the reference bridge as a process.

It listens on the framed TCP transport, drives whatever client connects, and
plays the agent's side of a session (by default the demo's call; ``--steps
FILE`` for another): each agent step is sent once the interaction is
initialized with all its conversations (S-INIT-6) and nothing is pending,
and the next waits for its answer. Customer and clock steps belong to the
client side (``serve --switch-events``) and are skipped here.

Each connection's start is written to the trace as ``{"connection": N}``
(N from 1). When the session is over, it closes the connection (cleanly, at
a frame boundary: the protocol has no goodbye message) and exits. When the
connection drops, it keeps listening; on the next connection it
re-initializes every live destination (D-LIFE-5, D-CC-3) and re-sends a
desktop request whose answer was lost with the same requestId, so that a
request the client already executed is refused as a duplicate (D-DUP) and
never executed twice. Exit 0 when the session ran with no rule violation
and no failed request, 1 otherwise (or on timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from adapters.bridge import ReferenceBridge, Send
from adapters.framing import ByteOrder
from adapters.options import (
    add_policy,
    add_processor_client,
    add_trace,
    add_wire_arguments,
    open_trace,
    policy_of,
    targets_of,
    wire_options,
)
from adapters.session import DEMO_CALL, WAIT_TIMEOUT, BadSession, Step, describe_wait, load_steps
from adapters.transport import FramedConnection, TransportError, serve
from fsm.checker import Violation
from fsm.codec import dumps
from fsm.outputs import Targets
from fsm.policy import Policy

logger = logging.getLogger("telephony_fsm.bridge")

#: the requests of an agent's login (adapters.bridge outcomes)
_LOGIN_REQUESTS = frozenset({"channel.request.activate", "channel.request.ready"})


class BridgeProcess:
    def __init__(
        self,
        steps: list[Step],
        *,
        policy: Policy | None = None,
        targets: Targets | None = None,
        logins: tuple[str, ...] = ("agent-1",),
        trace: IO[str] | None = None,
        report: IO[str] | None = None,
        per_call: tuple[list[Step], ...] = (),
        calls: int = 0,
    ) -> None:
        self.steps = steps
        #: the scripts played for every call instead of ``steps``, in turn,
        #: each call on its own, until ``calls`` calls were played
        self.per_call = per_call
        self.calls = calls
        self.bridge = ReferenceBridge(targets, policy, logins=logins)
        self.trace = trace
        self.report = report or sys.stderr
        self.conn: FramedConnection | None = None
        self.connections = 0
        self.changed = asyncio.Event()
        self.failed: list[str] = []

    # -- the connection
    async def handle(self, conn: FramedConnection) -> None:
        if self.conn is not None:
            logger.warning("a second client connected; refusing it")
            conn.abort()  # a reset: that client must not take it for the end of a session
            return
        self.conn = conn
        self.connections += 1
        self.record({"connection": self.connections})
        try:
            if self.connections > 1:
                await self.send(self.bridge.reinitialize())
            else:
                await self.send(self.bridge.start())  # F-CTRL-2
            self.changed.set()
            while (message := await conn.recv()) is not None:  # a JSON object (D-WIRE)
                self.record({"to": "bridge", "message": message})
                await self.send(self.bridge.receive(message))
                self.changed.set()
        except TransportError as error:  # the transport logged why (D-WIRE) and closed it
            logger.info("connection to the client ended: %s", error)
        finally:
            self.conn = None
            self.bridge.connection_lost()
            self.changed.set()

    async def send(self, outputs: list[Any]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self.record({"from": "bridge", "message": output.message})
                if self.conn is not None:
                    try:
                        await self.conn.send(output.message)
                    except TransportError as error:
                        logger.warning("sending to the client failed: %s", error)
            elif isinstance(output, Violation):
                self.show([output])

    def record(self, entry: dict[str, Any]) -> None:
        if self.trace is not None:
            self.trace.write(dumps(entry) + "\n")
            self.trace.flush()

    def show(self, violations: list[Violation]) -> None:
        for v in violations:
            self.report.write(f"VIOLATION {v.rule}: {v.explanation}\n")

    # -- the session
    async def until(self, ready: Callable[[], bool], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def _login_failed(self) -> bool:
        """An agent's activate or ready was refused: the logins will not complete."""
        return any(o[0] in _LOGIN_REQUESTS and o[1] != "SUCCESS" for o in self.bridge.outcomes)

    async def _wait(self, step: Step, mark: Counter[str], deadline: float) -> None:
        """A bridge step: wait for time, an event (counted since the last
        agent step was sent) or a state, within its timeout and the run's."""
        wait = step["wait"]
        loop = asyncio.get_running_loop()
        if "seconds" in wait:
            await _sleep_until(min(deadline, loop.time() + wait["seconds"]))
            return
        limit = min(deadline, loop.time() + step.get("timeout", WAIT_TIMEOUT))
        before = mark[wait.get("event", "")]
        try:
            await self.until(lambda: self.bridge.holds(wait, step.get("interaction"), before), limit)
        except TimeoutError:
            waited = step.get("timeout", WAIT_TIMEOUT)
            raise WaitFailed(f"waited {waited:g} s for {describe_wait(step)}: it did not happen") from None

    def _idle(self) -> bool:
        bridge = self.bridge
        return (
            self.conn is not None
            and bool(bridge.interactions)
            and not bridge.pending
            and not bridge.lost
            and all(i.settled and i.initialized for i in bridge.interactions.values())
        )

    async def play(self, timeout: float) -> int:
        deadline = asyncio.get_running_loop().time() + timeout
        gave_up = False
        try:
            await self.until(
                lambda: (self.bridge.all_ready or self._login_failed()) and not self.bridge.pending, deadline
            )
            try:
                if self.per_call:
                    await self._play_calls(deadline)
                else:
                    await self._play_steps(deadline)
            except WaitFailed as failure:  # the session ends all the same: the agents log out
                self.report.write(f"{failure}\n")
                gave_up = True
            if not gave_up:
                # the session is over when nothing is pending and every interaction is gone or settled
                await self.until(
                    lambda: not self.bridge.pending and not self.bridge.lost and not self.bridge.interactions,
                    deadline,
                )
            await self.send(self.bridge.logout())  # D-SESS-2, then the sessions are disposed
            await self.until(
                lambda: not self.bridge.pending and all(s.disposed for s in self.bridge.sessions.values()),
                deadline,
            )
        except TimeoutError:
            self.report.write(f"timed out after {timeout:g} s waiting for the client\n")
            return 1
        finally:
            self.show(self.bridge.finish())
        failed = [o for o in self.bridge.outcomes if o[1] != "SUCCESS" and not o[3]]
        for name, _, message, _ in failed:
            self.report.write(f"failed: {name}: {message}\n")
        violations = len(self.bridge.violations)
        self.report.write(
            f"bridge: {len(self.bridge.outcomes)} agent requests, {len(failed)} failed, "
            f"{violations} rule violations, {self.connections} connections\n"
        )
        return 0 if not failed and not violations and not gave_up else 1

    async def _play_calls(self, deadline: float) -> None:
        """``--per-call``: every call that arrives gets its own run of a
        script (the scripts in turn), all at the same time, until
        ``calls`` calls have been played; a call's agent step is sent once
        that call is initialized and has nothing pending."""
        started: dict[str, asyncio.Task[None]] = {}
        while len(started) < self.calls:
            await self.until(lambda: any(i not in started for i in self.bridge.interactions), deadline)
            for interaction_id in [i for i in self.bridge.interactions if i not in started]:
                if len(started) == self.calls:
                    break
                script = self.per_call[len(started) % len(self.per_call)]
                started[interaction_id] = asyncio.create_task(
                    self._play_call(interaction_id, script, deadline), name=f"call {interaction_id}"
                )
        await asyncio.gather(*started.values())

    async def _play_call(self, interaction_id: str, script: list[Step], deadline: float) -> None:
        mark = Counter(self.bridge.events_seen)
        for step in script:
            step = {**step, "interaction": interaction_id}
            if step["actor"] == "bridge":
                await self._wait(step, mark, deadline)
                continue
            if step["actor"] != "agent":
                continue
            await self.until(lambda: self._call_ready(interaction_id), deadline)
            mark = Counter(self.bridge.events_seen)
            await self.send(
                self.bridge.request(
                    interaction_id, step["action"], step.get("role", "primary"), **step.get("body", {})
                )
            )
            await self.until(lambda: not self._pending_on(interaction_id), deadline)

    def _pending_on(self, interaction_id: str) -> bool:
        return any(p.interaction_id == interaction_id for p in self.bridge.pending.values())

    def _call_ready(self, interaction_id: str) -> bool:
        interaction = self.bridge.interactions.get(interaction_id)
        return (
            self.conn is not None
            and interaction is not None
            and interaction.initialized
            and interaction.settled
            and not self.bridge.lost
            and not self._pending_on(interaction_id)
        )

    async def _play_steps(self, deadline: float) -> None:
        """The session's steps, each when its turn comes (see the module's docstring)."""
        mark = Counter(self.bridge.events_seen)  # the events a wait step counts from
        for step in self.steps if not self._login_failed() else ():
            if step["actor"] == "bridge":
                await self._wait(step, mark, deadline)
                continue
            if step["actor"] != "agent":
                continue
            if step["action"] == "dial":  # no interaction yet: it makes one
                await self.until(lambda: not self.bridge.pending and not self.bridge.lost, deadline)
                answered = len(self.bridge.outcomes)
                mark = Counter(self.bridge.events_seen)
                await self.send(self.bridge.dial(step.get("body", {}).get("destination", "")))
                await self.until(lambda n=answered: len(self.bridge.outcomes) > n, deadline)  # type: ignore[misc]
                continue
            named: str | None = step.get("interaction")

            def ready(named: str | None = named) -> bool:
                """Idle, and the step's interaction is there (another agent's call may come first)."""
                return self._idle() and (named is None or named in self.bridge.interactions)

            await self.until(ready, deadline)
            interaction = named or list(self.bridge.interactions)[-1]
            answered = len(self.bridge.outcomes)
            mark = Counter(self.bridge.events_seen)
            await self.send(
                self.bridge.request(
                    interaction, step["action"], step.get("role", "primary"), **step.get("body", {})
                )
            )
            await self.until(lambda n=answered: len(self.bridge.outcomes) > n, deadline)  # type: ignore[misc]


class WaitFailed(Exception):
    """A bridge step's wait ran out; the message names what it waited for."""


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))


async def run_bridge(
    host: str,
    port: int,
    steps: list[Step],
    *,
    policy: Policy | None = None,
    targets: Targets | None = None,
    logins: tuple[str, ...] = ("agent-1",),
    trace: IO[str] | None = None,
    report: IO[str] | None = None,
    timeout: float = 60.0,
    ssl: Any = None,
    byte_order: ByteOrder = "big",
    tcp_keepalive: float | None = None,
    on_listening: Callable[[int], None] | None = None,
    per_call: tuple[list[Step], ...] = (),
    calls: int = 0,
) -> int:
    process = BridgeProcess(
        steps,
        policy=policy,
        targets=targets,
        logins=logins,
        trace=trace,
        report=report,
        per_call=per_call,
        calls=calls,
    )
    server = await serve(
        host,
        port,
        process.handle,
        ssl=ssl,
        byte_order=byte_order,
        tcp_keepalive=tcp_keepalive,
        max_frame_size=(policy or Policy()).max_frame_size,
    )
    try:
        if on_listening is not None:
            on_listening(server.sockets[0].getsockname()[1])
        code = await process.play(timeout)
        conn = process.conn
        if conn is not None:
            await conn.close()  # the session is over: a clean close at a frame boundary
        return code
    finally:
        server.close()
        await server.wait_closed()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to listen (port 0: any)")
    parser.add_argument(
        "--steps", metavar="FILE", help="the agent session to play (JSONL); default: the demo's call"
    )
    add_trace(parser, "write the trace (JSONL)")
    add_policy(parser)
    add_processor_client(parser, agents=False)
    parser.add_argument(
        "--login",
        action="append",
        default=[],
        metavar="AGENT",
        help="an agent to log in once the client has started (repeatable; default agent-1)",
    )
    parser.add_argument(
        "--per-call",
        action="append",
        default=[],
        metavar="FILE",
        help="instead of --steps: the steps (JSONL) to play for every call that arrives, each call on its "
        "own and at the same time; repeated, the files are used in turn (a load run)",
    )
    parser.add_argument(
        "--calls", type=int, metavar="N", help="with --per-call: the run is over once N calls were played"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    add_wire_arguments(parser, server=True)


def run_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    host, _, port_text = args.listen.rpartition(":")
    if not host or not port_text.isdigit():
        parser.error(f"--listen takes HOST:PORT, got {args.listen!r}")
    policy = policy_of(args, parser)
    steps = DEMO_CALL
    try:
        if args.steps:
            steps = load_steps(Path(args.steps))
        per_call = tuple(load_steps(Path(path)) for path in args.per_call)
    except BadSession as exc:
        parser.error(str(exc))
    if per_call and args.steps:
        parser.error("--per-call plays every call: not with --steps")
    if bool(per_call) != (args.calls is not None) or (args.calls is not None and args.calls < 1):
        parser.error("--per-call and --calls N (N >= 1) go together")
    wire = wire_options(args, parser, server=True)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    def listening(port: int) -> None:
        print(f"listening on {host}:{port}", flush=True)

    with contextlib.ExitStack() as stack:
        trace = open_trace(stack, args, parser)
        return asyncio.run(
            run_bridge(
                host,
                int(port_text),
                steps,
                policy=policy,
                targets=targets_of(args),
                logins=tuple(args.login) or ("agent-1",),
                trace=trace,
                timeout=args.timeout,
                on_listening=listening,
                per_call=per_call,
                calls=args.calls or 0,
                **wire,
            )
        )

"""``telephony-fsm serve``: the engine and a switch driver, talking to a bridge
over the framed TCP transport (spec/harness.md, protocol.md "Transport").

Every input goes through :class:`adapters.runner.Runner` as a line of the
``run`` protocol, so the adapter behaves exactly as ``run`` does and writes
the same trace:

- each CTI message received becomes ``{"from": "bridge", "message": ...}``;
  every ``{"to": "bridge"}`` output is sent as a frame, in order; switch
  commands run on the driver, and the events they cause are fed back;
- switch events from outside (the customer and far parties; the ``result``
  events of a scripted switch) come from ``--switch-events FILE`` (``-``:
  stdin), one harness line ``{"from": "switch", "event": ...}`` per line,
  taken from the first connection to the bridge on (so a trace starts with
  ``{"connection": 1}``); a SIP softphone is polled from start-up;
- the engine clock follows the event loop's monotonic clock: before each
  input, and every ``tick`` seconds while a request waits on the switch, the
  elapsed time is fed as ``{"from": "clock", "advance": ...}`` (D-ASYNC).

When a connection is lost (reset, a truncated frame, a broken stream:
D-WIRE) the adapter reconnects with bounded exponential backoff and keeps
its engine: the bridge re-initializes (D-LIFE-5), and a re-sent requestId
gets D-DUP. When the bridge closes the connection cleanly (at a frame
boundary) the adapter reconnects too, unless ``--exit-on-close`` is given:
then it exits 0. A connection that ends before the bridge sent anything is
followed by a backoff pause, so a bridge that accepts and closes at once is
not hammered. While disconnected, messages for the bridge are dropped (the
re-init snapshot supersedes them, D-LIFE-3), except ``interaction.created``
(D-NEW), which is held (bounded) and sent after reconnecting. Each
connection's start is written to the trace as ``{"connection": N}`` (N from
1). It exits 0 on SIGTERM/SIGINT (closing the connection), 1 when it cannot
(re)connect within ``--max-reconnects``, 2 on a usage error (an unusable
``--state`` file too).

Durable state (``--state FILE``, :mod:`adapters.state`): every input is
committed (engine, switch driver, counters, and the messages it produced,
appended to an outbox) in one SQLite transaction before any of its messages
leaves; each message is deleted from the outbox once handed to the
connection. A process killed at any point restarts from the file: live
interactions keep their state, pending requests are still answered (or time
out: the time the process was down counts), a requestId answered before
the kill is refused as a duplicate (D-DUP) instead of executed again, and
the unsent messages are sent first on the next connection, in order (at
least once). With ``--state``, nothing for the bridge is dropped while
disconnected: it waits in the outbox (bounded by the policy's
``max_queued_events``, D-BOUND). The switch events of ``--switch-events``
that the file counts as consumed are skipped on a restart, so the same file
(or stdin replaying the same events) goes on where the killed process
stopped. ``--crash-after-input N`` is a testing aid only: right after
committing input N the process kills itself with SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Final

from adapters.runner import Runner
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.state import StateError, StateStore, resume
from adapters.switch import PolledSwitch, Switch
from adapters.transport import (
    End,
    FramedConnection,
    TransportError,
    Unsendable,
    add_wire_arguments,
    backoff_delays,
    connect_with_backoff,
    wire_options,
)
from fsm.engine import Engine, Targets
from fsm.errors import LocalProtocolError
from fsm.messages import dumps
from fsm.policy import Policy
from fsm.switch_events import event_to_wire

logger = logging.getLogger("telephony_fsm.serve")

_CONNECT_ERRORS: Final = (OSError, TimeoutError)


class Adapter:
    """The engine's runner, fed from the connection, the switch and the clock."""

    def __init__(
        self,
        runner: Runner,
        *,
        max_held: int = 10_000,
        store: StateStore | None = None,
        inputs: int = 0,
        switch_events: int = 0,
        offline: float = 0.0,
        crash_after_input: int | None = None,
    ) -> None:
        self.runner = runner
        self.conn: FramedConnection | None = None
        #: connections to the bridge so far (this process's), and messages received on them
        self.connections = 0
        self.received = 0
        #: set at the first connection: events from outside are taken from then on
        self.first_connection = asyncio.Event()
        #: inputs processed (over the state file's life with ``store``)
        self.inputs = inputs
        #: switch events fed from outside (``--switch-events``)
        self.switch_events_fed = switch_events
        self.held: deque[dict[str, Any]] = deque(maxlen=max_held)
        self.max_held = max_held
        self.store = store
        self.crash_after_input = crash_after_input
        self._lock = asyncio.Lock()
        # time spent down (a restart from a state file) counts for deadlines
        self._synced = asyncio.get_running_loop().time() - offline

    async def feed(self, item: dict[str, Any], *, external: bool = False) -> None:
        """Feed one ``run`` input; deliver everything it caused, in order.
        ``external``: a switch event from outside, counted in the state file."""
        async with self._lock:
            for entry in self._catch_up() + self._feed(item, external=external):
                await self._deliver(entry)
            await self._flush()

    async def tick(self) -> None:
        async with self._lock:
            for entry in self._catch_up():
                await self._deliver(entry)
            await self._flush()

    def _feed(self, item: dict[str, Any], *, external: bool = False) -> list[dict[str, Any]]:
        self.inputs += 1
        if external:
            self.switch_events_fed += 1
        out = self.runner.feed_item(item, self.inputs)
        if self.runner.trace is not None:
            self.runner.trace.flush()
        if self.store is not None:
            self._commit(out)
        return out

    def _commit(self, out: list[dict[str, Any]]) -> None:
        """One transaction for the input just processed; its messages for the
        bridge go to the outbox, to leave only after this commit."""
        assert self.store is not None
        dropped = self.store.save(
            self.runner.engine,
            self.runner.switch,
            inputs=self.inputs,
            switch_events=self.switch_events_fed,
            outputs=[entry["message"] for entry in out if entry.get("to") == "bridge"],
            max_unsent=self.max_held,
        )
        if dropped:
            logger.warning("outbox full (max_queued_events): dropped the %d oldest unsent messages", dropped)
        if self.inputs == self.crash_after_input:
            logger.warning("--crash-after-input %d: killing this process (a testing aid)", self.inputs)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

    async def _flush(self) -> None:
        """Send the outbox, oldest first; an entry leaves it once handed to the
        connection. Not connected: it waits for the next connection."""
        conn = self.conn
        if self.store is None or conn is None or conn.closed:
            return
        for entry, message in self.store.unsent():
            try:
                await conn.send(message)
            except Unsendable as error:  # it never will be: drop it rather than block the outbox
                logger.warning("dropped a message that cannot be sent: %s", error)
            except TransportError as error:
                logger.warning("sending to the bridge failed: %s", error)
                return
            self.store.mark_sent(entry)

    def _catch_up(self) -> list[dict[str, Any]]:
        """Advance the engine clock by the time elapsed while a request waited
        on the switch (engine time matters only to those deadlines)."""
        now = asyncio.get_running_loop().time()
        elapsed, self._synced = now - self._synced, now
        if not self.runner.engine.awaited or elapsed <= 0:
            return []
        return self._feed({"from": "clock", "advance": elapsed})

    async def _deliver(self, entry: dict[str, Any]) -> None:
        if entry.get("to") == "bridge" and self.store is not None:
            return  # in the outbox: sent by _flush
        if entry.get("to") == "bridge":
            message = entry["message"]
            conn = self.conn
            if conn is None or conn.closed:
                if message["header"]["name"] == "interaction.created":
                    self.held.append(message)  # D-NEW: sent after reconnecting
                else:
                    logger.info("not connected: dropped %s", message["header"]["name"])
                return
            try:
                await conn.send(message)
            except TransportError as error:
                logger.warning("sending to the bridge failed: %s", error)
        elif "protocol_error" in entry or "error" in entry:
            logger.warning("%s", dumps(entry))

    async def switch_events(self, source: AsyncIterable[object], *, skip: int = 0) -> None:
        """Feed switch events from outside: event objects or harness lines,
        from the first connection on. The first ``skip`` were consumed before a
        restart (the state file counts them) and are skipped."""
        await self.first_connection.wait()
        async for item in source:
            if skip > 0:
                skip -= 1
                continue
            if not (isinstance(item, dict) and item.get("from") == "switch"):
                item = {"from": "switch", "event": item}
            await self.feed(item, external=True)

    async def polling(self, driver: PolledSwitch, every: float = 0.01) -> None:
        """Feed the events of a driver that reports on its own (SIP), in order,
        from start-up on: the stack is never left unpolled (D-NEW: calls are
        followed from start-up; an announcement waits for the connection)."""
        while True:
            for event in driver.poll(0):
                await self.feed({"from": "switch", "event": event_to_wire(event)})
            await asyncio.sleep(every)

    async def ticking(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.tick()

    async def session(self, conn: FramedConnection, stop: asyncio.Event) -> str:
        """Serve one connection: ``"closed"`` (the bridge closed it at a frame
        boundary), ``"lost"`` (reset, truncated frame, broken stream: D-WIRE) or
        ``"stopped"`` (``stop`` was set; this side closed it)."""
        async with self._lock:
            self.conn = conn
            self.connections += 1
            self.runner.connected(self.connections)
            if self.runner.trace is not None:
                self.runner.trace.flush()
            self.first_connection.set()
            await self._flush()  # with a state file: what waited, a crash's leftovers first
            while self.held and not conn.closed:
                try:
                    await conn.send(self.held.popleft())
                except TransportError as error:
                    logger.warning("sending to the bridge failed: %s", error)
        reading = asyncio.create_task(self._read(conn))
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        stopped = reading not in done
        if stopped:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        async with self._lock:
            self.conn = None
            await conn.close()
        return "stopped" if stopped else reading.result()

    async def _read(self, conn: FramedConnection) -> str:
        while True:
            try:
                message = await conn.recv()
            except TransportError:  # the transport logged why and closed the connection
                return "lost"
            if message is None:
                return "closed" if conn.end is End.CLEAN else "lost"
            self.received += 1
            await self.feed({"from": "bridge", "message": message})


def make_switch(kind: str) -> Switch:
    if kind == "simulated":
        return SimulatedSwitch()
    if kind == "scripted":
        return ScriptedSwitch()
    raise LocalProtocolError(f"unknown switch {kind!r}: expected simulated or scripted", "D-BAD")


async def run_serve(
    host: str,
    port: int,
    *,
    switch: str | Switch = "simulated",
    channel_target: str = "session-1.channel-1",
    policy: Policy | None = None,
    trace: IO[str] | None = None,
    switch_events: AsyncIterable[object] | None = None,
    stop: asyncio.Event | None = None,
    max_reconnects: int | None = None,
    backoff: tuple[float, float, float] = (0.5, 2.0, 30.0),
    tick: float = 1.0,
    state: str | Path | StateStore | None = None,
    crash_after_input: int | None = None,
    exit_on_close: bool = False,
    **connect_options: Any,
) -> int:
    """Run the adapter until ``stop`` is set, or, with ``exit_on_close``, until
    the bridge closes a connection cleanly at a frame boundary (0); or until
    it cannot (re)connect (1). A lost connection (reset, truncated frame,
    broken stream) is always followed by a reconnect, and so is a clean close
    without ``exit_on_close``. ``max_reconnects`` bounds the connection attempts
    after the first one, over the whole run (None: forever); ``backoff`` is
    (base, factor, cap) in seconds; ``connect_options`` go to
    :func:`adapters.transport.connect` (``ssl``, ``server_hostname``,
    ``byte_order``, ``tcp_keepalive``, ...). ``state``: a state file (a path,
    or a :class:`StateStore` the caller opened and closes) to commit every
    input to and to resume from (:mod:`adapters.state`; an unusable file
    raises :class:`adapters.state.StateError`). ``crash_after_input``
    (testing aid, needs ``state``): SIGKILL this process right after
    committing that input."""
    if crash_after_input is not None and state is None:
        raise LocalProtocolError("crash_after_input needs a state file", "D-BAD")
    with ExitStack() as stack:
        store = state if state is None or isinstance(state, StateStore) else StateStore(state)
        if store is not None and store is not state:
            stack.callback(store.close)
        return await _run_serve(
            host,
            port,
            switch=switch,
            channel_target=channel_target,
            policy=policy,
            trace=trace,
            switch_events=switch_events,
            stop=stop,
            max_reconnects=max_reconnects,
            backoff=backoff,
            tick=tick,
            store=store,
            crash_after_input=crash_after_input,
            exit_on_close=exit_on_close,
            **connect_options,
        )


async def _run_serve(
    host: str,
    port: int,
    *,
    switch: str | Switch,
    channel_target: str,
    policy: Policy | None,
    trace: IO[str] | None,
    switch_events: AsyncIterable[object] | None,
    stop: asyncio.Event | None,
    max_reconnects: int | None,
    backoff: tuple[float, float, float],
    tick: float,
    store: StateStore | None,
    crash_after_input: int | None,
    exit_on_close: bool,
    **connect_options: Any,
) -> int:
    policy = policy or Policy()
    driver = make_switch(switch) if isinstance(switch, str) else switch
    saved = store.load() if store is not None else None
    if saved is None:
        engine = Engine(policy, Targets(channel_target), switch_acknowledges=driver.acknowledges)
        adapter = Adapter(
            Runner(engine, driver, trace),
            max_held=policy.max_queued_events,
            store=store,
            crash_after_input=crash_after_input,
        )
    else:
        engine, driver = resume(saved, driver, channel_target)
        if engine.policy != policy:
            logger.warning("the state file's policy is kept; the policy given now differs and is ignored")
        logger.info("resumed from %s after input %d", store.path if store else "", saved.inputs)
        adapter = Adapter(
            Runner(engine, driver, trace),
            max_held=engine.policy.max_queued_events,
            store=store,
            inputs=saved.inputs,
            switch_events=saved.switch_events,
            offline=max(0.0, time.time() - saved.saved_at),
            crash_after_input=crash_after_input,
        )
    stop = stop or asyncio.Event()
    failed: list[str] = []

    def watch(task: asyncio.Task[None]) -> None:
        """No background task dies silently: a failure is logged with its
        traceback and stops serve, which then exits 1 (a SIP stack that
        stopped being polled would leave the client connected and deaf)."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("the %s task failed; stopping", task.get_name(), exc_info=task.exception())
        failed.append(task.get_name())
        stop.set()

    def stopped() -> int:
        return 1 if failed else 0

    background = [asyncio.create_task(adapter.ticking(tick), name="clock")]
    if isinstance(driver, PolledSwitch):
        background.append(asyncio.create_task(adapter.polling(driver), name="switch polling"))
    if switch_events is not None:
        skip = saved.switch_events if saved is not None else 0
        background.append(
            asyncio.create_task(adapter.switch_events(switch_events, skip=skip), name="switch events")
        )
    for task in background:
        task.add_done_callback(watch)
    base, factor, cap = backoff
    remaining = None if max_reconnects is None else max_reconnects + 1
    pauses = backoff_delays(base, factor, cap)
    pause = 0.0
    try:
        while True:
            if pause and await _stopped_within(stop, pause):
                return stopped()
            attempts = 1

            def count(*_: object) -> None:
                nonlocal attempts
                attempts += 1

            connecting = asyncio.create_task(
                connect_with_backoff(
                    host,
                    port,
                    base=base,
                    factor=factor,
                    cap=cap,
                    max_attempts=remaining,
                    on_retry=count,
                    max_frame_size=policy.max_frame_size,
                    **connect_options,
                )
            )
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not connecting.done():
                connecting.cancel()
                await asyncio.gather(connecting, return_exceptions=True)
                return stopped()
            try:
                conn = connecting.result()
            except _CONNECT_ERRORS as error:
                logger.error("cannot connect to the bridge at %s:%s: %s", host, port, error)
                return 1
            if remaining is not None:
                remaining -= attempts
            logger.info("connected to the bridge at %s:%s", host, port)
            received = adapter.received
            outcome = await adapter.session(conn, stop)
            if outcome == "stopped":
                logger.info("done: stopped" if not failed else "done: stopped after the failure")
                return stopped()
            ended = "lost" if outcome == "lost" else "closed by the bridge"
            if outcome == "closed" and exit_on_close:
                logger.info("done: the connection was %s (--exit-on-close)", ended)
                return stopped()
            if remaining == 0:
                logger.error("connection to the bridge %s; no reconnection left (--max-reconnects)", ended)
                return 1
            if adapter.received > received:  # the bridge was working: reconnect at once
                pauses, pause = backoff_delays(base, factor, cap), 0.0
            else:  # nothing came on that connection: pause before the next, growing
                pause = next(pauses)
            logger.warning("connection to the bridge %s; reconnecting", ended)
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless ``stop`` is set first; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def read_switch_events(path: str) -> AsyncIterator[object]:
    """The JSON objects of a JSONL file (``-``: stdin), as they arrive."""
    if path == "-":
        reader = asyncio.StreamReader(limit=1 << 20)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        except ValueError:  # a regular file: read it at once
            lines: list[str] = sys.stdin.readlines()
        else:
            while raw := await reader.readline():
                if raw.strip():
                    yield _parse_line(raw.decode("utf-8", "replace"))
            return
    else:
        with open(path, encoding="utf-8") as file:
            lines = file.readlines()
    for text in lines:
        if text.strip():
            yield _parse_line(text)


def _parse_line(text: str) -> object:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text  # the runner reports it as an error output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``telephony-fsm serve``."""
    parser.add_argument("--connect", required=True, metavar="HOST:PORT", help="the bridge to connect to")
    parser.add_argument(
        "--switch",
        choices=("simulated", "scripted", "sip"),
        default="simulated",
        help="as for run; sip: the agent's SIP softphone (extra 'sip'), see --sip-*",
    )
    parser.add_argument(
        "--sip-listen", default="127.0.0.1:5060", metavar="HOST:PORT", help="sip: the softphone's UDP address"
    )
    parser.add_argument("--sip-user", default="agent", metavar="USER", help="sip: its SIP URI's user part")
    parser.add_argument(
        "--sip-domain",
        default="127.0.0.1:5070",
        metavar="HOST:PORT",
        help="sip: where a destination that is not a SIP URI is dialled (the far ends)",
    )
    parser.add_argument("--channel-target", default="session-1.channel-1", metavar="T", help="D-NEW")
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=VALUE", help="repeatable")
    parser.add_argument("--trace", metavar="FILE", help="also write the merged trace (JSONL)")
    parser.add_argument("--switch-events", metavar="FILE", help="switch events, JSONL ('-': stdin)")
    parser.add_argument("--max-reconnects", type=int, metavar="N", help="default: forever")
    parser.add_argument(
        "--exit-on-close",
        action="store_true",
        help="exit 0 when the bridge closes the connection cleanly (default: reconnect); "
        "a lost connection is always reconnected",
    )
    add_wire_arguments(parser, server=False)
    parser.add_argument("--tls", action="store_true", help="TLS, verifying the bridge by the system CAs")
    parser.add_argument("--tls-server-name", metavar="NAME", help="name to check the bridge's cert against")
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="durable state (SQLite, WAL): commit every input, resume from it after a restart",
    )
    parser.add_argument(
        "--crash-after-input",
        type=int,
        metavar="N",
        help="testing aid (needs --state): SIGKILL this process right after committing input N",
    )


def run_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``serve`` from parsed arguments; usage errors exit 2 via ``parser``."""
    host, _, port_text = args.connect.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        parser.error(f"--connect takes HOST:PORT, got {args.connect!r}")
    try:
        policy = Policy().with_settings(args.policy)
    except LocalProtocolError as exc:
        parser.error(exc.message)
    if args.max_reconnects is not None and args.max_reconnects < 0:
        parser.error("--max-reconnects must not be negative")
    if args.crash_after_input is not None and (args.state is None or args.crash_after_input < 1):
        parser.error("--crash-after-input takes N >= 1 and needs --state")
    if args.switch == "sip" and args.state:
        parser.error("--state cannot be used with --switch sip: live SIP calls cannot be saved and resumed")
    wire = wire_options(args, parser, server=False, tls=args.tls)
    with ExitStack() as stack:
        store: StateStore | None = None
        if args.state:
            try:
                store = stack.enter_context(StateStore(args.state))
            except StateError as exc:
                parser.error(f"--state: {exc}")
        trace: IO[str] | None = None
        if args.trace:
            try:
                trace = stack.enter_context(open(args.trace, "w", encoding="utf-8"))
            except OSError as exc:
                parser.error(f"cannot write trace {args.trace}: {exc.strerror}")

        async def main_async() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            events = read_switch_events(args.switch_events) if args.switch_events else None
            switch: str | Switch = args.switch
            if args.switch == "sip":
                switch = stack.enter_context(_softphone(args, parser))
            return await run_serve(
                host,
                int(port_text),
                switch=switch,
                channel_target=args.channel_target,
                policy=policy,
                trace=trace,
                switch_events=events,
                stop=stop,
                max_reconnects=args.max_reconnects,
                server_hostname=args.tls_server_name,
                state=store,
                crash_after_input=args.crash_after_input,
                exit_on_close=args.exit_on_close,
                **wire,
            )

        try:
            return asyncio.run(main_async())
        except StateError as exc:  # written for another switch or channel
            parser.error(f"--state: {exc}")


@contextlib.contextmanager
def _softphone(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Iterator[Switch]:
    """The SIP softphone of ``--switch sip``, closed at the end."""
    from adapters.sip import ua

    if ua.MISSING:
        parser.error(f"--switch sip: {ua.MISSING}")
    from adapters.sip.softphone import SipConfig, SipSoftphone

    host, _, port = args.sip_listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        parser.error(f"--sip-listen takes HOST:PORT, got {args.sip_listen!r}")
    phone = SipSoftphone(SipConfig(host=host, port=int(port), user=args.sip_user, domain=args.sip_domain))
    logger.info("SIP softphone %s; destinations dialled at %s", phone.uri, args.sip_domain)
    try:
        yield phone
    finally:
        phone.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="telephony-fsm serve",
        description="The engine and a switch driver, connected to a bridge over the framed TCP transport.",
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every state change at INFO
    return run_args(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())

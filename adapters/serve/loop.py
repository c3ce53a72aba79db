"""The connection loop of ``telephony-fsm serve``: connect, hand the
connection to the adapter, watch the background tasks (clock, switch
polling, ``--switch-events``), reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Final

from adapters.runner import Runner
from adapters.serve.adapter import Adapter
from adapters.serve.metrics import Metrics
from adapters.simulated import ScriptedSwitch, SimulatedSwitch
from adapters.state import Store, open_store, resume
from adapters.switch import PolledSwitch, Switch
from adapters.transport import (
    backoff_delays,
    connect_with_backoff,
)
from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory
from fsm.engine import Engine, Targets
from fsm.errors import LocalProtocolError
from fsm.policy import Policy

logger = logging.getLogger("telephony_fsm.serve")

_CONNECT_ERRORS: Final = (OSError, TimeoutError)


def make_switch(kind: str) -> Switch:
    if kind == "simulated":
        return SimulatedSwitch()
    if kind == "scripted":
        return ScriptedSwitch()
    raise LocalProtocolError(f"unknown switch {kind!r}: expected simulated or scripted")


async def run_serve(
    host: str,
    port: int,
    *,
    switch: str | Switch = "simulated",
    targets: Targets | None = None,
    directory: AgentDirectory = DEFAULT_DIRECTORY,
    policy: Policy | None = None,
    trace: IO[str] | None = None,
    switch_events: AsyncIterable[object] | None = None,
    stop: asyncio.Event | None = None,
    max_reconnects: int | None = None,
    backoff: tuple[float, float, float] = (0.5, 2.0, 30.0),
    tick: float = 1.0,
    state: str | Path | Store | None = None,
    exit_on_close: bool = False,
    metrics: tuple[str, int] | None = None,
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
    ``byte_order``, ``tcp_keepalive``, ...). ``state``: a store (an SQLite
    path or a ``postgresql://`` connection string, or a
    :class:`adapters.state.Store` the caller opened and closes) to commit
    every input to and to resume from (:mod:`adapters.state`; an unusable
    one raises :class:`adapters.state.StateError`). ``metrics``: (host, port) to
    answer Prometheus scrapes and health checks on (:mod:`adapters.serve.metrics`)."""
    with ExitStack() as stack:
        processor = (targets or Targets()).processor
        store = state if state is None or not isinstance(state, str | Path) else open_store(state, processor)
        if store is not None and store is not state:
            stack.callback(store.close)
        return await _run_serve(
            host,
            port,
            switch=switch,
            targets=targets or Targets(),
            directory=directory,
            policy=policy,
            trace=trace,
            switch_events=switch_events,
            stop=stop,
            max_reconnects=max_reconnects,
            backoff=backoff,
            tick=tick,
            store=store,
            exit_on_close=exit_on_close,
            metrics=metrics,
            **connect_options,
        )


async def _run_serve(
    host: str,
    port: int,
    *,
    switch: str | Switch,
    targets: Targets,
    directory: AgentDirectory,
    policy: Policy | None,
    trace: IO[str] | None,
    switch_events: AsyncIterable[object] | None,
    stop: asyncio.Event | None,
    max_reconnects: int | None,
    backoff: tuple[float, float, float],
    tick: float,
    store: Store | None,
    exit_on_close: bool,
    metrics: tuple[str, int] | None,
    **connect_options: Any,
) -> int:
    policy = policy or Policy()
    driver = make_switch(switch) if isinstance(switch, str) else switch
    saved = store.load() if store is not None else None
    if saved is None:
        engine = Engine(
            policy,
            targets,
            directory=directory,
            switch_acknowledges=driver.acknowledges,
            link_up=getattr(driver, "link_up_at_start", True),
        )
        adapter = Adapter(
            Runner(engine, driver, trace),
            max_held=policy.max_queued_events,
            store=store,
        )
    else:
        engine, driver = resume(saved, driver, targets)
        if engine.policy != policy:
            logger.warning("the state file's policy is kept; the policy given now differs and is ignored")
        logger.info("resumed from %s after input %d", store.where if store else "", saved.inputs)
        adapter = Adapter(
            Runner(engine, driver, trace),
            max_held=engine.policy.max_queued_events,
            store=store,
            inputs=saved.inputs,
            switch_events=saved.switch_events,
            offline=max(0.0, time.time() - saved.saved_at),
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
    if metrics is not None:

        def health() -> str:
            if failed:
                return f"the {failed[0]} task failed"
            if adapter.conn is None or adapter.conn.closed:
                return "not connected to the bridge"
            return ""

        adapter.metrics = Metrics(adapter.runner.engine, health)
        background.append(asyncio.create_task(adapter.metrics.serve(*metrics), name="metrics"))
    if isinstance(driver, PolledSwitch):
        background.append(asyncio.create_task(adapter.polling(driver), name="switch polling"))
    link = getattr(driver, "run", None)
    if callable(link):  # a driver with a link of its own to keep (the PBX process's)
        background.append(asyncio.create_task(link(), name="switch link"))
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

"""The adapter: one engine, its switch driver and its outbox to the bridge
(``telephony-fsm serve``); every input goes through the ``run`` line
protocol's :class:`adapters.runner.Runner`, committed first when the state
is durable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable
from typing import Any

from adapters.runner import Runner
from adapters.serve.metrics import Metrics
from adapters.state import Store
from adapters.switch import PolledSwitch
from adapters.transport import (
    End,
    FramedConnection,
    TransportError,
    Unsendable,
)
from fsm.codec import dumps
from fsm.switch_events import event_to_wire

logger = logging.getLogger("telephony_fsm.serve")


class Adapter:
    """The engine's runner, fed from the connection, the switch and the clock."""

    def __init__(
        self,
        runner: Runner,
        *,
        max_held: int = 10_000,
        store: Store | None = None,
        inputs: int = 0,
        switch_events: int = 0,
        offline: float = 0.0,
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
        #: what ``--metrics`` counts (None without it)
        self.metrics: Metrics | None = None
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
        if self.metrics is not None:
            self.metrics.count(item, out)
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
            if stopped:  # F-CTRL-3: the bridge hears the client stop before the close
                for entry in self.runner.stop():
                    if entry.get("to") == "bridge" and not conn.closed:
                        with contextlib.suppress(TransportError):
                            await conn.send(entry["message"])
                if self.runner.trace is not None:
                    self.runner.trace.flush()
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

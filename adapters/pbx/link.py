"""``serve --switch pbx --pbx HOST:PORT``: the switch driver that reaches
the PBX process (:mod:`adapters.pbx.server`) over the CTI link.

Commands take effect at the PBX and their events come back over the link,
later (``acknowledges`` is False: the engine waits for those events, D-DONE,
within ``request_timeout``, D-ASYNC). :meth:`PbxLink.run` is serve's
background task: it connects (with backoff, again after every loss), sends
the hello claiming the agent directory's end-points, and reads the link;
the link's state reaches the engine as ``link`` switch events (F-CTRL-3,
D-CTRL-1): the engine starts ``starting`` and is ``started`` once the PBX
accepted the hello, ``cti-lost`` when the link is lost, ``started`` again
when it is back. A command while the link is down is logged and not sent
(the engine answers its request FAILURE at once on the link loss, D-CTRL-3,
or by its timeout). A refused hello ends the task with :class:`PbxRefused`,
so serve logs it and exits 1.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

from adapters.transport import (
    ConnectionLost,
    FramedConnection,
    TransportError,
    Unsendable,
    backoff_delays,
    connect_with_backoff,
)
from fsm.errors import RemoteProtocolError
from fsm.intake import parse_switch_event
from fsm.switch_events import Command, SwitchEvent, command_to_wire

logger = logging.getLogger("telephony_fsm.pbx.link")

#: events received and not yet polled, at most (D-BOUND)
MAX_QUEUED: Final = 100_000
#: how long the PBX may take to answer the hello, in seconds
HELLO_TIMEOUT: Final = 10.0


class PbxRefused(Exception):
    """The PBX refused this adapter's hello (a device is held elsewhere, ...)."""


class PbxLink:
    """A switch driver whose switch is the PBX process."""

    #: the engine starts ``starting``: the link is not up before the hello's answer
    link_up_at_start: Final = False
    #: how a state store names this driver (as ``--switch`` does); the PBX
    #: process keeps the calls, so the driver has no state of its own to save
    switch_kind: Final = "pbx"

    def __init__(
        self,
        host: str,
        port: int,
        devices: Sequence[str],
        *,
        backoff: tuple[float, float, float] = (0.2, 2.0, 5.0),
        hello_timeout: float = HELLO_TIMEOUT,
        **connect_options: Any,
    ) -> None:
        self.host, self.port = host, port
        self.devices = list(devices)
        self.backoff = backoff
        self.hello_timeout = hello_timeout
        self.connect_options = connect_options
        self.conn: FramedConnection | None = None
        self.up = False
        self._events: deque[SwitchEvent] = deque()
        #: a link-down event was queued since the link was last up: one per outage
        self._down_reported = False
        self._outgoing: asyncio.Queue[dict[str, Any]] | None = None

    @property
    def acknowledges(self) -> bool:
        return False

    # -- the Switch protocol: every command goes over the link

    def _send(self, command: Command) -> list[SwitchEvent]:
        if not self.up or self._outgoing is None:
            logger.warning("the link to the PBX is down: command %s %s not sent", command.id, command.op)
            return []
        self._outgoing.put_nowait({"command": command_to_wire(command)})
        return []

    answer = reject = release = hold = retrieve = consult = _send
    transfer = conference = alternate = _send
    blindtransfer = blindconference = senddtmf = _send
    login = logout = ready = notready = dial = _send

    def observe(self, event: SwitchEvent) -> None:
        """Events from elsewhere change nothing here: the PBX holds the calls."""

    # -- PolledSwitch

    def poll(self, wait_ms: int = 0) -> list[SwitchEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    def close(self) -> None:
        if self.conn is not None:
            self.conn.abort()

    def _queue(self, event: SwitchEvent) -> None:
        if len(self._events) >= MAX_QUEUED:
            logger.error("more than %d PBX events wait to be polled: dropped %s", MAX_QUEUED, event)
            return
        self._events.append(event)

    def _down(self, reason: str) -> None:
        """The link is down: reported once per outage (F-CTRL-3), with the first reason."""
        if not self._down_reported:
            self._down_reported = True
            self._queue(SwitchEvent(kind="link", up=False, reason=reason))

    # -- the link

    async def run(self) -> None:
        """Connect, claim, read; again after every loss. Ends only by
        cancellation or with :class:`PbxRefused`. A connection that never
        came up (the PBX closed it, or did not answer the hello within
        ``hello_timeout`` seconds) is followed by a growing pause, so that a PBX that
        refuses at once is not hammered; one that was up is retried at once."""
        base, factor, cap = self.backoff
        pauses = backoff_delays(base, factor, cap)
        first = True
        while True:
            try:
                conn = await connect_with_backoff(
                    self.host,
                    self.port,
                    base=base,
                    factor=factor,
                    cap=cap,
                    max_attempts=1 if first else None,
                    **self.connect_options,
                )
            except (OSError, TimeoutError) as exc:
                self._down(f"PBX unreachable: {exc}")
                logger.warning("cannot reach the PBX at %s:%s: %s; retrying", self.host, self.port, exc)
                first = False
                await asyncio.sleep(next(pauses))
                continue
            first = False
            was_up = False
            try:
                was_up = await self._serve(conn)
                reason = "the PBX closed the link"
            except TimeoutError:
                reason = f"the PBX did not answer the hello within {self.hello_timeout:g} s"
            except (ConnectionLost, TransportError) as exc:
                reason = f"the link to the PBX was lost: {exc.message}"
            finally:
                was_up = was_up or self.up
                self.up = False
                self.conn = None
                self._outgoing = None
                await conn.close()
            self._down(reason)
            if was_up:
                pauses = backoff_delays(base, factor, cap)
                logger.warning("%s; reconnecting", reason)
            else:
                pause = next(pauses)
                logger.warning("%s; reconnecting in %g s", reason, pause)
                await asyncio.sleep(pause)

    async def _serve(self, conn: FramedConnection) -> bool:
        """One connection: the hello, then the events until it ends; whether
        the link came up. Raises PbxRefused when the PBX refuses the hello."""
        self.conn = conn
        await conn.send({"hello": {"devices": self.devices}})
        answer = await asyncio.wait_for(conn.recv(), self.hello_timeout)
        if answer is None:
            return False
        if set(answer) != {"hello"}:
            raise PbxRefused(
                f"the PBX at {self.host}:{self.port} refused this adapter: {answer.get('error', answer)}"
            )
        logger.info(
            "linked to the PBX at %s:%s for device(s) %s", self.host, self.port, ", ".join(self.devices)
        )
        outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outgoing = outgoing
        self.up = True
        self._down_reported = False
        self._queue(SwitchEvent(kind="link", up=True, reason=""))
        sender = asyncio.create_task(self._sending(conn, outgoing))
        try:
            while (frame := await conn.recv()) is not None:
                self._frame(frame)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return True

    async def _sending(self, conn: FramedConnection, outgoing: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            frame = await outgoing.get()
            try:
                await conn.send(frame)
            except Unsendable as exc:  # this frame only: the link goes on
                logger.error("a command that cannot be sent to the PBX: %s (%s)", exc.message, frame)
            except TransportError as exc:  # lost: end the connection, the reader sees it
                logger.warning("cannot send to the PBX: %s", exc.message)
                conn.abort()
                return

    def _frame(self, frame: dict[str, Any]) -> None:
        if set(frame) == {"event"}:
            try:
                self._queue(parse_switch_event(frame["event"]))
            except RemoteProtocolError as exc:
                logger.error(
                    "an event from the PBX that cannot be used: %s (%s)", exc.message, frame["event"]
                )
        elif set(frame) == {"error"}:
            logger.error("the PBX says: %s", frame["error"])
        else:
            logger.error("a frame from the PBX that is not an event or an error: %s", frame)

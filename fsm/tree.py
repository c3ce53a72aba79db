"""The processor's destinations above the interactions: plain model objects.

One connection carries the whole processor (spec: "Context"): the control
destination, a session per logged-in agent, its channel group and its
channels; the interactions and conversations of :mod:`fsm.model` hang
below a telephony channel. What moves is driven by the shared machines of
``fsm.machines``: the control's ``state`` by CONTROL, a device's ``state`` by
CHANNEL, and every destination's ``lifecycle`` by LIFECYCLE.

A :class:`Device` is an agent's end-point at the switch: its login and
ready state, the request executing on it and those waiting (D-SERIAL), and
its live interactions. It is one per end-point whatever the number of
channel destinations showing it (D-SESS-1). Models compare by identity
and are slotted, like those of :mod:`fsm.model`.
"""

from __future__ import annotations

import attrs

from fsm.catalog.names import TELEPHONY
from fsm.machines import C_STARTED, INACTIVE, INITIALIZED, SETUP
from fsm.model import NO_REQUESTS, Pending, Request


@attrs.define(eq=False, slots=True, kw_only=True)
class Control:
    """The processor control destination (F-CTRL-1)."""

    target: str
    #: the server status (the control machine, D-CTRL-1)
    state: str = C_STARTED
    #: why the status is what it is (the status event's ``reason``)
    reason: str = ""
    #: a status response was sent: status changes are now reported (D-CTRL-1)
    reporting: bool = False
    #: it needs no init: it exists from the start (F-CTRL-2)
    lifecycle: str = INITIALIZED
    request_ids: dict[str, None] = attrs.field(factory=dict)


@attrs.define(eq=False, slots=True, kw_only=True)
class Session:
    """One agent's session (F-SESS-1), created by its init query."""

    target: str
    agent: str
    chat: bool = False
    email: bool = False
    callback: bool = False
    lifecycle: str = SETUP
    request_ids: dict[str, None] = attrs.field(factory=dict)
    #: its one channel group (F-SESS-2)
    group: str = ""


@attrs.define(eq=False, slots=True, kw_only=True)
class ChannelGroup:
    """A session's channel group (F-CG-1)."""

    target: str
    session: str
    lifecycle: str = SETUP
    request_ids: dict[str, None] = attrs.field(factory=dict)
    #: its channels' targets, in the order its init lists them
    channels: list[str] = attrs.field(factory=list)


@attrs.define(eq=False, slots=True, kw_only=True)
class Channel:
    """A channel destination of one session (F-CH-1). A telephony channel
    shows its device's state and interactions; a chat or email channel is
    an unsupported channel (F-UCH-1, D-UCH)."""

    target: str
    session: str
    end_point: str
    type: str = TELEPHONY
    lifecycle: str = SETUP
    request_ids: dict[str, None] = attrs.field(factory=dict)
    #: interactions it showed (announced or listed), by id (D-CH-1)
    shown: dict[str, None] = attrs.field(factory=dict)

    @property
    def supported(self) -> bool:
        return self.type == TELEPHONY


@attrs.define(eq=False, slots=True, kw_only=True)
class Device:
    """An agent's end-point at the switch (the channel machine, D-CH-1)."""

    end_point: str
    state: str = INACTIVE
    #: the reason of the last not-ready state (the channel.notready event)
    reason: str = ""
    #: the device request executing, and those waiting their turn (D-SERIAL)
    executing: Pending | None = None
    waiting: list[Request] = NO_REQUESTS
    #: its live interactions, by id, oldest first
    interactions: dict[str, None] = attrs.field(factory=dict)
    #: the targets of the telephony channel destinations that show it
    channels: list[str] = attrs.field(factory=list)

    def enqueue(self, request: Request) -> None:
        """``request`` waits its turn (D-SERIAL); copy-on-write as in fsm.model."""
        self.waiting = [*self.waiting, request]

    def next_request(self) -> Request:
        request, *rest = self.waiting
        self.waiting = rest or NO_REQUESTS
        return request

    def keep_waiting(self, kept: list[Request]) -> None:
        self.waiting = kept or NO_REQUESTS

"""The agent's SIP softphone as a :class:`~adapters.switch.Switch`.

Each engine command becomes SIP (PJSIP through pjsua2); each SIP state
change becomes the switch event the engine expects. Commands return no
events: what they cause arrives later, and :meth:`SipSoftphone.poll` (called
from the adapter's own loop) hands it over, in order. The softphone
acknowledges every command with a ``result`` event once the SIP operation
has completed (ok) or failed (``reason``: the SIP status, e.g.
``486 Busy Here``), so it runs with ``switch_acknowledges=True``.

The package, each module one idea, calls going down:

- ``softphone`` (here): the Switch protocol, the configuration, the
  adapter's polling and the shutdown;
- ``scheduler``: the operations under way and their ``result`` events;
- ``operations``: what each command does in SIP (the table of commands);
- ``media``: the conference bridge's mix;
- ``calls``: the pjsua2 calls and account, the legs, and the events their
  SIP state changes become;
- ``config``: where the softphone listens and dials;
- ``ua``: the pjsua2 endpoint and the reading of SIP messages.
"""

from __future__ import annotations

import gc

import attrs

from adapters.sip import media, ua
from adapters.sip.calls import Line
from adapters.sip.config import SipConfig
from adapters.sip.operations import OPERATIONS
from adapters.sip.scheduler import Scheduler
from fsm.switch_events import Command, SwitchEvent


class SipSoftphone:
    """The agent's softphone: a Switch over real SIP."""

    def __init__(self, config: SipConfig | None = None) -> None:
        config = config or SipConfig()
        if not config.max_calls:
            config = attrs.evolve(config, max_calls=ua.default_max_calls())
        self.config = config
        self.endpoint, self.port = ua.start_endpoint(
            config.host,
            config.port,
            log_level=config.log_level,
            log_file=config.log_file,
            transport=config.transport,
            max_calls=config.max_calls,
            tls=(config.tls_cert, config.tls_key, config.tls_ca),
            codecs=config.codecs,
        )
        # its address of record: at the registrar's domain when it registers
        where = config.registrar or f"{config.host}:{self.port}"
        self.uri = f"sip:{config.user}@{where}{config.uri_params()}"
        self.line = Line(self.uri, self.config)
        self.scheduler = Scheduler(self.line, lambda: media.remix(self.endpoint, self.line))
        self.closed = False

    # -- the Switch protocol
    @property
    def acknowledges(self) -> bool:
        return True

    def observe(self, event: SwitchEvent) -> None:
        """Events come from SIP itself, never from outside."""
        return None

    def _start(self, command: Command) -> list[SwitchEvent]:
        operation = OPERATIONS[command.op](self.line, command)
        self.scheduler.start(command, operation)
        return []

    answer = reject = release = hold = retrieve = consult = _start
    transfer = conference = alternate = blindtransfer = blindconference = senddtmf = _start
    login = logout = ready = notready = dial = _start

    # -- the adapter's loop
    def poll(self, wait_ms: int = 0) -> list[SwitchEvent]:
        """Let SIP run for up to ``wait_ms``; return the events since the last call."""
        if not self.closed:
            self.endpoint.libHandleEvents(wait_ms)
            self.scheduler.settle()
        return self.line.take_events()

    @property
    def busy(self) -> bool:
        """True while a command is still being carried out."""
        return bool(self.scheduler.running)

    def mix(self) -> dict[str, list[str]]:
        """Who hears whom in the conference bridge (see :func:`adapters.sip.media.mix`)."""
        return media.mix(self.endpoint, self.line)

    def close(self) -> None:
        if self.closed:
            return
        self.endpoint.hangupAllCalls()
        for _ in range(30):
            self.endpoint.libHandleEvents(10)
        # every Call object must be gone before the library is
        self.scheduler.running.clear()
        self.line.close()
        gc.collect()
        self.closed = True
        self.endpoint.libDestroy()


__all__ = ["SipConfig", "SipSoftphone"]

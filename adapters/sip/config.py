"""Where the softphone listens and where it dials."""

from __future__ import annotations

import attrs


@attrs.define
class SipConfig:
    """Where the softphone listens and where it dials."""

    #: the address its UDP transport binds to (port 0: any free port)
    host: str = "127.0.0.1"
    port: int = 5060
    #: the user part of its own SIP URI
    user: str = "agent"
    #: the end-point its events name (``device``): the agent's end-point in
    #: the agent directory (D-CTRL-2)
    device: str = "1001"
    #: ``host:port`` that a destination without ``sip:`` is dialled at
    domain: str = "127.0.0.1:5070"
    #: seconds a transferred consult leg may take to be ended by its party
    transfer_grace: float = 2.0

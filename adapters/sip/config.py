"""Where the softphone listens, where it registers and dials, and how."""

from __future__ import annotations

from typing import Final

import attrs

#: the transports the softphone speaks SIP over
TRANSPORTS: Final = ("udp", "tcp", "tls")
#: the calls the SIP stack of the extra 'sip' (the pjsua2-python 2.15.1
#: wheel) is built for (PJSUA_MAX_CALLS 4; consult and conference legs
#: count). A stack built by ``.ci/pjsua2`` holds more and says how many
#: (``pjsua2.PJSUA_MAX_CALLS``); see :func:`adapters.sip.ua.capacity`.
WHEEL_CALLS: Final = 4


@attrs.define
class SipConfig:
    """Where the softphone listens, where it registers and dials, and how."""

    #: the address its SIP transport binds to (port 0: any free port)
    host: str = "127.0.0.1"
    port: int = 5060
    #: the user part of its own SIP URI (the agent's SIP account)
    user: str = "agent"
    #: the end-point its events name (``device``): the agent's end-point in
    #: the agent directory (D-CTRL-2)
    device: str = "1001"
    #: ``host:port`` that a destination without ``sip:`` is dialled at
    domain: str = "127.0.0.1:5070"
    #: seconds a transferred consult leg may take to be ended by its party
    transfer_grace: float = 2.0
    #: udp, tcp or tls
    transport: str = "udp"
    #: ``host[:port]`` of the registrar: when set, activate and deactivate of
    #: the agent's channel (the switch's login and logout) register and
    #: unregister the account there; when empty, the softphone keeps the
    #: agent's login state itself
    registrar: str = ""
    #: seconds a registration asks to last (re-registered before it expires)
    expires: int = 300
    #: ``host[:port]`` of an outbound proxy every request is routed through
    proxy: str = ""
    #: the user name of digest authentication (default: ``user``), and its password
    auth_user: str = ""
    password: str = attrs.field(default="", repr=False)
    #: the address the media (RTP) binds to (default: ``host``)
    media_host: str = ""
    #: codec ids in order of preference (e.g. ``PCMA/8000``); the others keep PJSIP's order
    codecs: tuple[str, ...] = ()
    #: the calls the softphone holds at once (consult and conference legs
    #: count); a call offered beyond it is refused with 486 and logged.
    #: 0: what the SIP stack holds (:func:`adapters.sip.ua.default_max_calls`)
    max_calls: int = 0
    #: PJSIP's log level (0: none .. 6: everything) and the file it writes to (default: stderr)
    log_level: int = 0
    log_file: str = ""
    #: TLS: this side's certificate and key, and the CA list that verifies the far end
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    def uri_params(self) -> str:
        """What a URI of the registrar, the proxy or a dialled number carries for the transport."""
        return "" if self.transport == "udp" else f";transport={self.transport}"

"""What the softphone and the scripted far ends share: one PJSIP endpoint.

PJSIP allows one ``Endpoint`` per process. It is created with no worker
threads and ``mainThreadOnly``, so every callback runs inside
:func:`poll` on the caller's thread and the engine stays single-threaded.
Audio uses the null device (no sound card); SIP runs over UDP, TCP or TLS.
"""

from __future__ import annotations

import ctypes
import logging
import re
import sys
from pathlib import Path
from typing import Any

from adapters.sip.config import WHEEL_CALLS
from fsm.codec import loads

try:
    import pjsua2 as _pjsua2
except ImportError as exc:  # the optional extra 'sip' is not installed
    _pjsua2 = None
    MISSING = f"the SIP stack is not installed ({exc}); install the extra: pip install 'telephony-fsm[sip]'"
else:
    MISSING = ""

#: the pjsua2 module, or None without the extra (see :data:`MISSING`)
pj: Any = _pjsua2
#: where PJSIP's own errors and warnings go
pjsip_logger = logging.getLogger("telephony_fsm.sip.pjsip")

#: the header a caller may carry interaction data in (a JSON object)
DATA_HEADER = "X-Interaction-Data"

_USER = re.compile(r"sips?:([^@;>]+)@")
_HOST = re.compile(r"@([^;>]+)")


class SipUnavailable(RuntimeError):
    """The SIP stack cannot be used here; the message says why."""


def require() -> Any:
    """The pjsua2 module, or :class:`SipUnavailable` saying why not."""
    if pj is None:
        raise SipUnavailable(MISSING)
    return pj


def capacity() -> int:
    """The calls the SIP stack holds at once (PJSUA_MAX_CALLS): what a
    build of ``.ci/pjsua2`` declares, else the wheel's."""
    return int(getattr(require(), "PJSUA_MAX_CALLS", WHEEL_CALLS))


def default_max_calls() -> int:
    """The softphone's maximum when none is asked for: one call less than
    the stack holds, so that the call beyond reaches the softphone, which
    refuses it and says so; the wheel's 4 are all used (its fifth is
    refused by PJSIP, whose warning reaches the log)."""
    held = capacity()
    return held if held <= WHEEL_CALLS else held - 1


def start_endpoint(
    host: str,
    port: int,
    *,
    log_level: int = 0,
    log_file: str = "",
    transport: str = "udp",
    max_calls: int = WHEEL_CALLS,
    tls: tuple[str, str, str] = ("", "", ""),
    codecs: tuple[str, ...] = (),
) -> tuple[Any, int]:
    """Create, configure and start this process's endpoint on ``host:port``
    over ``transport`` (udp, tcp or tls; ``port`` 0: any free port). Return
    it with the port it bound. It holds one call more than ``max_calls``, so
    that a call beyond them reaches the softphone, which refuses it and says
    so (PJSIP would refuse it unseen). ``tls``: certificate, key and CA
    files; ``codecs``: codec ids to prefer, in order."""
    lib = require()
    if max_calls > capacity():
        pjsip_logger.warning(
            "--sip-max-calls %d is more than the SIP stack declares it holds (%d; a stack that does not "
            "say holds the wheel's 4): PJSIP refuses the calls beyond its own limit (bash .ci/pjsua2 "
            "builds a stack for more)",
            max_calls,
            capacity(),
        )
    _register_digests()
    endpoint = lib.Endpoint()
    endpoint.libCreate()
    config = lib.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.uaConfig.userAgent = "telephony-fsm"
    config.uaConfig.maxCalls = max_calls + 1
    # PJSIP's errors and warnings (level 1 and 2: a call it refused for want
    # of a slot among them) always reach this process's log; the rest only
    # at the level asked for, on stderr or in the file
    config.logConfig.level = max(log_level, 2)
    config.logConfig.consoleLevel = max(log_level, 2)
    echo = 0 if log_file else log_level
    if echo not in _LOG_WRITERS:
        _LOG_WRITERS[echo] = _make_writer(echo)
    config.logConfig.writer = _LOG_WRITERS[echo]
    config.logConfig.decor = config.logConfig.decor & ~lib.PJ_LOG_HAS_NEWLINE
    if log_file:
        config.logConfig.filename = log_file
    config.medConfig.noVad = True
    try:
        endpoint.libInit(config)
        settings = lib.TransportConfig()
        settings.port = port
        settings.boundAddress = host
        cert, key, ca = tls
        if transport == "tls":
            settings.tlsConfig.certFile = cert
            settings.tlsConfig.privKeyFile = key
            settings.tlsConfig.CaListFile = ca
            settings.tlsConfig.verifyServer = bool(ca)
        kind = getattr(lib, f"PJSIP_TRANSPORT_{transport.upper()}")
        transport_id = endpoint.transportCreate(kind, settings)
        endpoint.libStart()
    except Exception as exc:  # pjsua2.Error: a port in use, a certificate it cannot read, ...
        endpoint.libDestroy()
        where = f"{transport} {host}:{port}"
        raise SipUnavailable(f"the SIP stack did not start on {where}: {_reason(exc)}") from None
    endpoint.audDevManager().setNullDev()
    known = [info.codecId for info in endpoint.codecEnum2()]
    for rank, codec in enumerate(codecs):
        # an id or its start, as PJSIP matches it: PCMA, PCMA/8000, PCMA/8000/1
        if not any(k.lower().startswith(codec.lower()) for k in known):
            endpoint.libDestroy()
            raise SipUnavailable(f"no codec {codec!r}; the SIP stack has {', '.join(known)}")
        endpoint.codecSetPriority(codec, 254 - rank)  # PJSIP keeps 255 for itself
    bound = endpoint.transportGetInfo(transport_id).localName
    return endpoint, int(bound.rpartition(":")[2])


#: the log writers handed to PJSIP, by the level they echo: they must outlive the endpoint
_LOG_WRITERS: dict[int, Any] = {}


def _make_writer(echo_level: int) -> Any:
    """A PJSIP log writer: errors and warnings to this process's log (where
    a call PJSIP refused is seen), the other lines up to ``echo_level`` to stderr."""

    class Writer(pj.LogWriter):  # type: ignore[misc]
        def write(self, entry: Any) -> None:
            text = str(entry.msg).rstrip()
            if entry.level <= 2:
                pjsip_logger.warning("PJSIP: %s", text.strip())
            elif entry.level <= echo_level:
                print(text, file=sys.stderr)

    return Writer()


def _register_digests() -> None:
    """Digest authentication needs MD5 from the OpenSSL that PJSIP's wheel
    bundles (1.0.2), which registers its digests only when a TLS transport
    starts: without this, every 401 or 407 goes unanswered ("the algorithm
    (MD5) ... is not supported"). Nothing to do for a build that links
    another OpenSSL, or none."""
    package = Path(pj.__file__).resolve().parent
    for library in sorted((package.parent / "pjsua2_python.libs").glob("libcrypto-*.so*")):
        loaded = ctypes.CDLL(str(library))  # the copy PJSIP has loaded already
        add_digests = getattr(loaded, "OpenSSL_add_all_digests", None)
        if add_digests is not None:
            add_digests()


def _reason(exc: BaseException) -> str:
    """What a pjsua2.Error says (its ``reason``), or the exception's text."""
    return str(getattr(exc, "reason", "") or exc)


def account_config(
    uri: str,
    *,
    media_host: str = "127.0.0.1",
    registrar: str = "",
    expires: int = 300,
    proxy: str = "",
    auth_user: str = "",
    password: str = "",
    params: str = "",
) -> Any:
    """An account whose media binds to ``media_host``. With a ``registrar``
    (``host[:port]``) it registers there when asked (not when it is
    created), answering digest challenges with ``auth_user`` and
    ``password``, which also answer the challenges to its INVITEs; with a
    ``proxy`` every request goes through it. ``params``: what every such
    URI carries for the transport (``;transport=tcp``)."""
    lib = require()
    config = lib.AccountConfig()
    config.idUri = uri
    config.mediaConfig.transportConfig.port = 0
    config.mediaConfig.transportConfig.boundAddress = media_host
    # the account sends over the endpoint's one transport: Jami's PJSIP
    # (.ci/pjsua2) opens no TLS connection for an account not bound to a
    # TLS listener (PJSIP_ETPNOTSUITABLE)
    transports = lib.Endpoint.instance().transportEnum()
    if len(transports) == 1:
        config.sipConfig.transportId = transports[0]
    if registrar:
        config.regConfig.registrarUri = f"sip:{registrar}{params}"
        config.regConfig.registerOnAdd = False
        config.regConfig.timeoutSec = expires
    if proxy:
        config.sipConfig.proxies.append(f"sip:{proxy}{params};lr")
    if password:
        credentials = lib.AuthCredInfo("digest", "*", auth_user, 0, password)
        # PJSIP 2.15 answers no challenge with a credential whose algorithm
        # is not set; before 2.15 a credential has no algorithm (MD5 only)
        if hasattr(credentials, "algoType"):
            credentials.algoType = lib.PJSIP_AUTH_ALGORITHM_MD5
        config.sipConfig.authCreds.append(credentials)
    return config


def user_of(uri: str) -> str:
    """The user part of a SIP URI or name-addr (``"A" <sip:5551000@h>`` -> ``5551000``)."""
    found = _USER.search(uri)
    return found.group(1) if found else ""


def host_of(uri: str) -> str:
    found = _HOST.search(uri)
    return found.group(1) if found else ""


#: the INVITE session's states by their value, named as PJSIP's constants
#: name them (its state text differs: 2.12 spells DISCONNECTED 'DISCONNCTD')
_INVITE_STATES: dict[int, str] = (
    {}
    if pj is None
    else {
        getattr(pj, f"PJSIP_INV_STATE_{name}"): name
        for name in ("NULL", "CALLING", "INCOMING", "EARLY", "CONNECTING", "CONFIRMED", "DISCONNECTED")
    }
)


def state_name(state: int) -> str:
    """The name of a call's INVITE session state (``CallInfo.state``),
    the same whatever PJSIP version spells it."""
    return _INVITE_STATES.get(state, f"STATE-{state}")


def status_text(code: int, reason: str) -> str:
    """``486 Busy Here``: a SIP final status as switch events report it."""
    return f"{code} {reason}".strip() if code else reason or "no SIP status"


def media_direction(call: Any) -> str:
    """The audio direction of a call as SDP names it, from this side's view:
    sendrecv, sendonly (we hold), recvonly (we are held), inactive, or none."""
    lib = require()
    try:
        if not call.isActive():  # gone: asking for its info would log an error
            return "none"
        info = call.getInfo()  # keep it: its media vector lives inside it
    except Exception:  # the call is gone
        return "none"
    for item in info.media:
        if item.type != lib.PJMEDIA_TYPE_AUDIO:
            continue
        status = item.status
        if status == lib.PJSUA_CALL_MEDIA_ACTIVE:
            # active, but the answer may have made it one-way (a=recvonly or
            # a=sendonly to our a=sendrecv)
            return {lib.PJMEDIA_DIR_ENCODING: "sendonly", lib.PJMEDIA_DIR_DECODING: "recvonly"}.get(
                item.dir, "sendrecv"
            )
        if status == lib.PJSUA_CALL_MEDIA_LOCAL_HOLD:
            return "sendonly"
        if status == lib.PJSUA_CALL_MEDIA_REMOTE_HOLD:
            return "recvonly"
        if status == lib.PJSUA_CALL_MEDIA_NONE:
            return "inactive"
        return "error"
    return "none"


def audio_of(call: Any) -> Any | None:
    """The call's audio port in the conference bridge, if its media runs."""
    lib = require()
    try:
        if not call.isActive():
            return None
        info = call.getInfo()
    except Exception:
        return None
    for item in info.media:
        if item.type == lib.PJMEDIA_TYPE_AUDIO and item.status in (
            lib.PJSUA_CALL_MEDIA_ACTIVE,
            lib.PJSUA_CALL_MEDIA_REMOTE_HOLD,
            lib.PJSUA_CALL_MEDIA_LOCAL_HOLD,
        ):
            try:
                return lib.AudioMedia.typecastFromMedia(call.getMedia(item.index))
            except Exception:
                return None
    return None


def header_value(message: str, name: str) -> str | None:
    """A header's value from a raw SIP message (first occurrence)."""
    prefix = name.lower() + ":"
    for line in message.split("\r\n")[1:]:
        if not line:
            break
        if line.lower().startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def request_user(message: str) -> str:
    """The user part of the Request-URI of a raw SIP request."""
    first = message.split("\r\n", 1)[0]
    parts = first.split(" ")
    return user_of(parts[1]) if len(parts) > 1 else ""


def data_of(message: str) -> dict[str, Any]:
    """Interaction data carried by :data:`DATA_HEADER`, if it is a JSON object."""
    raw = header_value(message, DATA_HEADER)
    if raw is None:
        return {}
    try:
        data = loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply
        return {}
    return data if isinstance(data, dict) else {}

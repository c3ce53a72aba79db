"""What the softphone and the scripted far ends share: one PJSIP endpoint.

PJSIP allows one ``Endpoint`` per process. It is created with no worker
threads and ``mainThreadOnly``, so every callback runs inside
:func:`poll` on the caller's thread and the engine stays single-threaded.
Audio uses the null device (no sound card); SIP runs over UDP.
"""

from __future__ import annotations

import re
from typing import Any

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


def start_endpoint(host: str, port: int, *, log_level: int = 0) -> tuple[Any, int]:
    """Create, configure and start this process's endpoint on UDP ``host:port``
    (``port`` 0: any free port). Return it with the port it bound."""
    lib = require()
    endpoint = lib.Endpoint()
    endpoint.libCreate()
    config = lib.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.uaConfig.userAgent = "telephony-fsm"
    config.logConfig.level = log_level
    config.logConfig.consoleLevel = log_level
    config.medConfig.noVad = True
    endpoint.libInit(config)
    transport = lib.TransportConfig()
    transport.port = port
    transport.boundAddress = host
    transport_id = endpoint.transportCreate(lib.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    endpoint.audDevManager().setNullDev()
    bound = endpoint.transportGetInfo(transport_id).localName
    return endpoint, int(bound.rpartition(":")[2])


def account_config(uri: str) -> Any:
    """A local account (no registrar) whose media binds to loopback."""
    lib = require()
    config = lib.AccountConfig()
    config.idUri = uri
    config.mediaConfig.transportConfig.port = 0
    config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    return config


def user_of(uri: str) -> str:
    """The user part of a SIP URI or name-addr (``"A" <sip:5551000@h>`` -> ``5551000``)."""
    found = _USER.search(uri)
    return found.group(1) if found else ""


def host_of(uri: str) -> str:
    found = _HOST.search(uri)
    return found.group(1) if found else ""


def status_text(code: int, reason: str) -> str:
    """``486 Busy Here``: a SIP final status as switch events report it."""
    return f"{code} {reason}".strip() if code else reason or "no SIP status"


def media_direction(call: Any) -> str:
    """The audio direction of a call as SDP names it, from this side's view:
    sendrecv, sendonly (we hold), recvonly (we are held), inactive, or none."""
    lib = require()
    try:
        info = call.getInfo()  # keep it: its media vector lives inside it
    except Exception:  # the call is gone
        return "none"
    for item in info.media:
        if item.type != lib.PJMEDIA_TYPE_AUDIO:
            continue
        status = item.status
        if status == lib.PJSUA_CALL_MEDIA_ACTIVE:
            return "sendrecv"
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

"""The properties a message of the catalog takes: attrs classes the strict
converter structures (D-BAD), with their wire names."""

from __future__ import annotations

import attrs

from fsm.messages import WIRE, register_wire_names


@attrs.frozen(kw_only=True)
class NoProperties:
    """A message that takes no properties."""


@attrs.frozen(kw_only=True)
class ConsultProperties:
    destination: str


@attrs.frozen(kw_only=True)
class CreateConversationProperties:
    id: str
    nativeid: str


@attrs.frozen(kw_only=True)
class DestinationProperties:
    destination: str


@attrs.frozen(kw_only=True)
class DtmfProperties:
    digits: str


@attrs.frozen(kw_only=True)
class SessionInitProperties:
    """session.query.init (F-SESS-1; the booleans are optional, D-SESS-1)."""

    name: str
    chat: bool = False
    email: bool = False
    callback: bool = False


@attrs.frozen(kw_only=True)
class ValidateLoginProperties:
    """cti.request.validatelogin (D-CTRL-2)."""

    agent: str
    password: str | None = None
    end_point: str | None = attrs.field(default=None, metadata={WIRE: "end-point"})


@attrs.frozen(kw_only=True)
class AgentProperties:
    """cti.query.agent (D-CTRL-2)."""

    agent: str


@attrs.frozen(kw_only=True)
class NotReadyProperties:
    """channel.request.notready (D-CH-1: ``reason`` optional)."""

    reason: str = ""


for _cls in (SessionInitProperties, ValidateLoginProperties, AgentProperties, NotReadyProperties):
    register_wire_names(_cls)


#: Properties made of free key -> string pairs (setdata, complete).
FreeProperties = dict[str, str]

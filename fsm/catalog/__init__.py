"""The message catalog: every query and request the bridge may send, as data.

A package of one idea each: ``rows`` (the catalog itself), ``properties``
(what a message takes), ``guards`` (named preconditions and the one
function that runs them), ``outcomes`` (command legs, completions, response
bodies, query answers) and ``names`` (every name this client invents where
the pages are silent). Everything is imported from ``fsm.catalog``.


Each :class:`RequestSpec` names the properties the message takes (an attrs
class the strict converter structures, D-BAD), the machine trigger it fires,
the named guards beyond the state check (each with its rule ID), the switch
operation it asks for and the condition under which that operation counts
as done. The engine, the docs and the trace checker read this one table.

Requests the seed does not define take their names from the protocol
family: ``interaction.request.accept`` ... (generic interaction destination)
and ``conversation.request.*`` (conversation destination). The spec gives
their "valid when" columns no rule ID; they are cited here as ``D-GENERIC``
and ``D-CONV``.
"""

from __future__ import annotations

from fsm.catalog.guards import (
    CREATION_GUARDS,
    GUARDS,
    TREE_GUARDS,
    Guard,
    GuardContext,
    TreeContext,
    first_refusal,
    switch_refusal,
)
from fsm.catalog.names import (
    CAPABILITIES,
    CHANNEL_EVENT_OF,
    CHANNEL_EVENTS,
    CONTROL_EVENTS,
    CONVERSATION_EVENTS,
    CREATED,
    GROUP_ID,
    INTERACTION_EVENTS,
    MEDIA_CHANNELS,
    SESSION_STATE,
    TELEPHONY,
    UNSUPPORTED_CHANNEL_EVENTS,
)
from fsm.catalog.outcomes import (
    COMMAND_LEGS,
    DEVICE_DONE_WHEN,
    DONE_WHEN,
    QUERY_ANSWERS,
    RESPONSE_BODIES,
    TREE_ANSWERS,
    CommandLegs,
    Outcome,
)
from fsm.catalog.properties import (
    AgentProperties,
    ConsultProperties,
    CreateConversationProperties,
    DestinationProperties,
    DtmfProperties,
    FreeProperties,
    NoProperties,
    NotReadyProperties,
    SessionInitProperties,
    ValidateLoginProperties,
)
from fsm.catalog.rows import (
    CATALOG,
    CREATION_GUARDS_OF,
    GUARDS_OF,
    NO_PROPERTIES,
    PROPERTY_KEYS,
    RequestSpec,
    Valid,
    headers_of,
    read_properties,
)

__all__ = [
    "CAPABILITIES",
    "CATALOG",
    "CHANNEL_EVENTS",
    "CHANNEL_EVENT_OF",
    "COMMAND_LEGS",
    "CONTROL_EVENTS",
    "CONVERSATION_EVENTS",
    "CREATED",
    "CREATION_GUARDS",
    "CREATION_GUARDS_OF",
    "DEVICE_DONE_WHEN",
    "DONE_WHEN",
    "GROUP_ID",
    "GUARDS",
    "GUARDS_OF",
    "INTERACTION_EVENTS",
    "MEDIA_CHANNELS",
    "NO_PROPERTIES",
    "PROPERTY_KEYS",
    "QUERY_ANSWERS",
    "RESPONSE_BODIES",
    "SESSION_STATE",
    "TELEPHONY",
    "TREE_ANSWERS",
    "TREE_GUARDS",
    "UNSUPPORTED_CHANNEL_EVENTS",
    "AgentProperties",
    "CommandLegs",
    "ConsultProperties",
    "CreateConversationProperties",
    "DestinationProperties",
    "DtmfProperties",
    "FreeProperties",
    "Guard",
    "GuardContext",
    "NoProperties",
    "NotReadyProperties",
    "Outcome",
    "RequestSpec",
    "SessionInitProperties",
    "TreeContext",
    "Valid",
    "ValidateLoginProperties",
    "first_refusal",
    "headers_of",
    "read_properties",
    "switch_refusal",
]

"""The rows of the catalog: every query and request the bridge may send."""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import attrs

from fsm.catalog.guards import CREATION_GUARDS, GUARDS, TREE_GUARDS, Guard
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
from fsm.messages import QUERY, REQUEST, Headers, build_headers, wire_name
from fsm.model import Request


class Valid(NamedTuple):
    """A well-formed query or request of the catalog. ``properties`` are the
    body keys its spec reads (D-ENV: others are ignored), ``props`` the same
    structured as the spec says (see :func:`fsm.catalog.read_properties`).
    A named tuple, not an attrs class: it lives from intake to execution
    only, and one is made per request."""

    headers: Headers
    spec: RequestSpec
    properties: dict[str, str]
    props: Any


# --------------------------------------------------------------------------
# The catalog.


@attrs.frozen(kw_only=True)
class RequestSpec:
    """One query or request the bridge may send."""

    name: str
    #: cti.query or cti.request
    kind: str
    #: "interaction" or "conversation": the kind of destination it targets
    destination: str
    #: the attrs class its properties structure into, or FreeProperties
    properties: Any = NoProperties
    #: the trigger it fires on its destination's machine (None for queries)
    trigger: str | None = None
    #: "state" (the interaction or conversation machine) or "lifecycle"
    machine: str = "state"
    #: rule cited when the top-level state is right but the substate is not
    substate_rule: str | None = None
    #: request guards beyond the state check, in order
    guards: tuple[str, ...] = ()
    #: the switch operation it asks for
    op: str | None = None
    #: the legs its command acts on (a key of COMMAND_LEGS): the
    #: conversation's own leg for conversation requests, else the primary
    legs: str = "primary"
    #: the properties its command carries, by name
    arguments: tuple[str, ...] = ()
    #: when that operation counts as done (a key of DONE_WHEN); None: at once,
    #: or when the switch acknowledges it with a `result`
    done: str | None = None
    #: what its SUCCESS response's body holds (a key of RESPONSE_BODIES);
    #: None: an empty body
    body: str | None = None
    #: a query's answer, made from its destination (a key of QUERY_ANSWERS)
    answer: str | None = None
    #: the lifecycle trigger a query fires once answered (the init queries:
    #: init, S-LIFE-2); None: it changes nothing
    then: str | None = None
    #: the event that follows its SUCCESS response (the status request:
    #: cti.status, F-CTRL-2); None: none
    then_event: str | None = None
    #: the kind of destination it creates when its target names none yet
    #: (session.query.init: "session", D-CTRL-3); None: it needs one
    creates: str | None = None

    @property
    def short(self) -> str:
        return self.name.rpartition(".")[2]


def _request(name: str, **kw: Any) -> RequestSpec:
    destination = name.partition(".")[0]
    if destination == "conversation":
        kw.setdefault("legs", "conversation")
    return RequestSpec(name=name, kind=REQUEST, destination=destination, **kw)


def _query(name: str, **kw: Any) -> RequestSpec:
    return RequestSpec(name=name, kind=QUERY, destination=name.partition(".")[0], **kw)


def headers_of(request: Request) -> Headers:
    """The headers of a request accepted earlier, to answer it (S-REQ-2)."""
    return build_headers(CATALOG[request.name].kind, request.name, request.target, request.request_id)


def read_properties(spec: RequestSpec, properties: dict[str, str]) -> Any:
    """The structured properties of an already validated request
    (a TypeError when they do not fit the spec's class)."""
    if spec.properties is FreeProperties:
        return dict(properties)
    if spec.properties is NoProperties:
        return NoProperties()
    return spec.properties(**properties)


CATALOG: Final[dict[str, RequestSpec]] = {
    spec.name: spec
    for spec in (
        _query("interaction.query.init", answer="interaction_init", then="init"),
        _query("interaction.query.data", answer="interaction_data", guards=("initialized",)),
        _query("conversation.query.init", answer="conversation_init", then="init"),
        _request("interaction.request.accept", trigger="accept", op="answer", done="answered"),
        _request("interaction.request.reject", trigger="reject", op="reject", done="interaction_ended"),
        _request(
            "interaction.request.complete",
            properties=FreeProperties,
            trigger="complete",
            guards=("data_room",),
        ),
        _request(
            "interaction.request.setdata",
            properties=FreeProperties,
            trigger="setdata",
            guards=("data_room",),
        ),
        _request("interaction.request.dispose", trigger="dispose", machine="lifecycle"),
        _request(
            "interaction.request.createconversation",
            properties=CreateConversationProperties,
            trigger="createconversation",
            guards=(
                "conversation_id_valid",
                "nativeid_known",
                "registration_consistent",
                "conversation_not_disposed",
                "creation_allowed",
            ),
        ),
        _request(
            "interaction.request.consult",
            properties=ConsultProperties,
            trigger="consult",
            substate_rule="D-CONS-2",
            guards=("destination_given", "leg_room"),
            op="consult",
            arguments=("destination",),
            done="leg_named",
            body="consult_leg",
        ),
        _request(
            "interaction.request.consulttransfer",
            trigger="consulttransfer",
            op="transfer",
            legs="primary_and_consult",
            done="interaction_ended",
        ),
        _request(
            "interaction.request.consultconference",
            trigger="consultconference",
            op="conference",
            legs="primary_and_consult",
            done="conferenced",
        ),
        _request(
            "interaction.request.alternate",
            trigger="alternate",
            op="alternate",
            legs="active_and_other",
            done="alternated",
        ),
        _request("conversation.request.answer", trigger="answer", op="answer", done="leg_talking"),
        _request("conversation.request.release", trigger="release", op="release", done="leg_ended"),
        _request("conversation.request.hold", trigger="hold", op="hold", done="leg_held"),
        _request("conversation.request.retrieve", trigger="retrieve", op="retrieve", done="leg_talking"),
        _request(
            "conversation.request.blindtransfer",
            properties=DestinationProperties,
            trigger="blindtransfer",
            guards=("blind_destination_given",),
            op="blindtransfer",
            arguments=("destination",),
            done="leg_ended",
        ),
        _request(
            "conversation.request.blindconference",
            properties=DestinationProperties,
            trigger="blindconference",
            guards=("blind_destination_given",),
            op="blindconference",
            arguments=("destination",),
        ),
        _request(
            "conversation.request.senddtmf",
            properties=DtmfProperties,
            trigger="senddtmf",
            guards=("digits_valid",),
            op="senddtmf",
            arguments=("digits",),
        ),
        _request("conversation.request.dispose", trigger="dispose", machine="lifecycle"),
        # The processor control destination (F-CTRL-*, D-CTRL-*).
        _request("cti.request.status", trigger="status", then_event="status"),
        _query("cti.query.capabilities", answer="capabilities"),
        _request(
            "cti.request.validatelogin",
            properties=ValidateLoginProperties,
            trigger="validatelogin",
            guards=("login_known",),
        ),
        _query("cti.query.agent", properties=AgentProperties, answer="agent", guards=("agent_known",)),
        # Sessions, channel groups, channels (F-SESS-*, F-CG-1, F-CH-*, D-CH-1, F-TCH-1).
        _query(
            "session.query.init",
            properties=SessionInitProperties,
            answer="session_init",
            then="init",
            guards=("same_agent",),
            creates="session",
        ),
        _request(
            "session.request.logout",
            trigger="logout",
            guards=("logout_no_live_interaction",),
            op="logout",
            done="channel_inactive",
        ),
        _request("session.request.dispose", trigger="dispose", machine="lifecycle"),
        _query("channelgroup.query.init", answer="group_init", then="init"),
        _request("channelgroup.request.dispose", trigger="dispose", machine="lifecycle"),
        _query("channel.query.init", answer="channel_init", then="init"),
        _request(
            "channel.request.activate",
            trigger="activate",
            guards=("supported_channel",),
            op="login",
            done="channel_active",
        ),
        _request(
            "channel.request.deactivate",
            trigger="deactivate",
            guards=("supported_channel", "no_live_interaction"),
            op="logout",
            done="channel_inactive",
        ),
        _request(
            "channel.request.ready",
            trigger="ready",
            guards=("supported_channel",),
            op="ready",
            done="channel_ready",
        ),
        _request(
            "channel.request.notready",
            properties=NotReadyProperties,
            trigger="notready",
            guards=("supported_channel",),
            op="notready",
            arguments=("reason",),
            done="channel_notready",
        ),
        _request(
            "channel.request.dial",
            properties=DestinationProperties,
            trigger="dial",
            guards=("supported_channel", "dial_destination_given"),
            op="dial",
            arguments=("destination",),
            done="dial_named",
            body="dialed",
        ),
        _request("channel.request.dispose", trigger="dispose", machine="lifecycle"),
    )
}


#: What every message without properties structures to.
NO_PROPERTIES: Final = NoProperties()
#: message name -> the body keys its attrs properties class takes
PROPERTY_KEYS: Final[dict[str, frozenset[str]]] = {
    spec.name: frozenset(wire_name(field) for field in attrs.fields(spec.properties))
    for spec in CATALOG.values()
    if attrs.has(spec.properties)
}
#: request name -> its request guards, in order (looked up once, not per message)
GUARDS_OF: Final[dict[str, tuple[Guard, ...]]] = {
    name: tuple((GUARDS | TREE_GUARDS)[guard] for guard in spec.guards) for name, spec in CATALOG.items()
}
#: kind -> the guards of creating a destination of that kind, looked up once
CREATION_GUARDS_OF: Final[dict[str, tuple[Guard, ...]]] = {
    kind: tuple(TREE_GUARDS[guard] for guard in names) for kind, names in CREATION_GUARDS.items()
}

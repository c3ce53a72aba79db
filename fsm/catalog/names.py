"""The names this client invents where the family's pages are silent, in
one place (spec: "keep every name that a D-rule invents in one declarative
place"): the group id, the session state, the media channels, the
capabilities, the events the client sends and what reports a channel's change."""

from __future__ import annotations

from typing import Final

# --------------------------------------------------------------------------
# Names this client invents where the family's pages are silent (D-CTRL-1,
# D-SESS-2, D-CG-1, D-CH-1): swap them here for a bridge that differs.

#: the channel type this client supports (D-CG-1, D-UCH: chat and email
#: channels are unsupported channels, F-UCH-1), and an interaction's type (D-NEW)
TELEPHONY: Final = "telephony"
#: the event that announces a new interaction on its channel (D-NEW)
CREATED: Final = "interaction.created"
#: the one channel group id of a session (D-SESS-2)
GROUP_ID: Final = "G1"
#: the session's one state in its init response (D-SESS-2)
SESSION_STATE: Final = "LOGGEDIN"
#: end-points of the unsupported media channels: AGENT + suffix (D-CG-1)
MEDIA_CHANNELS: Final = (("chat", "-chat"), ("email", "-email"))
#: the capabilities a switch driver declares by default: all the telephony
#: ones; chat and email are false, this client has no media channels (D-CTRL-1, D-UCH)
CAPABILITIES: Final = {
    "channel-groups-supported": True,
    "telephony": True,
    "consult": True,
    "consulttransfer": True,
    "consultconference": True,
    "alternate": True,
    "blindtransfer": True,
    "blindconference": True,
    "senddtmf": True,
    "chat": False,
    "email": False,
}


#: Names of the events the client sends, for checkers and docs.
INTERACTION_EVENTS: Final = (
    "interaction.alerting",
    "interaction.dialing",
    "interaction.started",
    "interaction.ended",
    "interaction.completed",
    "interaction.consult",
    "interaction.datachanged",
)
CONVERSATION_EVENTS: Final = (
    "conversation.dialing",
    "conversation.alerting",
    "conversation.talking",
    "conversation.held",
    "conversation.ended",
)
CHANNEL_EVENTS: Final = (
    CREATED,
    "channel.activated",
    "channel.deactivated",
    "channel.ready",
    "channel.notready",
    "channel.unavailable",
    "channel.available",
    "channel.disposed",
)
#: channel machine trigger -> the event that reports its change on every
#: initialized channel destination of the device (D-CH-1, F-CH-2)
CHANNEL_EVENT_OF: Final = {
    "agent_loggedin": "channel.activated",
    "agent_loggedout": "channel.deactivated",
    "agent_ready": "channel.ready",
    "agent_notready": "channel.notready",
    "agent_taken": "channel.unavailable",
    "agent_free": "channel.available",
    "agent_removed": "channel.disposed",
}
#: The events an unsupported channel may send (F-UCH-1).
UNSUPPORTED_CHANNEL_EVENTS: Final = CHANNEL_EVENTS[1:3] + CHANNEL_EVENTS[5:]
CONTROL_EVENTS: Final = ("cti.status",)

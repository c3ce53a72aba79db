"""What the engine returns, and how it addresses destinations (D-TARGET)."""

from __future__ import annotations

from typing import Final

import attrs

from fsm import machines as m
from fsm.frozen import builder
from fsm.messages import Message
from fsm.switch_events import Command

# --------------------------------------------------------------------------
# Outputs.


@attrs.frozen
class ToBridge:
    """A message for the bridge. ``rule`` is set on a FAILURE response: the
    rule ID behind the refusal, kept for logs and tests."""

    message: Message
    rule: str | None = None


@attrs.frozen
class ToSwitch:
    """A command for the switch."""

    command: Command


@attrs.frozen
class BridgeError:
    """A bridge message that is malformed and has no requestId to answer (D-BAD)."""

    rule: str
    message: str


@attrs.frozen
class SwitchError:
    """A switch event the engine refused (``refused``: it changed nothing,
    D-SWITCH), or a note on one it accepted (D-DATA: data trimmed)."""

    rule: str
    message: str
    refused: bool = True


Output = ToBridge | ToSwitch | BridgeError | SwitchError

#: ``ToBridge(...)`` and ``ToSwitch(...)``, quicker (see ``fsm.frozen``).
build_to_bridge: Final = builder(ToBridge)
build_to_switch: Final = builder(ToSwitch)


def encode_id(client_id: str) -> str:
    """D-TARGET: an id the client places into a target, percent-encoded for
    ``%`` and ``.`` only (``%25``, ``%2E``), so that a switch call id with a
    dot never names another destination's target."""
    if "%" in client_id:
        client_id = client_id.replace("%", "%25")
    if "." in client_id:
        client_id = client_id.replace(".", "%2E")
    return client_id


@attrs.frozen
class Targets:
    """F-TARGET, D-TARGET: an interaction is ``CHANNEL.I`` (``I`` the primary call id,
    encoded by :func:`encode_id`), a conversation its interaction's target
    plus ``.V`` (the bridge's id, verbatim). Replace it to address
    destinations another way."""

    channel: str = "session-1.channel-1"

    def interaction(self, interaction_id: str) -> str:
        return f"{self.channel}.{encode_id(interaction_id)}"

    def conversation(self, interaction_target: str, bridge_id: str) -> str:
        return f"{interaction_target}.{bridge_id}"


_STATE_WORDS: Final = {
    m.S_NONE: "STARTED with no consult",
    m.S_REQUESTED: "STARTED with a consult being placed",
    m.S_RINGING: "STARTED with the consult call ringing",
    m.S_PRIMARY: "STARTED with a connected consult call",
    m.S_CONSULT: "STARTED with a connected consult call",
}


def describe(state: str) -> str:
    """A state as a person reads it."""
    return _STATE_WORDS.get(state, state)

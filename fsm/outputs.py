"""What the engine returns, and how it addresses destinations (D-TARGET)."""

from __future__ import annotations

from typing import Final

import attrs

from fsm import machines as m
from fsm.errors import Refusal, Refused
from fsm.frozen import builder
from fsm.messages import Message
from fsm.switch_events import Command

# --------------------------------------------------------------------------
# Outputs.


@attrs.frozen
class ToBridge:
    """A message for the bridge. ``refusal`` is set on a FAILURE response:
    the rule and reason behind it (the reason is also the message's error
    text)."""

    message: Message
    refusal: Refusal | None = None

    @property
    def rule(self) -> str | None:
        return None if self.refusal is None else self.refusal.rule


@attrs.frozen
class ToSwitch:
    """A command for the switch."""

    command: Command


@attrs.frozen
class BridgeError(Refused):
    """A bridge message that is malformed and has no requestId to answer (D-BAD)."""

    refusal: Refusal


@attrs.frozen
class SwitchError(Refused):
    """A switch event the engine refused (``refused``: it changed nothing,
    D-SWITCH), or a note on one it accepted (D-DATA: data trimmed)."""

    refusal: Refusal
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
    """F-TARGET, D-TARGET: the control destination is ``PROCESSOR.CONTROL``;
    a session is ``S`` (the bridge's id), its channel group ``S.G``, a
    channel ``S.G.C`` (``C`` the end-point, encoded by :func:`encode_id`), an
    interaction ``S.G.C.I`` (``I`` the primary call id, encoded), a
    conversation its interaction's target plus ``.V`` (the bridge's id,
    verbatim). Replace it to address destinations another way."""

    processor: str = "proc-1"

    def control(self) -> str:
        return f"{self.processor}.CONTROL"

    def group(self, session: str, group_id: str) -> str:
        return f"{session}.{group_id}"

    def channel(self, group: str, end_point: str) -> str:
        return f"{group}.{encode_id(end_point)}"

    def interaction(self, channel: str, interaction_id: str) -> str:
        return f"{channel}.{encode_id(interaction_id)}"

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

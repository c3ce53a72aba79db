"""The outbox: the lowest layer of the engine, where every output is made.

Each input to the engine collects its outputs here in order: events and
responses for the bridge, FAILURE responses with their rule (S-REQ-2),
commands for the switch (numbered ``cmd-N``, H-CMD) and errors about switch
events. The layers above hand their outputs down to it; it calls nothing
above it. :meth:`Outbox.take` hands what one input caused to the engine.
"""

from __future__ import annotations

from typing import Any, Final

from fsm.errors import Refusal
from fsm.frozen import builder
from fsm.messages import RESPONSE, SUCCESS, Headers, Message, build_headers, build_message, response
from fsm.model import Request
from fsm.outputs import BridgeError, Output, SwitchError, build_to_bridge, build_to_switch
from fsm.state import EngineState
from fsm.switch_events import Command

_build_command: Final = builder(Command)


class Outbox:
    """The outputs of the input being handled, and the means to add to them."""

    __slots__ = ("out", "state")

    def __init__(self, state: EngineState) -> None:
        self.state = state
        #: the outputs so far, in order
        self.out: list[Output] = []

    def take(self) -> list[Output]:
        """What the input caused; the outbox is empty again."""
        out, self.out = self.out, []
        return out

    def emit(self, message: Message) -> None:
        """An event (or any message) for the bridge."""
        self.out.append(build_to_bridge(message))

    def respond(self, headers: Headers | Request, body: dict[str, Any] | None = None) -> None:
        """Answer SUCCESS (S-REQ-1) to the request named, targeted and
        identified by ``headers`` (a waiting request's record will do), with
        the response JSON as the body (D-BODY); what
        :func:`fsm.messages.response` makes, built here directly: one is made
        for nearly every input."""
        self.out.append(
            build_to_bridge(
                build_message(
                    build_headers(RESPONSE, headers.name, headers.target, headers.request_id, SUCCESS),
                    body if body is not None else {},
                )
            )
        )

    def refuse(self, headers: Headers, rule: str, reason: str, *, prefix: bool = True) -> None:
        """Answer FAILURE (S-REQ-2) citing ``rule``; the error message names
        the request (``consult refused: ...``) unless ``prefix`` is False."""
        self.refuse_with(headers, Refusal(rule, reason), prefix=prefix)

    def refuse_with(self, headers: Headers, refusal: Refusal, *, prefix: bool = True) -> None:
        """Answer FAILURE (S-REQ-2) with ``refusal``; the error message is its
        reason, naming the request (``consult refused: ...``) unless
        ``prefix`` is False."""
        short = headers.name.rpartition(".")[2] or "message"
        text = f"{short} refused: {refusal.reason}" if prefix else refusal.reason
        self.out.append(build_to_bridge(response(headers, error=text), refusal))

    def command(self, op: str, call: str | None, **extra: str) -> Command:
        """A command to the switch, ``cmd-N`` counting from 1 (H-CMD)."""
        state = self.state
        state.commands_issued += 1
        command = _build_command(id=f"cmd-{state.commands_issued}", op=op, call=call, **extra)
        self.out.append(build_to_switch(command))
        return command

    def switch_error(self, rule: str, message: str, *, refused: bool = True) -> None:
        """A switch event the engine refused (D-SWITCH), or a note on one it
        accepted (``refused=False``: D-DATA)."""
        self.out.append(SwitchError(Refusal(rule, message), refused))

    def bridge_error(self, refusal: Refusal) -> None:
        """A bridge message that is malformed and has no requestId to answer (D-BAD)."""
        self.out.append(BridgeError(refusal))

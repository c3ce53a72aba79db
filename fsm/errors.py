"""What goes wrong, in one shape, in the manner of h11.

A :class:`Refusal` is the one value that says why something was refused: a
rule ID of ``spec/protocol.md`` and a reason a person can act on. An edge
guard, a catalog guard, a completion that failed and a bad input all give
one; a FAILURE response (:class:`fsm.outputs.ToBridge`), a protocol error
output (:class:`fsm.outputs.BridgeError`, :class:`fsm.outputs.SwitchError`)
and a finding of the trace checker (:class:`fsm.checker.state.Violation`)
all carry one.

The exceptions:

- :class:`RemoteProtocolError`: the peer (the bridge or the switch) sent
  something the protocol does not allow; it carries the :class:`Refusal`.
  The engine turns these into FAILURE responses, protocol error outputs or
  switch-event errors and never lets them escape.
- :class:`LocalProtocolError`: our caller misused the engine or an adapter
  (fed it a value that is not a message, an unknown setting). It carries a
  rule only where the misuse breaks one (writing a frame larger than D-WIRE
  allows); a setting or an argument that is simply wrong carries none.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Refusal:
    """Why something was refused: the rule and a reason a person can act on.
    ``guard`` names the edge guard that refused, where one did."""

    rule: str
    reason: str
    guard: str | None = None


class Refused:
    """What carries a :class:`Refusal` (a protocol error output, a defect):
    its rule and reason by the names its readers use."""

    __slots__ = ()
    refusal: Refusal

    @property
    def rule(self) -> str:
        return self.refusal.rule

    @property
    def message(self) -> str:
        return self.refusal.reason


class ProtocolError(Exception):
    """Base of every error the engine and its adapters raise."""

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: the spec rule the input broke; None for a local misuse that breaks none
        self.rule = rule

    def __str__(self) -> str:
        return self.message if self.rule is None else f"{self.message} ({self.rule})"


class LocalProtocolError(ProtocolError):
    """The caller of the engine misused it."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message, rule)
        self.rule: str = rule

    @property
    def refusal(self) -> Refusal:
        return Refusal(self.rule, self.message)

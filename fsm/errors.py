"""The error tree of the engine, in the manner of h11.

One base, :class:`ProtocolError`, carrying the rule ID of ``spec/protocol.md``
that the offending input broke, and two branches:

- :class:`LocalProtocolError`: our caller misused the engine (for example fed
  it a value that is not a message at all).
- :class:`RemoteProtocolError`: the peer (the bridge or the switch) sent
  something illegal; the engine turns these into FAILURE responses, protocol
  error outputs or switch-event errors and never lets them escape.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every error the engine raises; ``rule`` is a spec rule ID."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.message} ({self.rule})"


class LocalProtocolError(ProtocolError):
    """The caller of the engine misused it."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

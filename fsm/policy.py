"""The engine's policies and bounds, in one attrs object.

The choices the spec leaves to a deployment (D-XFER-1, D-CONSULT-END,
D-ASYNC) and every D-BOUND limit live here. The CLI sets them with
``--policy NAME=VALUE``; :meth:`Policy.with_settings` parses those.
"""

from __future__ import annotations

from typing import Any

import attrs

from fsm.errors import LocalProtocolError


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be greater than 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Policy:
    """Every tunable of the engine. Defaults follow spec/protocol.md."""

    #: D-XFER-1: allow consulttransfer while the consult leg still rings.
    transfer_while_consult_ringing: bool = False
    #: D-CONSULT-END: retrieve the held primary when the consult leg ends.
    reconnect_on_consult_end: bool = False
    #: D-ASYNC: seconds of engine clock before a pending request fails.
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: D-BOUND: requests held per interaction (the executing one and those
    #: waiting behind it, D-SERIAL).
    max_pending_requests: int = attrs.field(default=64, validator=_positive)
    #: D-BOUND: requestIds remembered per destination for D-DUP.
    max_request_ids: int = attrs.field(default=10_000, validator=_positive)
    #: D-BOUND: live interactions in one engine.
    max_interactions: int = attrs.field(default=1_000_000, validator=_positive)
    #: D-BOUND: call legs one interaction may know (each consult adds one).
    max_legs: int = attrs.field(default=64, validator=_positive)
    #: D-BOUND: disposed destinations remembered, so that late messages get
    #: "destination disposed" rather than "unknown destination" (D-LIFE-4).
    max_disposed: int = attrs.field(default=100_000, validator=_positive)
    #: D-BOUND: interaction events the reference bridge holds per
    #: interaction while its conversations initialize (S-INIT-6).
    max_queued_events: int = attrs.field(default=10_000, validator=_positive)
    #: D-BOUND / D-DATA: keys one interaction's data may hold, counted at
    #: every level (a key of a nested object counts too).
    max_data_keys: int = attrs.field(default=1_000, validator=_positive)
    #: D-BOUND / D-WIRE: largest frame contents (and largest `run` input
    #: line), in bytes.
    max_frame_size: int = attrs.field(default=1 << 20, validator=_positive)

    def with_settings(self, settings: list[str]) -> Policy:
        """A copy with ``NAME=VALUE`` settings applied. An unknown name or a
        value of the wrong kind raises :class:`LocalProtocolError` saying
        which and why."""
        fields = {f.name: f for f in attrs.fields(Policy)}
        changes: dict[str, Any] = {}
        for setting in settings:
            name, sep, text = setting.partition("=")
            name = name.strip()
            if not sep:
                raise LocalProtocolError(f"policy {setting!r} is not NAME=VALUE")
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise LocalProtocolError(f"unknown policy {name!r}; known policies: {known}")
            changes[name] = _parse_value(name, fields[name].type, text.strip())
        try:
            return attrs.evolve(self, **changes)
        except ValueError as exc:
            raise LocalProtocolError(f"bad policy value: {exc}") from exc


def _parse_value(name: str, kind: object, text: str) -> object:
    if kind in (bool, "bool"):
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise LocalProtocolError(f"policy {name} takes true or false, got {text!r}")
    if kind in (int, "int"):
        try:
            return int(text)
        except ValueError:
            raise LocalProtocolError(f"policy {name} takes a whole number, got {text!r}") from None
    try:
        value = float(text)
    except ValueError:
        raise LocalProtocolError(f"policy {name} takes a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise LocalProtocolError(f"policy {name} takes a finite number, got {text!r}")
    return value

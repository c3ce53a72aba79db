"""What the trace checker knows of one run, shared by its parts.

The :class:`~fsm.checker.watcher.Watcher` (requests and their answers) and
the :class:`~fsm.checker.events.EventJudge` (events and what SUCCESS
answers tell) are both given one :class:`TraceState`; neither reaches into
the other. A :class:`Violation` is what the checker reports.
"""

from __future__ import annotations

import attrs

from fsm.checker.model import Destination, InteractionFacts, TargetRule, tracked_legs
from fsm.errors import Refusal
from fsm.outputs import Targets
from fsm.policy import Policy


@attrs.frozen
class Violation:
    """A rule the trace breaks (the refusal: its rule and why), at the line
    that proves it."""

    line: int
    refusal: Refusal

    @property
    def rule(self) -> str:
        return self.refusal.rule

    @property
    def explanation(self) -> str:
        return self.refusal.reason


@attrs.define
class TraceState:
    """The destinations of one run as its messages show them. ``policy``
    gives the deployment choices the rules depend on; ``targets`` replaces
    the D-TARGET addressing rule, as the engine's ``Targets`` does."""

    policy: Policy = attrs.field(factory=Policy)
    targets: TargetRule = attrs.field(factory=Targets)
    destinations: dict[str, Destination] = attrs.field(factory=dict)
    #: the facts of each interaction, by its target (its conversations'
    #: ``group``)
    interactions: dict[str, InteractionFacts] = attrs.field(factory=dict)
    #: the trace shows the switch (a switch line was seen): every switch
    #: event is in it (harness.md, "Traces")
    shows_switch: bool = False

    #: a status response was sent: cti.status may follow (D-CTRL-1)
    status_answered: bool = False

    def tracked(self, facts: InteractionFacts) -> set[str]:
        """The call legs of ``facts`` that have a conversation destination."""
        return tracked_legs(self.destinations, facts)

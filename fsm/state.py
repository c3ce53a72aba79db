"""The engine's shared state: one object that every layer is given.

:class:`EngineState` holds everything that decides what the engine does
next and is not a live model of its own: the destination directory (every
interaction, destination and call leg by id), the disposed and released
memories, the commands awaited, the clock and its deadlines, the index of
interactions a phone consult may join. Intake, execution, the switch side
and the outbox are each handed this object and keep no state of their own;
:mod:`fsm.snapshot` reads and rebuilds it directly.

Its containers are made once and never rebound (a layer may keep a
reference to one); the clock and the command counter are read and written
through the object.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from fsm import machines as m
from fsm.directory import DEFAULT_DIRECTORY, AgentDirectory
from fsm.model import Conversation, ConversationView, Interaction, InteractionView
from fsm.outputs import Targets
from fsm.policy import Policy
from fsm.tree import Channel, ChannelGroup, Control, Device, Session

__all__ = ["Destination", "EngineState", "bounded_add"]

#: Every kind of destination the client has (spec: "Context").
Destination = (
    Interaction
    | InteractionView
    | Conversation
    | ConversationView
    | Control
    | Session
    | ChannelGroup
    | Channel
)


@attrs.define(kw_only=True, eq=False)
class EngineState:
    """The state the layers of one :class:`fsm.engine.Engine` share."""

    policy: Policy
    targets: Targets
    #: the processor control destination (F-CTRL-1)
    control: Control
    #: the agent directory (D-CTRL-2)
    directory: AgentDirectory = DEFAULT_DIRECTORY
    #: what the switch driver declares it can do (D-CTRL-1)
    capabilities: Mapping[str, bool] = attrs.field(factory=dict)
    #: True when the switch answers every command with a `result` event
    #: (the scripted switch); False when commands take effect at once and
    #: only their events report them (the simulated switch).
    switch_acknowledges: bool = False
    #: engine time, in seconds (D-ASYNC)
    clock: float = 0.0
    #: commands sent so far; the next is ``cmd-(N+1)`` (H-CMD)
    commands_issued: int = 0
    #: live interactions by id
    interactions: dict[str, Interaction] = attrs.field(factory=dict)
    #: interaction id -> its destinations in further sessions of its agent,
    #: in the order of their channels (D-SESS-1); the first destination is
    #: the interaction itself, and most interactions have no other
    views: dict[str, list[InteractionView]] = attrs.field(factory=dict)
    #: live destinations of every kind by target
    destinations: dict[str, Destination] = attrs.field(factory=dict)
    #: live sessions by target
    sessions: dict[str, Session] = attrs.field(factory=dict)
    #: the agents' devices by end-point: every end-point of the directory (D-NEW)
    devices: dict[str, Device] = attrs.field(factory=dict)
    #: awaited device command id -> end-point
    awaited_devices: dict[str, str] = attrs.field(factory=dict)
    #: a heap of (deadline, end-point, requestId) of executing device requests
    device_deadlines: list[tuple[float, str, str]] = attrs.field(factory=list)
    #: end-point -> (engine time until which a timed-out dial claims the
    #: device's first new outbound leg, the dial's command): that leg, or the
    #: one its command's late result names, is released, never announced (D-ASYNC)
    dial_claims: dict[str, tuple[float, str]] = attrs.field(factory=dict)
    #: call legs of live interactions by call id
    calls: dict[str, Conversation] = attrs.field(factory=dict)
    #: disposed targets and calls, the newest last (D-LIFE-4, D-BOUND)
    disposed_targets: dict[str, None] = attrs.field(factory=dict)
    disposed_calls: dict[str, None] = attrs.field(factory=dict)
    #: legs the engine released on its own (a consult named too late)
    released: dict[str, None] = attrs.field(factory=dict)
    #: awaited command id -> interaction id
    awaited: dict[str, str] = attrs.field(factory=dict)
    #: consult command that failed or timed out before naming its leg ->
    #: interaction id; a leg named for it later is released (D-ASYNC)
    abandoned: dict[str, str] = attrs.field(factory=dict)
    #: the same commands -> engine time until which the first new leg is
    #: taken as theirs (D-ASYNC)
    abandoned_until: dict[str, float] = attrs.field(factory=dict)
    #: consult commands still waiting for the switch to name their leg
    awaiting_leg: dict[str, str] = attrs.field(factory=dict)
    #: STARTED.none interactions that a consult made on the phone may join, by
    #: device, those whose primary is held first; newest change last
    joinable_held: dict[str, dict[str, None]] = attrs.field(factory=dict)
    joinable_other: dict[str, dict[str, None]] = attrs.field(factory=dict)
    #: a heap of (deadline, interaction id, requestId) of executing requests
    deadlines: list[tuple[float, str, str]] = attrs.field(factory=list)

    def index(self, interaction: Interaction) -> None:
        """Keep the joinable index of the interaction's device current after
        a state change."""
        device = interaction.device
        for index in (self.joinable_held, self.joinable_other):
            joinable = index.get(device)
            if joinable is not None and interaction.id in joinable:
                del joinable[interaction.id]
                if not joinable:
                    del index[device]
        if interaction.state == m.S_NONE and interaction.id in self.interactions:
            primary = interaction.leg("primary")
            held = primary is not None and primary.state == m.HELD
            (self.joinable_held if held else self.joinable_other).setdefault(device, {})[interaction.id] = (
                None
            )

    def shown(self, interaction: Interaction) -> list[Interaction | InteractionView]:
        """Every destination of ``interaction``, the first one first (D-SESS-1)."""
        views = self.views.get(interaction.id) if self.views else None
        return [interaction, *views] if views else [interaction]

    def leg_shown(self, interaction: Interaction, leg: Conversation) -> list[Conversation | ConversationView]:
        """Every conversation destination of ``leg`` (made or not), the first one first."""
        views = self.views.get(interaction.id) if self.views else None
        return [leg, *(view.legs[leg.call] for view in views)] if views else [leg]

    def under(self, interaction: Interaction, channel: str) -> Interaction | InteractionView | None:
        """The destination of ``interaction`` under the channel destination
        ``channel`` (D-TARGET), if it has one there."""
        below = f"{channel}."
        for dest in self.shown(interaction):
            if dest.target.startswith(below):
                return dest
        return None

    def add_view(self, interaction: Interaction, channel: str) -> InteractionView:
        """``interaction`` gets a destination under ``channel``, a further
        session's (D-SESS-1), with a conversation destination to be for each
        of its legs."""
        view = InteractionView(
            interaction_id=interaction.id,
            target=self.targets.interaction(channel, interaction.id),
            lifecycle=m.ABSENT,
            legs={
                call: ConversationView(call=call, interaction_id=interaction.id) for call in interaction.legs
            },
        )
        m.LIFECYCLE.fire(view, "create")
        self.views.setdefault(interaction.id, []).append(view)
        self.destinations[view.target] = view
        return view

    def forget_target(self, target: str) -> None:
        """A destination is disposed: remembered as such, within D-BOUND."""
        self.destinations.pop(target, None)
        bounded_add(self.disposed_targets, target, self.policy.max_disposed)


def bounded_add(store: dict[str, None], key: str, limit: int) -> None:
    """Add ``key`` to an insertion-ordered memory, dropping the oldest past ``limit``."""
    store[key] = None
    while len(store) > limit:
        del store[next(iter(store))]

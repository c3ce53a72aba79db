"""Which destinations an input changed, so that a store writes only those
(design: "a store writes what one input changed, never the whole client").

The engine's state is kept as records (:mod:`fsm.snapshot`): one per
device (an agent's end-point), one per live interaction (with its legs and
its destinations in further sessions), one per session (with its channel
group and channels), and the small records of the whole processor. An
input changes the records of one agent's scope, and those its outputs name:

- a bridge message: the destination it addresses (taken before the input
  runs, so that what it disposes is known), or for a ``session.query.init``
  of a new session, its agent's device;
- a switch event: the interaction of its call, its device, or the
  interaction or device a command's ``result`` answers;
- every output: the destination a message to the bridge names and the
  call or device a command names (timeouts, link loss, D-ASYNC, D-CTRL-3);
- each device reached is expanded to its scope: the device, every
  interaction on it and every session showing it, before and after the
  input (an interaction the input ended or disposed is then deleted).

Calls of different agents never meet, so an input's scope does not grow
with the number of agents, and neither does the cost of saving it. The
property tests check after every generated step that the records written
so far rebuild exactly the engine's full snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from fsm.model import Conversation, ConversationView, Interaction, InteractionView
from fsm.outputs import Output, ToBridge, ToSwitch
from fsm.state import Destination, EngineState
from fsm.switch_events import SwitchEvent
from fsm.tree import Channel, ChannelGroup, Session

__all__ = ["ChangeTracker", "Changes"]


@attrs.define(kw_only=True)
class Changes:
    """The records inputs changed since the last :meth:`ChangeTracker.take`,
    in the order they were reached (each may since have been deleted: a
    record that is no longer live is to be deleted). The processor's own
    records (the control destination, the clock, the commands awaited, the
    memories of disposed destinations) are always saved."""

    devices: dict[str, None] = attrs.field(factory=dict)
    interactions: dict[str, None] = attrs.field(factory=dict)
    sessions: dict[str, None] = attrs.field(factory=dict)

    def __bool__(self) -> bool:
        return bool(self.devices or self.interactions or self.sessions)


@attrs.define(eq=False)
class ChangeTracker:
    """Collects :class:`Changes` for one engine; calls only read the state."""

    state: EngineState
    changes: Changes = attrs.field(factory=Changes)

    def take(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes

    # -- before an input runs

    def destination(self, dest: Destination | None) -> None:
        """A bridge message reached ``dest``."""
        if dest is None:
            return
        if isinstance(dest, Interaction):
            self.interaction(dest.id)
        elif isinstance(dest, InteractionView | Conversation | ConversationView):
            self.interaction(dest.interaction_id)
        elif isinstance(dest, Channel):
            self.session(dest.session)
            self.device(dest.end_point)
        elif isinstance(dest, ChannelGroup):
            self.session(dest.session)
        elif isinstance(dest, Session):
            self.session(dest.target)

    def agent(self, name: object) -> None:
        """A session is being created for the agent ``name``: its device's
        scope (the session may take over, or drop, its interactions)."""
        agent = self.state.directory.get(name) if isinstance(name, str) else None
        if agent is not None:
            self.device(agent.end_point)

    def target(self, target: str) -> None:
        self.destination(self.state.destinations.get(target))

    def switch_event(self, ev: SwitchEvent) -> None:
        state = self.state
        if ev.call:
            leg = state.calls.get(ev.call)
            if leg is not None:
                self.interaction(leg.interaction_id)
        if ev.device:
            self.device(ev.device)
        if ev.command:
            interaction_id = state.awaited.get(ev.command) or state.abandoned.get(ev.command)
            if interaction_id is not None:
                self.interaction(interaction_id)
            end_point = state.awaited_devices.get(ev.command)
            if end_point is not None:
                self.device(end_point)

    # -- after it ran

    def outputs(self, outputs: Iterable[Output]) -> None:
        """What an input produced names the records it reached; then every
        device reached is expanded to its scope as the input left it."""
        state = self.state
        for output in outputs:
            if type(output) is ToBridge:
                self.target(output.message.header.target)
            elif type(output) is ToSwitch:
                command = output.command
                for call in (command.call, command.consult, command.other):
                    if call:
                        leg = state.calls.get(call)
                        if leg is not None:
                            self.interaction(leg.interaction_id)
                if command.device:
                    self.device(command.device)
        for session in list(self.changes.sessions):
            self.session(session)
        for end_point in list(self.changes.devices):
            self.device(end_point)

    # -- the scopes

    def interaction(self, interaction_id: str) -> None:
        self.changes.interactions[interaction_id] = None
        interaction = self.state.interactions.get(interaction_id)
        if interaction is not None and interaction.device not in self.changes.devices:
            self.device(interaction.device)

    def device(self, end_point: str) -> None:
        """The device, its interactions and the sessions showing it, as they are now."""
        changes = self.changes
        changes.devices[end_point] = None
        device = self.state.devices.get(end_point)
        if device is None:
            return
        changes.interactions.update(dict.fromkeys(device.interactions))
        destinations = self.state.destinations
        for target in device.channels:
            channel = destinations.get(target)
            if type(channel) is Channel:
                changes.sessions[channel.session] = None

    def session(self, target: str) -> None:
        """The session and the devices its channels show."""
        self.changes.sessions[target] = None
        session = self.state.sessions.get(target)
        if session is None:
            return
        destinations = self.state.destinations
        group = destinations.get(session.group)
        if type(group) is not ChannelGroup:
            return
        for channel_target in group.channels:
            channel = destinations.get(channel_target)
            if type(channel) is Channel and channel.end_point in self.state.devices:
                self.device(channel.end_point)

"""Firing interaction triggers: the transition, what the new state
announces, and the edge's action.

:class:`Firing` is given the shared state and the outbox, and nothing
above them: firing a trigger moves the interaction (its table,
:data:`fsm.machines.INTERACTION`), emits the event of a new top-level
state (D-EVT-2), runs the edge's action from :data:`ACTIONS` and keeps the
joinable index current. What a trigger means for a request executing on
the interaction is judged by the layer that fired it (execution's
completion check), not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from fsm import machines as m
from fsm.machines import INTERACTION, TOP_OF
from fsm.messages import event
from fsm.model import Interaction
from fsm.outbox import Outbox
from fsm.state import EngineState


class Firing:
    """Fires interaction triggers for the layers above it."""

    __slots__ = ("machine", "outbox", "state")

    def __init__(self, state: EngineState, outbox: Outbox, machine: m.StateMachine = INTERACTION) -> None:
        self.machine = machine
        self.state = state
        self.outbox = outbox

    def fire(self, interaction: Interaction, trigger: str) -> None:
        """Fire a trigger the table allows now (the caller checked it)."""
        before = interaction.state
        edge = self.machine.fire(interaction, trigger, self.state.policy)
        if edge.dest is not None or edge.action is not None:
            self._after(interaction, edge, before)

    def fire_if_edge(self, interaction: Interaction, trigger: str) -> None:
        """Fire a trigger derived from a leg's new state, where the table has
        an edge for it (a primary retrieved with no consult changes nothing)."""
        edge = self.machine.fire_if_edge(interaction, trigger, self.state.policy)
        if edge is not None:
            self._after(interaction, edge, edge.source)

    def _after(self, interaction: Interaction, edge: m.Edge, before: str) -> None:
        """What follows an interaction edge from state ``before``: the event of
        a new top-level state, the edge's action, the joinable index."""
        if edge.dest is None:  # internal: the state is unchanged
            if edge.action is not None:
                ACTIONS[edge.action](self, interaction)
            return
        now = TOP_OF[interaction.state]
        if now != TOP_OF[before]:
            name = _INTERACTION_EVENT[now]
            if self.state.views:  # every destination of the call that is initialized (D-SESS-1)
                for dest in self.state.shown(interaction):
                    if dest.lifecycle == m.INITIALIZED:
                        self.outbox.emit(event(name, dest.target))
            elif interaction.lifecycle == m.INITIALIZED:
                self.outbox.emit(event(name, interaction.target))
        if edge.action is not None:
            ACTIONS[edge.action](self, interaction)
        self.state.index(interaction)


def _promote_consult(firing: Firing, interaction: Interaction) -> None:
    """D-PRIMARY-LOSS: the live consult leg becomes the primary."""
    consult = interaction.leg("consult")
    assert consult is not None
    consult.role = "primary"
    interaction.primary, interaction.consult = consult.call, None


def _consult_over(firing: Firing, interaction: Interaction) -> None:
    """D-CONSULT-END: the primary stays held, unless policy retrieves it,
    also while a request of the interaction executes (the retrieve is the
    engine's own command)."""
    interaction.consult = None
    primary = interaction.leg("primary")
    if firing.state.policy.reconnect_on_consult_end and primary is not None and primary.state == m.HELD:
        firing.outbox.command("retrieve", primary.call)


#: The actions the interaction table names (its ``action`` column).
ACTIONS: Final[dict[str, Callable[[Firing, Interaction], None]]] = {
    "promote_consult": _promote_consult,
    "consult_over": _consult_over,
}

#: top-level interaction state -> the event that announces it (interaction.started, ...)
_INTERACTION_EVENT: Final = {state: f"interaction.{state.lower()}" for state in set(TOP_OF.values())}

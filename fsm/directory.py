"""The agent directory (D-CTRL-2): who may log in, as whom, at which end-point.

The directory is configuration of the adapter, never code: each entry is an
agent's login name (``agent``, what ``session.query.init`` names and
``cti.request.validatelogin`` checks), the display name ``cti.query.agent``
answers (``name``, the login name when not given) and the agent's telephony
end-point (``end-point``: the switch's id of the agent's device, which the
switch names in its events, ``device``). Two agents may share an end-point
(a shared desk: the channel is UNAVAILABLE to one while the other is logged
in, F-CH-1); an agent has one entry.

:func:`directory_from_entries` reads the entries a file holds (a list of
``{"agent", "name", "end-point"}`` objects) and refuses anything else with
an error naming the entry and the defect; ``adapters.agents`` reads the
files and the command-line options.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import attrs

from fsm.errors import LocalProtocolError

#: The keys of a directory entry.
ENTRY_KEYS: Final = ("agent", "name", "end-point")


@attrs.frozen
class Agent:
    """One entry of the directory."""

    agent: str
    end_point: str
    name: str = attrs.field(default=attrs.Factory(lambda self: self.agent, takes_self=True))


@attrs.frozen
class AgentDirectory:
    """The agents, by login name, in the order they were given."""

    agents: tuple[Agent, ...]
    _by_agent: dict[str, Agent] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_agent: dict[str, Agent] = {}
        for agent in self.agents:
            if agent.agent in by_agent:
                raise LocalProtocolError(f"agent directory: agent {agent.agent!r} is given twice")
            by_agent[agent.agent] = agent
        object.__setattr__(self, "_by_agent", by_agent)

    def get(self, agent: str) -> Agent | None:
        """The entry of the agent whose login name is ``agent``."""
        return self._by_agent.get(agent)

    def at(self, end_point: str) -> list[Agent]:
        """The agents whose end-point is ``end_point``."""
        return [agent for agent in self.agents if agent.end_point == end_point]

    @property
    def end_points(self) -> list[str]:
        """Every end-point of the directory, once each, in order (D-NEW: the
        client follows their calls from start-up)."""
        return list(dict.fromkeys(agent.end_point for agent in self.agents))


#: The directory when none is configured (spec/harness.md): one agent,
#: ``agent-1``, at end-point ``1001``.
DEFAULT_DIRECTORY: Final = AgentDirectory((Agent(agent="agent-1", end_point="1001"),))


def directory_from_entries(entries: object, where: str = "agent directory") -> AgentDirectory:
    """The directory of ``entries``: a non-empty list of objects with the keys
    ``agent`` and ``end-point`` (non-empty strings) and optionally ``name``.
    Anything else raises LocalProtocolError naming the entry and the defect;
    ``where`` names the source (a file) in the message."""
    if not isinstance(entries, list):
        raise LocalProtocolError(f"{where}: expected a list of agents, got {_kind(entries)}")
    if not entries:
        raise LocalProtocolError(f"{where}: no agent is given")
    return AgentDirectory(tuple(_entry(entry, f"{where}, agent {n}") for n, entry in enumerate(entries, 1)))


def directory_from_pairs(pairs: Iterable[str]) -> AgentDirectory:
    """The directory of ``NAME=END-POINT`` pairs (``--agent``)."""
    agents = []
    for pair in pairs:
        agent, sep, end_point = pair.partition("=")
        if not sep or not agent or not end_point:
            raise LocalProtocolError(f"--agent takes NAME=END-POINT, got {pair!r}")
        agents.append(_entry({"agent": agent, "end-point": end_point}, f"--agent {pair}"))
    if not agents:
        raise LocalProtocolError("--agent: no agent is given")
    return AgentDirectory(tuple(agents))


def _entry(entry: object, where: str) -> Agent:
    if not isinstance(entry, dict):
        raise LocalProtocolError(
            f"{where}: expected an object {{agent, name, end-point}}, got {_kind(entry)}"
        )
    unknown = [key for key in entry if key not in ENTRY_KEYS]
    if unknown:
        known = ", ".join(ENTRY_KEYS)
        raise LocalProtocolError(
            f"{where}: unknown key {', '.join(map(repr, unknown))} (the keys are {known})"
        )
    fields: dict[str, Any] = {}
    for key in ENTRY_KEYS:
        value = entry.get(key)
        if value is None and key == "name":
            continue
        if value is None:
            raise LocalProtocolError(f"{where}: {key!r} is missing")
        if not isinstance(value, str) or not value.strip():
            raise LocalProtocolError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
        if not value.isprintable():
            raise LocalProtocolError(f"{where}: {key!r} holds a control character: {value!r}")
        fields[key.replace("-", "_")] = value
    return Agent(**fields)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__

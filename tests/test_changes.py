"""A store writes what one input changed, never the whole client
(design.md; fsm.changes, fsm.snapshot records, adapters/state.py).

- One input on one agent's call writes the records of that agent's scope
  only (its device, its interaction, its session) and the processor's,
  whatever the number of agents: the same records beside 3 agents as
  beside 60.
- A store's file, saved after every input of many agents' calls, rebuilds
  the engine's full snapshot (the property tests check the same after
  every generated step, tests/records.py).
"""

from __future__ import annotations

from pathlib import Path

from adapters.runner import Runner
from adapters.state import StateStore, resume
from fsm.outputs import Targets
from fsm.snapshot import DEVICE, INTERACTION, PROCESSOR, SESSION, Saver, snapshot
from tests.benchmarks.agents import Agents
from tests.records import RecordMirror, normalized


def written_by_a_cycle(count: int) -> list[set[tuple[str, str]]]:
    """The record keys each input of agent 1's cycle writes, beside ``count`` agents."""
    agents = Agents(count)
    engine = agents.runner.engine
    engine.track_changes()
    saver = Saver(fresh=False)
    engine.take_changes()
    keys: list[set[tuple[str, str]]] = []
    agents.after = lambda: keys.append(set(saver.delta(engine, engine.take_changes()).records))
    agents.cycle(1)
    return keys


def test_an_input_writes_its_agents_records_only_whatever_the_number_of_agents() -> None:
    few, many = written_by_a_cycle(3), written_by_a_cycle(60)
    assert few == many
    scope = {
        (PROCESSOR, ""),
        (DEVICE, "100001"),
        (SESSION, "S1"),
        (INTERACTION, "t1"),
        (INTERACTION, "r1"),
        (INTERACTION, "n1"),
    }
    for keys in many:
        assert keys <= scope, keys - scope
        assert (DEVICE, "100001") in keys  # the agent's scope, every time
    assert any((INTERACTION, "n1") in keys for keys in many)  # the new call, then its deletion


def test_a_deleted_interaction_leaves_the_records() -> None:
    agents = Agents(2)
    mirror = RecordMirror(agents.runner.engine)
    mirror.check()
    assert (INTERACTION, "n1") not in mirror.records
    channel = "S1.G1.100001"
    agents.feed({"from": "switch", "event": {"kind": "offered", "call": "n1", "device": "100001"}})
    mirror.check()
    assert (INTERACTION, "n1") in mirror.records
    agents.request("interaction.request.dispose", f"{channel}.n1")
    mirror.check()
    assert (INTERACTION, "n1") not in mirror.records
    assert mirror.memories["disposed_targets"]  # the disposed target is remembered (D-LIFE-4)


def test_a_state_file_saved_after_every_input_rebuilds_the_engine(tmp_path: Path) -> None:
    agents = Agents(5)
    runner = agents.runner
    with StateStore(tmp_path / "state.db") as store:

        def save() -> None:
            store.save(runner.engine, runner.switch, inputs=agents.inputs, switch_events=0)

        agents.after = save
        for n in range(3):
            agents.cycle(n)
        records = store.count("record")
        saved = store.load()
    assert saved is not None
    # the processor and its config, 5 devices, 5 sessions, 10 calls
    assert 2 + 5 + 5 + 10 == records
    engine, switch = resume(saved, runner.switch, Targets())
    assert normalized(snapshot(runner.engine)) == normalized(snapshot(engine))
    assert runner.switch == switch
    again = Runner(engine, switch)
    assert again.engine.interactions.keys() == runner.engine.interactions.keys()

"""The state diagrams (``adapters/diagrams.py``, ``diagrams/``) show the tables.

1. The Mermaid and DOT of every machine of ``fsm.machines.MACHINES`` have one
   arrow per table row, between the right states, labelled with the trigger,
   the guard and the rule ID.
2. The committed diagrams in ``diagrams/`` are what the tables give now, and
   ``check`` / ``main --check`` notice a diagram that is not.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from adapters import diagrams
from adapters.diagrams import (
    DIAGRAMS,
    check,
    dot,
    main,
    mermaid,
    mermaid_blocks,
    parse_mermaid_edges,
)
from fsm.machines import EDGE_GUARDS, INTERACTION, MACHINES, Edge, StateMachine

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "diagrams"
MACHINE_IDS = [m.name for m in MACHINES]
HAS_DOT = shutil.which("dot") is not None
_DOT_ARROW = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="([^"]*)"\];$', re.MULTILINE)
_MERMAID_ARROW = re.compile(r"^\s*\S+ --> \S+ : .*$", re.MULTILINE)


def expected_edges(machine: StateMachine) -> set[tuple[str, str, str]]:
    """(source, dest, label) of every row, written out here independently of the module."""
    rows = set()
    for e in machine.edges:
        guard = f" [{e.guard}]" if e.guard else ""
        rows.add((e.source, e.dest if e.dest is not None else e.source, f"{e.trigger}{guard} ({e.rule})"))
    return rows


def label_of(edges: set[tuple[str, str, str]], edge: Edge) -> str:
    dest = edge.dest if edge.dest is not None else edge.source
    found = [
        text
        for source, to, text in edges
        if (source, to) == (edge.source, dest) and text.split(" ", 1)[0] == edge.trigger
    ]
    assert len(found) == 1, (edge, found)
    return found[0]


def test_every_machine_has_a_diagram() -> None:
    assert sorted(MACHINE_IDS) == sorted(m.name for _, m in DIAGRAMS)


# --------------------------------------------------------------------------
# 1. What the diagrams show.


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_mermaid_edges_are_the_table(machine: StateMachine) -> None:
    assert expected_edges(machine) == parse_mermaid_edges(mermaid(machine))


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_mermaid_has_one_arrow_per_row(machine: StateMachine) -> None:
    """Rows are not merged: as many labelled arrows as the table has rows."""
    assert len(machine.edges) == len(_MERMAID_ARROW.findall(mermaid(machine)))


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_every_label_names_rule_and_guard(machine: StateMachine) -> None:
    edges = parse_mermaid_edges(mermaid(machine))
    for edge in machine.edges:
        text = label_of(edges, edge)
        assert text.endswith(f"({edge.rule})"), (edge, text)
        if edge.guard is not None:
            assert f"[{edge.guard}]" in text, (edge, text)
        else:
            assert "[" not in text, (edge, text)


def test_guarded_edge_label() -> None:
    [edge] = [e for e in INTERACTION.edges if e.guard is not None]
    text = label_of(parse_mermaid_edges(mermaid(INTERACTION)), edge)
    assert text == "consulttransfer [transfer_while_consult_ringing] (D-XFER-1)"


def test_interaction_substates_are_nested() -> None:
    text = mermaid(INTERACTION)
    assert "state STARTED {" in text
    assert 'state "connected" as STARTED_connected {' in text
    assert 'state "primary" as STARTED_connected_primary' in text
    ids = {token for line in text.splitlines() for token in line.split() if "-->" in line}
    assert not any("." in token for token in ids - {"-->"}), "Mermaid ids may not contain dots"
    parsed = parse_mermaid_edges(text)
    assert ("STARTED.ringing", "STARTED.connected.consult", "consult_connected (S-ALT-1)") in parsed


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_mermaid_marks_starts_and_finals(machine: StateMachine) -> None:
    lines = mermaid(machine).splitlines()
    starts = [line.split()[-1] for line in lines if line.strip().startswith("[*] -->")]
    finals = [line.split()[0] for line in lines if line.strip().endswith("--> [*]")]
    assert list(diagrams.STARTS[machine.name]) == starts
    assert [diagrams.state_id(s) for s in machine.finals] == finals
    if machine.name != "control":  # the client answers a status request even when stopped (D-CTRL-1)
        assert machine.finals, "every machine has a final state to mark"


def test_starts_are_the_ones_asked_for() -> None:
    assert diagrams.STARTS == {
        "interaction": ("ALERTING", "DIALING"),
        "conversation": ("ALERTING", "DIALING"),
        "destination": ("ABSENT",),
        "control": ("starting", "started"),
        "channel": ("INACTIVE",),
    }


@pytest.mark.parametrize("machine", MACHINES, ids=MACHINE_IDS)
def test_dot_edges_are_the_table(machine: StateMachine) -> None:
    source = dot(machine)
    arrows = Counter(_DOT_ARROW.findall(source))
    assert len(machine.edges) == sum(arrows.values())
    assert expected_edges(machine) == set(arrows)


def test_dot_clusters_the_substates() -> None:
    source = dot(INTERACTION)
    assert 'subgraph "cluster_STARTED" {' in source
    assert 'subgraph "cluster_STARTED_connected" {' in source
    inner = source.split('subgraph "cluster_STARTED_connected" {', 1)[1].split("}", 1)[0]
    assert '"STARTED.connected.primary"' in inner
    assert '"STARTED.connected.consult"' in inner
    assert '"STARTED.none"' not in inner


def test_parse_ignores_start_and_final_arrows() -> None:
    text = "stateDiagram-v2\n    [*] --> A\n    A --> B : go (R-1)\n    B --> [*]\n"
    assert {("A", "B", "go (R-1)")} == parse_mermaid_edges(text)


# --------------------------------------------------------------------------
# 2. The committed diagrams are current, and staleness is noticed.


def test_committed_diagrams_are_current() -> None:
    expected: list[str] = []
    assert expected == check(COMMITTED)


def test_committed_readme_embeds_every_diagram() -> None:
    readme = (COMMITTED / "README.md").read_text()
    assert [mermaid(m) for _, m in DIAGRAMS] == mermaid_blocks(readme)
    for stem, _ in DIAGRAMS:
        assert f"({stem}.mmd)" in readme


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    target = tmp_path / "diagrams"
    shutil.copytree(COMMITTED, target)
    assert check(target) == []
    return target


def test_changed_mermaid_is_stale(copy: Path) -> None:
    path = copy / "conversation.mmd"
    path.write_text(path.read_text().replace("(D-CONV)", "(D-CONV-X)", 1))
    assert check(copy) == ["conversation.mmd"]


def test_missing_mermaid_is_stale(copy: Path) -> None:
    (copy / "lifecycle.mmd").unlink()
    assert check(copy) == ["lifecycle.mmd"]


def test_changed_readme_block_is_stale(copy: Path) -> None:
    path = copy / "README.md"
    text = path.read_text()
    path.write_text(text.replace("init (D-LIFE-5)", "init (D-LIFE-6)", 1))
    assert check(copy) == ["README.md"]


def test_readme_missing_a_block_is_stale(copy: Path) -> None:
    path = copy / "README.md"
    text = path.read_text()
    path.write_text(text.replace("```mermaid\n", "```text\n", 1))
    assert check(copy) == ["README.md"]


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not on PATH")
def test_committed_svgs_exist() -> None:
    for stem, _ in DIAGRAMS:
        assert (COMMITTED / f"{stem}.svg").is_file()


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not on PATH")
def test_changed_svg_is_stale(copy: Path) -> None:
    path = copy / "interaction.svg"
    path.write_text(path.read_text().replace("consult_talking", "consult_talkin", 1))
    assert check(copy) == ["interaction.svg"]


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not on PATH")
def test_svg_version_comment_is_ignored(copy: Path) -> None:
    path = copy / "lifecycle.svg"
    text = path.read_text()
    head, rest = text.split("<svg", 1)
    path.write_text(f"{head}<!-- Generated by graphviz version 0.0.0 (0)\n -->\n<svg{rest}")
    assert check(copy) == []


def test_main_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], root=tmp_path) == 0
    written = sorted(p.name for p in (tmp_path / "diagrams").iterdir())
    expected = sorted(
        f"{stem}.{ext}" for stem, _ in DIAGRAMS for ext in (("mmd", "svg") if HAS_DOT else ("mmd",))
    )
    assert expected == written
    for stem, machine in DIAGRAMS:
        assert mermaid(machine) == (tmp_path / "diagrams" / f"{stem}.mmd").read_text()
    capsys.readouterr()

    assert main(["--check"], root=tmp_path) == 0
    assert capsys.readouterr().out == ""

    path = tmp_path / "diagrams" / "interaction.mmd"
    path.write_text(path.read_text() + "    ALERTING --> ENDED : hangup (X-1)\n")
    assert main(["--check"], root=tmp_path) == 1
    assert capsys.readouterr().out == "stale: diagrams/interaction.mmd\n"


def test_main_check_finds_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"], root=tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    assert [f"stale: diagrams/{stem}.mmd" for stem, _ in DIAGRAMS] == out


def test_rows_between_the_same_states_are_not_merged() -> None:
    """Two rows with one source, dest and trigger are two arrows (and the same row twice, two)."""
    go = Edge(source="A", trigger="go", dest="B", rule="R-1")
    toy = StateMachine(
        "toy",
        ("A", "B"),
        "A",
        (
            go,
            go,
            Edge(source="A", trigger="go", dest="B", rule="R-2", guard="transfer_while_consult_ringing"),
        ),
        guards=EDGE_GUARDS,
    )
    arrows = [line.strip() for line in _MERMAID_ARROW.findall(mermaid(toy))]
    assert arrows == [
        "A --> B : go (R-1)",
        "A --> B : go (R-1)",
        "A --> B : go [transfer_while_consult_ringing] (R-2)",
    ]
    assert len(_DOT_ARROW.findall(dot(toy))) == 3
    assert parse_mermaid_edges(mermaid(toy)) == {
        ("A", "B", "go (R-1)"),
        ("A", "B", "go [transfer_while_consult_ringing] (R-2)"),
    }

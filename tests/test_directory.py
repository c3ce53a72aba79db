"""The agent directory (D-CTRL-2): configuration, read and refused with
errors that name the entry and the defect."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.agents import load_directory
from fsm.directory import (
    DEFAULT_DIRECTORY,
    Agent,
    AgentDirectory,
    directory_from_entries,
    directory_from_pairs,
)
from fsm.errors import LocalProtocolError


def test_d_ctrl_2_the_default_directory_is_one_agent_at_1001() -> None:
    """harness.md: without a directory, agent-1 at end-point 1001."""
    expected = (Agent(agent="agent-1", end_point="1001", name="agent-1"),)
    assert expected == DEFAULT_DIRECTORY.agents


def test_d_ctrl_2_entries_with_and_without_a_display_name() -> None:
    directory = directory_from_entries(
        [{"agent": "ann", "name": "Ann Smith", "end-point": "1001"}, {"agent": "bob", "end-point": "1002"}]
    )
    assert Agent(agent="ann", end_point="1001", name="Ann Smith") == directory.get("ann")
    bob = directory.get("bob")
    assert bob is not None
    assert "bob" == bob.name  # the login name stands in
    assert directory.get("carol") is None


def test_d_ctrl_2_agents_may_share_an_end_point_and_each_end_point_is_followed_once() -> None:
    """F-CH-1: a shared desk; D-NEW: the client follows every end-point of the directory."""
    directory = directory_from_pairs(["ann=1001", "bob=1002", "carol=1001"])
    assert ["ann", "carol"] == [a.agent for a in directory.at("1001")]
    assert ["1001", "1002"] == directory.end_points


@pytest.mark.parametrize(
    ("entries", "defect"),
    [
        ({"agent": "ann"}, "expected a list of agents, got dict"),
        (None, "expected a list of agents, got null"),
        ([], "no agent is given"),
        (["ann"], "agent 1: expected an object {agent, name, end-point}, got str"),
        ([{"agent": "ann"}], "agent 1: 'end-point' is missing"),
        ([{"end-point": "1001"}], "agent 1: 'agent' is missing"),
        ([{"agent": "ann", "end-point": 1001}], "agent 1: 'end-point' must be a non-empty string, got 1001"),
        ([{"agent": " ", "end-point": "1001"}], "agent 1: 'agent' must be a non-empty string, got ' '"),
        ([{"agent": "ann", "end-point": "10\n01"}], "agent 1: 'end-point' holds a control character"),
        ([{"agent": "ann", "end-point": "1001", "endpoint": "x"}], "agent 1: unknown key 'endpoint'"),
        (
            [{"agent": "ann", "end-point": "1001"}, {"agent": "ann", "end-point": "1002"}],
            "agent 'ann' is given twice",
        ),
    ],
)
def test_d_ctrl_2_a_bad_directory_is_refused_naming_the_defect(entries: Any, defect: str) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        directory_from_entries(entries)
    assert defect in excinfo.value.message
    assert excinfo.value.rule is None  # local misuse: no protocol rule broken


@pytest.mark.parametrize(
    ("pairs", "defect"),
    [
        (["ann"], "--agent takes NAME=END-POINT, got 'ann'"),
        (["=1001"], "--agent takes NAME=END-POINT"),
        (["ann="], "--agent takes NAME=END-POINT"),
        ([], "--agent: no agent is given"),
        (["ann=1001", "ann=1002"], "agent 'ann' is given twice"),
    ],
)
def test_d_ctrl_2_bad_agent_options_are_refused(pairs: list[str], defect: str) -> None:
    with pytest.raises(LocalProtocolError) as excinfo:
        directory_from_pairs(pairs)
    assert defect in excinfo.value.message


TOML = """
[[agents]]
agent = "ann"
name = "Ann Smith"
end-point = "1001"

[[agents]]
agent = "bob"
end-point = "1.2"
"""


def test_d_ctrl_2_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(TOML, encoding="utf-8")
    expected = AgentDirectory(
        (Agent(agent="ann", end_point="1001", name="Ann Smith"), Agent(agent="bob", end_point="1.2"))
    )
    assert expected == load_directory(path)


@pytest.mark.parametrize("wrapped", [False, True], ids=["list", "object"])
def test_d_ctrl_2_a_json_file(tmp_path: Path, wrapped: bool) -> None:
    entries = [{"agent": "ann", "name": "Ann Smith", "end-point": "1001"}]
    path = tmp_path / "agents.json"
    path.write_text(json.dumps({"agents": entries} if wrapped else entries), encoding="utf-8")
    assert directory_from_entries(entries) == load_directory(path)


@pytest.mark.parametrize(
    ("name", "content", "defect"),
    [
        ("agents.yaml", b"- agent: ann\n", "an agent directory is a .toml or .json file"),
        ("agents.json", b"\xff[]", "is not UTF-8 text"),
        ("agents.json", b"[{", "is not JSON"),
        ("agents.json", b"[" * 100_000, "is not JSON"),
        ("agents.json", b'[{"agent": "ann"}]', "agent 1: 'end-point' is missing"),
        ("agents.toml", b"[[agents]\n", "is not TOML"),
        ("agents.toml", b'agent = "ann"\n', "no [[agents]] table"),
        ("agents.toml", b'[[agents]]\nagent = "ann"\nend-point = 1001\n', "must be a non-empty string"),
    ],
)
def test_d_ctrl_2_a_bad_file_is_refused_naming_the_file(
    tmp_path: Path, name: str, content: bytes, defect: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LocalProtocolError) as excinfo:
        load_directory(path)
    assert defect in excinfo.value.message
    assert str(path) in excinfo.value.message


def test_d_ctrl_2_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError, match=r"cannot read .*nothing\.json"):
        load_directory(tmp_path / "nothing.json")


_ids = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'), min_size=1, max_size=8
)


@given(
    st.lists(
        st.tuples(_ids, _ids, st.one_of(st.none(), _ids)), min_size=1, max_size=6, unique_by=lambda t: t[0]
    )
)
def test_d_ctrl_2_a_directory_written_as_json_and_toml_reads_back_the_same(
    entries: list[tuple[str, str, str | None]],
) -> None:
    raw = [{"agent": a, "end-point": e, **({"name": n} if n is not None else {})} for a, e, n in entries]
    expected = directory_from_entries(raw)
    toml = "".join(
        "[[agents]]\n" + "".join(f'{key} = "{value}"\n' for key, value in entry.items()) for entry in raw
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.json").write_text(json.dumps(raw), encoding="utf-8")
        (Path(tmp) / "a.toml").write_text(toml, encoding="utf-8")
        assert expected == load_directory(Path(tmp) / "a.json")
        assert expected == load_directory(Path(tmp) / "a.toml")

"""The README's commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_shows_the_test_command_ci_runs() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = next(i for i, line in enumerate(lines) if "TEST-COMMAND" in line)
    command = lines[marker + 1]
    assert command.startswith("python3 -m venv .venv")
    assert command in (ROOT / "README.md").read_text()


def test_readme_main_job_is_the_demo_and_the_replay_scenario_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    main_job = "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/telephony-fsm demo"
    assert main_job in readme
    assert "adapters/scenarios/full-call.jsonl" in readme
    assert (ROOT / "adapters" / "scenarios" / "full-call.jsonl").is_file()


def test_readme_api_example_runs() -> None:
    """The README's Python example is real: it runs and its asserts hold."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})

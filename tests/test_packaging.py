"""The wheel carries every module and data file the installed command needs.

The wheel is built from a copy of the sources in a temporary directory:
setuptools packs whatever an earlier build left in ``build/lib``, so a build
in the working tree could pass on stale files (and would write into it).
It is built in isolation, with the backend pyproject.toml asks for.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fsm", "adapters")

#: read by the installed command, or by its users next to the package
DATA = ("fsm/py.typed", "adapters/py.typed", "adapters/scenarios/full-call.jsonl")


def wheel_names(tmp_path: Path) -> set[str]:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    done = subprocess.run([*command, "-w", str(out), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_carries_every_module_and_the_data_files(tmp_path: Path) -> None:
    names = wheel_names(tmp_path)
    modules = sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )
    assert "adapters/sip/softphone.py" in modules
    assert [name for name in modules if name not in names] == []
    assert [name for name in DATA if name not in names] == []

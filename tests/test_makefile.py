"""The README's make targets survive an interrupted first run.

A first ``make run`` stopped with Ctrl-C during the pip upgrade left a venv
with ``bin/python`` and no pip; ``make`` took the venv as made and every later
run failed on "pip: not found". The venv target now counts only once pip is
up to date in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(folder), f"PYTHON={sys.executable}", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_a_venv_left_without_pip_is_repaired(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    # What the interrupted run left: a venv whose pip is gone.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True
    )
    python = tmp_path / ".venv" / "bin" / "python"
    assert subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode != 0

    done = _make(tmp_path, ".venv/.venv-ok")
    assert done.returncode == 0, done.stdout + done.stderr
    pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0 and pip.stdout.startswith("pip "), pip.stdout + pip.stderr

    # Made once, it is not made again.
    again = _make(tmp_path, "--question", ".venv/.venv-ok")
    assert again.returncode == 0, again.stdout + again.stderr

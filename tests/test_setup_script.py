"""scripts/dev/setup.sh: the fast path on a complete .venv, and a failing step named loudly."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_failing_step_is_named_and_nothing_marked_done(tmp_path):
    (tmp_path / "scripts" / "dev").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "dev" / "setup.sh", tmp_path / "scripts" / "dev" / "setup.sh")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    r = subprocess.run(["bash", str(tmp_path / "scripts" / "dev" / "setup.sh")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(tmp_path / "no-python")},
                       timeout=120)
    assert r.returncode != 0
    assert "setup: FAILED at step: create virtual environment" in r.stderr
    assert not (tmp_path / ".venv" / ".loce-setup-done").exists()


def test_complete_venv_takes_the_fast_path():
    # `make test` runs the suite right after scripts/dev/setup.sh completed, so its stamp must be current.
    if not (ROOT / ".venv" / ".loce-setup-done").exists():
        pytest.skip(".venv was not made by scripts/dev/setup.sh")
    if (ROOT / ".venv").is_symlink():  # a git worktree sharing another checkout's venv: its stamp is that checkout's
        pytest.skip(".venv is shared with another checkout; running the set-up here would reinstall it")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "dev" / "setup.sh")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "up to date" in r.stdout

"""bench/ and scripts/ stay in proportion: `make bench` runs every bench, each scripts/ folder's README has a line
per file, the shell scripts parse, every bench and experiment starts (``--help``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_DIRS = ("scripts/dev", "scripts/experiments")
PROGRAMS = sorted(str(p.relative_to(ROOT)) for pattern in ("bench/bench_*.py", "bench/run_all.py",
                                                           "scripts/experiments/*.py")
                  for p in ROOT.glob(pattern))


def test_make_bench_runs_every_bench():
    sys.path.insert(0, str(ROOT))
    try:
        from bench import run_all
    finally:
        sys.path.remove(str(ROOT))
    assert run_all.unlisted() == []
    listed = [script for script, _, _ in run_all.BENCHES]
    assert len(listed) == len(set(listed)) and all((ROOT / "bench" / s).is_file() for s in listed)


@pytest.mark.parametrize("folder", SCRIPT_DIRS)
def test_each_scripts_folder_has_a_readme_line_per_file(folder):
    files = sorted(p.name for p in (ROOT / folder).iterdir() if p.is_file() and p.name != "README.md")
    readme = (ROOT / folder / "README.md").read_text().splitlines()
    for name in files:
        assert sum(line.startswith(f"- `{name}`") for line in readme) == 1, f"{folder}/README.md: no line for {name}"
    assert len([line for line in readme if line.startswith("- `")]) == len(files)
    assert not list((ROOT / "scripts").glob("*.*")), "scripts/ holds only dev/ and experiments/"


def test_shell_scripts_parse():
    for script in sorted((ROOT / "scripts" / "dev").glob("*.sh")):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script}: {r.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("program", PROGRAMS)
def test_bench_and_experiment_start(program):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(ROOT / program), "--help"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.cli.completion import FILE_NAMES, SHELLS, generate
from loce_cli.engine.doctor import Check, DoctorReport

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
SMALL = ["--num-classes", "5", "--train-images", "10", "--val-images", "8", "--image-size", "64"]


def _loce(*args, env=None):
    """Run the installed `loce` entry point in a fresh process."""
    exe = Path(sys.executable).with_name("loce")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_importing_the_cli_does_not_import_torch_mmdet_or_mmcv():
    code = ("import sys, loce_cli.cli, loce_cli.cli.app; "
            "print(' '.join(m for m in ('torch', 'mmdet', 'mmcv', 'numpy', 'lvis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_lists_the_implemented_commands():
    r = _loce("--help")
    assert r.returncode == 0
    for name in ("doctor", "data"):
        assert name in r.stdout
    r = _loce("data", "--help")
    assert "synth" in r.stdout and "stats" in r.stdout


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("loce ")


def test_doctor_json_reports_real_environment():
    r = _loce("doctor", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] is True
    assert {c["name"] for c in data["checks"]} >= {"torch", "mmcv-full", "mmdet", "lvis", "numpy"}


def test_doctor_failure_exits_1_with_hint(monkeypatch):
    report = DoctorReport([Check("python", True, True, "3.11"),
                           Check("mmcv-full", False, True, None, "compiled ops do not load", "rebuild it")])
    monkeypatch.setattr("loce_cli.engine.doctor.run_doctor", lambda: report)
    r = runner.invoke(app, ["doctor"])
    assert r.exit_code == 1
    assert "not ready" in r.stdout
    assert "error: mmcv-full: compiled ops do not load (hint: rebuild it)" in r.stderr


def test_synth_then_stats_end_to_end(tmp_path):
    out = tmp_path / "data"
    r = runner.invoke(app, ["data", "synth", "--out", str(out), *SMALL, "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["train"]["images"] == 10 and info["val"]["images"] == 8
    ann = out / "annotations" / "lvis_v1_train.json"
    plot = tmp_path / "stats.png"
    r = runner.invoke(app, ["data", "stats", str(ann), "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    assert "rare" in r.stdout and "head/tail ratio" in r.stdout
    assert plot.stat().st_size > 10_000
    r = runner.invoke(app, ["data", "stats", str(ann), "--json"])
    stats = json.loads(r.stdout)
    assert stats["num_images"] == 10 and sum(g["classes"] for g in stats["groups"].values()) == 5


def test_synth_refuses_non_empty_dir_exit_1(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), *SMALL])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("args", [["--num-classes", "0"], ["--image-size", "10"], ["--num-classes", "999"]])
def test_synth_bad_options_exit_2(tmp_path, args):
    r = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "d"), *args])
    assert r.exit_code == 2
    assert not (tmp_path / "d").exists()


def test_stats_bad_input(tmp_path):
    r = runner.invoke(app, ["data", "stats", str(tmp_path / "missing.json")])
    assert r.exit_code == 1 and "does not exist" in r.stderr
    bad = tmp_path / "trunc.json"
    bad.write_text('{"images": [{"id": 1}')
    r = runner.invoke(app, ["data", "stats", str(bad)])
    assert r.exit_code == 1 and "not valid JSON" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["data", "stats", str(bad), "--plot", str(tmp_path / "x.txt")])
    assert r.exit_code == 2 and not (tmp_path / "x.txt").exists()


def test_debug_shows_traceback(tmp_path):
    r = _loce("--debug", "data", "stats", str(tmp_path / "missing.json"))
    assert r.returncode == 1 and "Traceback" in r.stderr and "DataError" in r.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_scripts_are_up_to_date(shell):
    committed = (ROOT / "completions" / FILE_NAMES[shell]).read_text()
    assert committed == generate(shell), "completions are stale: run `make completions` and commit them"


def test_bash_completion_completes_commands_and_options():
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    script = ROOT / "completions" / "loce.bash"

    def complete(words):
        line = " ".join(words)
        cmd = (f'source "{script}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _loce_complete; '
               'printf "%s\\n" "${COMPREPLY[@]}"')
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout.split()

    assert complete(["loce", "d"]) == ["data", "doctor"]
    assert complete(["loce", "data", "s"]) == ["stats", "synth"]
    assert "--tail-exponent" in complete(["loce", "data", "synth", "--t"])
    assert complete(["loce", "data", "synth", "--out", ""]) == []  # file names (bash default)
    assert "--plot" in complete(["loce", "--debug", "data", "stats", "--"])


def test_module_entry_point_runs():
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "loce_cli", "data", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "synth" in r.stdout


@pytest.mark.parametrize("args", [["data", "stats", "a.json"], ["inspect", "scores", "c.pth"], ["report", "run"]])
def test_plot_needs_an_image_file_name(args, tmp_path):
    from typer.testing import CliRunner

    from loce_cli.cli import app

    target = tmp_path / "plot.txt"
    r = CliRunner().invoke(app, args + ["--plot", str(target)])
    assert r.exit_code == 2 and "unsupported file type .txt" in r.stderr and not target.exists()

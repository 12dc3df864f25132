"""`loce predict` from the command line: exit codes, one-line errors, warnings per bad image."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from loce_cli.cli import app

runner = CliRunner()


def _loce(*args):
    exe = Path(sys.executable).with_name("loce")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600)


def _val_image(data: Path) -> Path:
    ann = json.loads((data / "annotations" / "lvis_v1_val.json").read_text())
    return data / ann["images"][0]["file_name"]


def test_folder_with_bad_images_warns_each_writes_the_good_ones_exits_1(tiny_base_model, tiny_dataset, tmp_path):
    config, ckpt, options = tiny_base_model
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(_val_image(tiny_dataset), folder / "good.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello")
    cfg = [x for o in options for x in ("--cfg-options", o)]
    out = tmp_path / "out"
    r = _loce("predict", str(config), str(ckpt), str(folder), "--out", str(out), "--score-thr", "0.05", *cfg)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith(("warning:", "error:"))]
    assert [line.split(":")[0] for line in lines] == ["warning", "warning", "error"], r.stderr
    assert "empty.jpg is empty" in lines[0] and "text.png is not an image" in lines[1]
    assert "2 of 3 images could not be read" in lines[2] and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "predictions.json"]
    assert "good.jpg" in r.stdout and "written:" in r.stdout
    # the same --out again: refused in one line; --force and --json: exit 0 (in this process: no torch start-up)
    r = runner.invoke(app, ["predict", str(config), str(ckpt), str(folder / "good.jpg"), "--out", str(out), *cfg])
    assert r.exit_code == 1 and r.stderr.strip().startswith("error: --out") and "--force" in r.stderr
    assert r.stderr.count("\n") == 1
    r = runner.invoke(app, ["predict", str(config), str(ckpt), str(folder / "good.jpg"), "--out", str(out), "--force",
                            "--json", *cfg])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["failed"] == [] and [Path(i["output"]).name for i in report["images"]] == ["good.png"]


def test_usage_and_input_errors(tiny_base_model, tiny_dataset, tmp_path):
    config, ckpt, options = tiny_base_model
    image = str(_val_image(tiny_dataset))
    out = str(tmp_path / "o")
    r = runner.invoke(app, ["predict", str(config), str(ckpt), image, "--out", out, "--split", "medium"])
    assert r.exit_code == 2 and "unknown split" in r.stderr
    r = runner.invoke(app, ["predict", str(config), str(ckpt), image, "--out", out, "--score-thr", "1.5"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["predict", str(config), str(tmp_path / "missing.pth"), image, "--out", out])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    (tmp_path / "x.jpg").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    cfg = [x for o in options for x in ("--cfg-options", o)]
    r = runner.invoke(app, ["predict", str(config), str(ckpt), str(tmp_path / "x.jpg"), "--out", out, *cfg])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "x.jpg" in r.stderr, r.stderr
    r = runner.invoke(app, ["predict", str(config), str(ckpt), str(tmp_path / "*.gif"), "--out", out])
    assert r.exit_code == 1 and "no file matches" in r.stderr
    assert not Path(out).exists()

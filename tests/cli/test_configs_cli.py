"""``loce configs`` and CONFIG names at the command line, run from a folder without configs/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(f"{p.parent.name}/{p.stem}" for group in ("lvis", "synthetic")
               for p in (ROOT / "configs" / group).glob("*.py"))


def _loce(*args, cwd):
    exe = Path(sys.executable).with_name("loce")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_configs_lists_every_shipped_config_with_its_description_without_torch(tmp_path):
    code = ("import sys, json; from typer.testing import CliRunner; from loce_cli.cli.app import app; "
            "r = CliRunner().invoke(app, ['configs', '--json']); assert r.exit_code == 0, r.output; "
            "print(json.dumps(dict(doc=json.loads(r.stdout), torch='torch' in sys.modules, mmcv='mmcv' in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    got = json.loads(r.stdout)
    assert not got["torch"] and not got["mmcv"]  # listing reads the files' first lines only
    doc = got["doc"]
    assert Path(doc["root"]) == (ROOT / "configs").resolve()
    assert sorted(c["name"] for c in doc["configs"]) == FILES
    by_name = {c["name"]: c for c in doc["configs"]}
    paper = by_name["lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1"]
    assert (paper["stage"], paper["dataset"], paper["backbone"], paper["command"]) == \
        (2, "LVIS v1", "R50-FPN", "loce finetune")
    assert by_name["synthetic/mask_rcnn_r18_fpn_normed_synth"]["command"] == "loce train base"
    assert all(Path(c["path"]).is_file() and c["summary"] for c in doc["configs"])

    text = _loce("configs", cwd=tmp_path)
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    for name, c in by_name.items():
        i = lines.index(f"  {name}")  # the name alone on its line, to copy
        assert lines[i + 1].strip() == f"{c['dataset']}, {c['backbone']}: {c['summary']}"
    assert "lvis, stage 1 (loce train base):" in lines and "synthetic, stage 2 (loce finetune):" in lines


def test_a_wrong_name_is_one_line_with_the_nearest_names(tmp_path):
    r = _loce("train", "base", "lvis/mask_rcnn_r50_fpn_normed_2x_lvis", cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: config lvis/mask_rcnn_r50_fpn_normed_2x_lvis does not exist (no such file")
    assert "lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1" in r.stderr and "`loce configs`" in r.stderr
    # the case: the checkout-relative path, from elsewhere, is the shipped file
    r = _loce("finetune", "configs/synthetic/loce_mask_rcnn_r18_fpn_normed_synth.py", "--from", "x.pth",
              "--work-dir", tmp_path / "w", cwd=tmp_path)
    assert r.returncode == 1 and "work/quickstart/data/annotations/lvis_v1_train.json does not exist" in r.stderr

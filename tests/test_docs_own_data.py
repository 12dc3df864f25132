"""docs/DATA.md "Your own data": the box-only walkthrough, from data to predict, run exactly as the doc writes it
(each line of its code block, in a fresh folder), then what each step left checked: a Faster R-CNN with the LOCE
box head trained on the data's 8 classes, box-only evaluation with per-group AP, class names and groups from the
data in the checkpoint, pictures and predictions.json."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "DATA.md"


def walkthrough() -> list:
    """The commands of the first ```bash block of the "## Your own data" section."""
    text = DOC.read_text()
    section = text.split("\n## Your own data\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_walkthrough_is_what_a_user_types():
    lines = walkthrough()
    assert all(line.startswith("loce ") for line in lines)
    assert [line.split()[1] for line in lines] == ["data", "train", "finetune", "eval", "report", "inspect",
                                                    "inspect", "predict"]
    assert "--no-masks" in lines[0] and all("--data mydata" in line for line in lines[1:4] + lines[-1:])


@pytest.mark.slow
def test_the_box_only_walkthrough_runs_as_written(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    outputs = []
    for line in walkthrough():
        args = shlex.split(line)
        r = subprocess.run([sys.executable, "-m", "loce_cli", *args[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
        outputs.append(r.stdout)
    meta = json.loads((tmp_path / "runs/box_loce/eval/metrics.json").read_text())
    assert "bbox" in json.dumps(meta) and "segm" not in meta.get("metrics", {})  # a box-only model: boxes
    import torch

    ckpt = torch.load(tmp_path / "runs/box_loce/latest.pth", map_location="cpu", weights_only=False)
    data = json.loads((tmp_path / "mydata/annotations/lvis_v1_train.json").read_text())
    cats = sorted(data["categories"], key=lambda c: c["id"])
    assert list(ckpt["meta"]["CLASSES"]) == [c["name"] for c in cats]  # names and groups from the data
    assert list(ckpt["meta"]["class_frequency"]) == [c["frequency"] for c in cats]
    assert ckpt["state_dict"]["roi_head.bbox_head.fc_cls.weight"].shape[0] == 9
    assert not any(k.startswith("roi_head.mask_head") for k in ckpt["state_dict"])
    assert "rare" in outputs[4].lower() or "APr" in outputs[4]
    preds = json.loads((tmp_path / "runs/box_predict/predictions.json").read_text())
    assert isinstance(preds, list) and all("segmentation" not in p for p in preds)
    assert len(list((tmp_path / "runs/box_predict").glob("*.jpg"))) + \
        len(list((tmp_path / "runs/box_predict").glob("*.png"))) == 20

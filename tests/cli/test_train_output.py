"""What a real `loce train base` prints in a pipe (a subprocess, stdout and stderr not a terminal): a few plain
lines, a progress line every N iterations, the final loss and the next command; mmcv's hook table, its
per-parameter init log and the per-iteration log lines only in the log file (also on the terminal with
--verbose). Also the small summary pieces (next command, carried options) without a training."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
LOCE = ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py"
HOOK_TABLE = ("(VERY_HIGH   )", "before_run:", "Hooks will be executed")
INIT_LOG = ("KaimingInit", "initialize ResNet with init_cfg", "Name of parameter - Initialization information")


def _train(data: Path, work: Path, *extra: str, per_gpu: int = 4):
    from tests.conftest import tiny_train_options

    options = [o for o in tiny_train_options(data) if not o.startswith("data.samples_per_gpu")]
    cmd = [sys.executable, "-m", "loce_cli", "train", "base", str(BASE), "--work-dir", str(work), *extra,
           "--cfg-options", *options, f"data.samples_per_gpu={per_gpu}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600)


def _log_text(work: Path) -> str:
    logs = [p for p in work.glob("*.log")]
    assert len(logs) == 1, logs
    return logs[0].read_text()


@pytest.mark.slow
def test_a_piped_training_prints_a_few_lines_and_logs_the_rest(tiny_dataset, tmp_path):
    r = _train(tiny_dataset, tmp_path / "run")
    assert r.returncode == 0, r.stderr
    shown = r.stdout + r.stderr
    for text in HOOK_TABLE + INIT_LOG + ("Epoch [1][5/10]", "Saving checkpoint"):
        assert text not in shown, text
    log = _log_text(tmp_path / "run")
    for text in HOOK_TABLE + INIT_LOG + ("Epoch [1][5/10]", "Saving checkpoint at 1 epochs"):
        assert text in log, text
    lines = shown.splitlines()
    progress = [ln for ln in lines if ln.startswith("epoch 1/1  iter ")]
    assert [ln.split("  ")[1] for ln in progress] == ["iter 5/10 (50%)", "iter 10/10 (100%)"]  # log interval 5
    first = r.stderr.splitlines()[0]
    assert first.startswith("training (base): ") and str(tmp_path / "run") in first
    final = [ln for ln in lines if ln.startswith("final loss: ")]
    assert final and 0.0 < float(final[0].split()[2]) < 20.0
    nxt = [ln for ln in lines if ln.startswith("next: ")]
    assert len(nxt) == 1 and nxt[0].startswith(
        f"next: loce finetune {LOCE} --from {tmp_path / 'run' / 'epoch_1.pth'} --cfg-options ")
    assert "data.train.ann_file=" in nxt[0] and "runner.max_epochs" not in nxt[0]
    assert len(lines) <= 12, shown


@pytest.mark.slow
def test_verbose_puts_mmcv_s_log_on_the_terminal_too(tiny_dataset, tmp_path):
    """Every log record (mmcv writes its per-parameter init table straight into the log file, not as records)."""
    r = _train(tiny_dataset, tmp_path / "run", "--verbose", per_gpu=8)
    assert r.returncode == 0, r.stderr
    for text in HOOK_TABLE + ("initialize ResNet with init_cfg", "Epoch [1][5/5]", "Saving checkpoint"):
        assert text in r.stderr, text
    log = _log_text(tmp_path / "run")
    assert "Epoch [1][5/5]" in log and "KaimingInit" in log
    assert "(VERY_HIGH   )" not in r.stdout  # stdout keeps the result only


def test_next_command_carries_the_data_and_model_options_not_the_schedule(tmp_path):
    from loce_cli.engine.training.next_step import next_command

    opts = ["data.train.ann_file=/d/a b.json", "runner.max_epochs=1", "data.samples_per_gpu=4",
            "model.roi_head.bbox_head.num_classes=6", "optimizer.lr=0.1", "model.roi_head.mask_head=None",
            "lr_config.step=[1]", "custom_hooks=[]"]
    cmd = next_command("base", str(BASE), "/w/epoch_1.pth", "/w", opts)
    assert cmd == (f"loce finetune {LOCE} --from /w/epoch_1.pth --cfg-options 'data.train.ann_file=/d/a b.json' "
                   "data.samples_per_gpu=4 model.roi_head.bbox_head.num_classes=6 model.roi_head.mask_head=None")
    # --data travels as --data (its own options are not repeated: the caller passes the user's options only)
    assert next_command("base", "synthetic/faster_rcnn_r18_fpn_synth", "b.pth", "w", ["data.workers_per_gpu=0"],
                        data_dir="my data") == ("loce finetune synthetic/loce_faster_rcnn_r18_fpn_synth --from b.pth "
                                                "--data 'my data' --cfg-options data.workers_per_gpu=0")
    assert next_command("finetune", "synthetic/loce_faster_rcnn_r18_fpn_synth", "w/e.pth", "w", [], "d") == \
        "loce eval synthetic/loce_faster_rcnn_r18_fpn_synth w/e.pth --out w/eval --data d"
    assert next_command("finetune", str(LOCE), "/w/epoch_2.pth", "/w") == \
        f"loce eval {LOCE} /w/epoch_2.pth --out /w/eval"
    lvis = ROOT / "configs" / "lvis"
    assert next_command("base", str(lvis / "mask_rcnn_r50_fpn_normed_2x_lvis_v0.5.py"), "b.pth", "w") == \
        f"loce finetune {lvis / 'loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5.py'} --from b.pth"
    assert next_command("base", "lvis/mask_rcnn_r101_fpn_normed_2x_lvis_v1", "b.pth", "w") == \
        "loce finetune lvis/loce_mask_rcnn_r101_fpn_normed_6e_lvis_v1 --from b.pth"  # a name gets a name
    other = tmp_path / "my_base.py"
    other.write_text("")
    assert next_command("base", str(other), "/w/e.pth", "/w").startswith("loce finetune LOCE_CONFIG --from /w/e.pth")
    assert next_command("base", str(BASE), "", "/w") == ""  # no checkpoint: nothing to suggest

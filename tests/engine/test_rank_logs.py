"""``--nproc 2``: the ranks' mmcv log records (the per-parameter "initialize ..." lines among them) go where a
single process's go — rank 0's log file, not the terminal (issue 31). A real two-process run, its stderr read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_train_options

BASE = "synthetic/mask_rcnn_r18_fpn_normed_synth"


@pytest.mark.slow
def test_two_process_training_keeps_mmcv_info_records_off_the_terminal(tiny_dataset, tmp_path):
    work = tmp_path / "run"
    options = [o for o in tiny_train_options(tiny_dataset, epochs=1)]
    args = [sys.executable, "-m", "loce_cli", "train", "base", BASE, "--work-dir", str(work), "--nproc", "2",
            "--device", "cpu", "--master-port", "29817"]
    for o in options + ["data.samples_per_gpu=2"]:
        args += ["--cfg-options", o]
    r = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    terminal = r.stdout + r.stderr
    assert " - INFO - " not in terminal, [line for line in terminal.splitlines() if " - INFO - " in line][:5]
    assert "initialize" not in terminal
    log = next(work.glob("*.log")).read_text()
    assert "initialize" in log  # the records are kept, in the log as in a single-process run

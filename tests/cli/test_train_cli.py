"""CLI layer of train base / finetune / quickstart: argument mapping (engine patched) and real error paths."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.training.run import TrainResult

ROOT = Path(__file__).resolve().parents[2]
BASE = str(ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py")
LOCE = str(ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py")
runner = CliRunner()


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_train(req):
        seen["req"] = req
        return TrainResult(work_dir=req.work_dir or "w", checkpoint="w/epoch_1.pth", epochs=1, iterations=3,
                           seconds=1.0, world_size=req.launch.procs_per_node() * req.launch.nnodes,
                           device=req.launch.resolved_device())

    monkeypatch.setattr("loce_cli.engine.training.run.train", fake_train)
    return seen


def test_train_base_maps_options(captured):
    r = runner.invoke(app, ["train", "base", BASE, "--work-dir", "runs/a", "--nproc", "2", "--device", "cpu",
                            "--cfg-options", "runner.max_epochs=2", "--cfg-options", "optimizer.lr=0.01",
                            "--seed", "7", "--resume", "--tensorboard", "--no-validate"])
    assert r.exit_code == 0, r.output
    req = captured["req"]
    assert req.stage == "base" and req.work_dir == "runs/a" and req.seed == 7 and req.resume == "auto"
    assert req.tensorboard and req.no_validate
    assert req.cfg_options == ["runner.max_epochs=2", "optimizer.lr=0.01"]
    assert req.launch.nproc == 2 and req.launch.device == "cpu"
    assert "2 process(es)" in r.stdout


def test_finetune_maps_from_and_launch(captured):
    r = runner.invoke(app, ["finetune", LOCE, "--from", "base/epoch_6.pth", "--gpus", "8", "--nnodes", "2",
                            "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29600"])
    assert r.exit_code == 0, r.output
    req = captured["req"]
    assert req.stage == "finetune" and req.base_checkpoint == "base/epoch_6.pth" and not req.tensorboard
    assert not req.no_validate  # the config's evaluation interval is honoured unless --no-validate
    assert (req.launch.gpus, req.launch.nnodes, req.launch.node_rank) == (8, 2, 1)
    assert (req.launch.master_addr, req.launch.master_port) == ("10.0.0.1", 29600)


def test_only_rank_zero_reports(monkeypatch):
    # under srun every task is a `loce` process on one shared stdout: ranks other than 0 stay off stdout
    def fake_train(req):
        return TrainResult(work_dir="w", checkpoint="w/epoch_1.pth", epochs=1, iterations=3, seconds=1.0,
                           world_size=2, device="cpu", rank=1)

    monkeypatch.setattr("loce_cli.engine.training.run.train", fake_train)
    r = runner.invoke(app, ["train", "base", BASE, "--launcher", "slurm", "--json"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and "rank 1: done" in r.stderr


def test_evaluations_during_training_are_reported(monkeypatch):
    def fake_train(req):
        return TrainResult(work_dir="w", checkpoint="w/epoch_2.pth", epochs=2, iterations=6, seconds=1.0,
                           world_size=1, device="cpu",
                           evaluations={"2": {"bbox": {"AP": 0.1234}, "segm": {"AP": 0.1}}})

    monkeypatch.setattr("loce_cli.engine.training.run.train", fake_train)
    r = runner.invoke(app, ["train", "base", BASE])
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())  # rich wraps at the terminal width
    assert "evaluation after epoch 2: bbox AP 12.3, segm AP 10.0 (w/eval_epoch_2/metrics.json)" in text


def test_finetune_without_from_is_usage_error():
    r = runner.invoke(app, ["finetune", LOCE])
    assert r.exit_code == 2


@pytest.mark.parametrize("args,code,text", [
    (["train", "base", "missing.py"], 1, "does not exist"),
    (["train", "base", BASE, "--cfg-options", "runner.nope=1"], 2, "does not exist"),
    (["train", "base", BASE, "--cfg-options", "novalue"], 2, "KEY=VALUE"),
    (["train", "base", BASE, "--gpus", "2"], 2, "CUDA device"),
    (["train", "base", BASE, "--launcher", "mpi"], 2, "--launcher"),
    (["finetune", LOCE, "--from", "nope.pth", "--cfg-options", "data.train.ann_file=" + BASE,
      "--cfg-options", "data.train.img_prefix=/"], 1, "checkpoint nope.pth does not exist"),
])
def test_real_errors_are_one_line(args, code, text, tmp_path):
    r = runner.invoke(app, args + ["--work-dir", str(tmp_path / "w")])
    assert r.exit_code == code, r.output
    assert text in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_malformed_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("model = dict(type='X'\n")
    r = runner.invoke(app, ["train", "base", str(bad), "--work-dir", str(tmp_path / "w")])
    assert r.exit_code == 1 and "syntax error" in r.stderr and "Traceback" not in r.output


def test_non_finite_loss_hook_names_the_iteration():
    import math

    import torch

    from loce_cli.mmdet_ext.runner.loss_guard import NonFiniteLossError, NonFiniteLossHook

    class FakeRunner:
        iter, epoch = 41, 2
        outputs = {"loss": torch.tensor(math.nan), "log_vars": {"loss_cls": math.nan, "loss_bbox": 0.3}}

    with pytest.raises(NonFiniteLossError, match="iteration 42 \\(epoch 3\\)") as info:
        NonFiniteLossHook().after_train_iter(FakeRunner())
    assert "loss_cls=nan" in str(info.value)
    FakeRunner.outputs = {"loss": torch.tensor(1.0), "log_vars": {}}
    NonFiniteLossHook().after_train_iter(FakeRunner())  # finite: no error

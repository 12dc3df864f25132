"""Real training on a tiny synthetic set (CPU): base, LOCE fine-tune, resume, checkpoints, bad input."""

import json
from pathlib import Path

import pytest
import torch

from loce_cli.engine.training.run import LaunchOptions, TrainRequest, train
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
LOCE = ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py"


def opts(data: Path, classes: int = 6, epochs: int = 1, extra=()):
    ann = data / "annotations"
    o = [f"data.train.ann_file={ann / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/",
         f"model.roi_head.bbox_head.num_classes={classes}", f"model.roi_head.mask_head.num_classes={classes}",
         f"runner.max_epochs={epochs}", "data.samples_per_gpu=4", "data.workers_per_gpu=0",
         "lr_config.warmup_iters=5", "log_config.interval=5"]
    return o + list(extra)


def _state(path):
    return torch.load(str(path), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def base_run(tiny_base_run):
    """The session's base run (tests/conftest.py: 2 epochs, --tensorboard); its epoch_1.pth is the fine-tunes' base."""
    return tiny_base_run.work, tiny_base_run.result


def test_base_training_writes_checkpoint_with_meta(base_run, tiny_dataset):
    work, result = base_run
    assert result.epochs == 2 and result.iterations == 20 and result.world_size == 1
    ckpt = _state(work / "epoch_2.pth")
    meta = ckpt["meta"]
    cats = json.loads((tiny_dataset / "annotations" / "lvis_v1_train.json").read_text())["categories"]
    assert meta["CLASSES"] == tuple(c["name"] for c in cats)
    assert meta["class_frequency"] == tuple(c["frequency"] for c in cats)
    assert meta["class_instance_count"] == tuple(c["instance_count"] for c in cats)
    assert "LoceMaskRCNN" in meta["config"] and meta["mmdet_version"].startswith("2.")
    assert "optimizer" in ckpt and (work / "latest.pth").resolve() == (work / "epoch_2.pth").resolve()
    assert _state(work / "epoch_1.pth")["meta"]["CLASSES"] == meta["CLASSES"]
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]
    assert list(work.glob("*.log.json"))  # plain JSON-lines log
    events = list((work / "tf_logs").glob("events.out.tfevents.*"))  # --tensorboard
    assert events and events[0].stat().st_size > 100


def test_finetune_fills_memory_freezes_and_trains(tiny_loce_run, tiny_base_run):
    """The session's LOCE fine-tune (tests/conftest.py: 1 epoch from the base run's last checkpoint)."""
    result = tiny_loce_run.result
    assert result.epochs == 1 and result.iterations == 10
    assert result.memory_init and result.memory_init["images"] > 0
    state = _state(Path(result.checkpoint))["state_dict"]
    base_state = _state(tiny_base_run.checkpoint)["state_dict"]
    assert int(state["roi_head.memory.counts"].sum()) > 0
    scores = state["roi_head.bbox_head.score_tracker.scores"]
    assert not torch.allclose(scores[:-1], torch.full_like(scores[:-1], 0.01))
    # frozen parts unchanged, trained parts changed
    assert torch.equal(state["backbone.conv1.weight"], base_state["backbone.conv1.weight"])
    assert torch.equal(state["roi_head.bbox_head.shared_fcs.0.weight"], base_state["roi_head.bbox_head.shared_fcs.0.weight"])
    assert not torch.equal(state["roi_head.bbox_head.fc_cls.weight"], base_state["roi_head.bbox_head.fc_cls.weight"])
    # the inspect commands read this real checkpoint
    from loce_cli.engine.inspect.state import inspect_memory, inspect_scores

    report = inspect_scores(Path(result.checkpoint), lowest=3)
    assert len(report.lowest) == 3 and all(c.train_instances for c in report.classes)
    assert inspect_memory(Path(result.checkpoint)).stored_features == int(state["roi_head.memory.counts"].sum())


@pytest.mark.slow
def test_resume_continues_exactly(tiny_loce_run, tiny_base_run, tiny_dataset, tmp_path):
    """2 epochs straight against the session's 1-epoch fine-tune (copied: the copy is resumed) resumed to 2."""
    import shutil

    from tests.conftest import tiny_train_options

    base_ckpt = str(tiny_base_run.checkpoint)  # the fine-tune's base
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    train(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(straight), base_checkpoint=base_ckpt,
                       cfg_options=tiny_train_options(tiny_dataset, epochs=2)))
    shutil.copytree(tiny_loce_run.work, split, symlinks=True)  # the 1-epoch run (tiny_train_options(epochs=1))
    resumed = train(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(split), base_checkpoint=base_ckpt,
                                 resume="auto", cfg_options=tiny_train_options(tiny_dataset, epochs=2)))
    assert resumed.memory_init is None  # memory restored, initialisation skipped
    a = _state(straight / "epoch_2.pth")["state_dict"]
    b = _state(split / "epoch_2.pth")["state_dict"]
    # bit-exact: weights, mean scores, memory (unwritten slots hold no data and are never read)
    filled = a["roi_head.memory.flat_labels"] >= 0
    assert int(filled.sum()) > 0
    for key in a:
        x, y = (a[key][filled], b[key][filled]) if key.endswith("flat_feats") else (a[key], b[key])
        assert torch.equal(x, y), key


def _test_opts(data: Path):
    ann = data / "annotations" / "lvis_v1_val.json"
    return [f"data.test.ann_file={ann}", f"data.test.img_prefix={data}/"]


@pytest.mark.slow
def test_evaluation_during_training_equals_loce_eval(tiny_dataset, tmp_path):
    """evaluation.interval=1 over 2 epochs: rank 0 writes WORK_DIR/eval_epoch_{1,2}/metrics.json, the same report
    (and the same results file) as `loce eval` on those checkpoints."""
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model, read_report

    work = tmp_path / "run"
    options = opts(tiny_dataset, epochs=2, extra=_test_opts(tiny_dataset) + ["evaluation.interval=1"])
    result = train(TrainRequest(config=str(BASE), work_dir=str(work), cfg_options=options))
    assert sorted(result.evaluations) == ["1", "2"]
    assert sorted(p.name for p in work.glob("eval_epoch_*")) == ["eval_epoch_1", "eval_epoch_2"]
    for epoch in (1, 2):
        during = read_report(work / f"eval_epoch_{epoch}" / "metrics.json")
        ckpt = work / f"epoch_{epoch}.pth"
        assert during.checkpoint == str(ckpt) and set(during.metrics) == {"bbox", "segm"}
        after = evaluate_model(EvalRequest(str(BASE), str(ckpt), str(tmp_path / f"eval{epoch}"), cfg_options=options))
        for metric in ("bbox", "segm"):
            assert during.metrics[metric].summary == after.metrics[metric].summary, (epoch, metric)
            assert during.metrics[metric].per_class == after.metrics[metric].per_class
            assert result.evaluations[str(epoch)][metric] == after.metrics[metric].summary
        assert (work / f"eval_epoch_{epoch}" / "results.json").read_bytes() == \
            (tmp_path / f"eval{epoch}" / "results.json").read_bytes()
    # the two epochs' models differ, and so do their reports
    assert read_report(work / "eval_epoch_1" / "metrics.json").metrics["bbox"].summary != \
        read_report(work / "eval_epoch_2" / "metrics.json").metrics["bbox"].summary
    # --force starts over: the old evaluations go with the old checkpoints
    train(TrainRequest(config=str(BASE), work_dir=str(work), force=True, no_validate=True,
                       cfg_options=opts(tiny_dataset, extra=_test_opts(tiny_dataset) + ["evaluation.interval=1"])))
    assert not list(work.glob("eval_epoch_*"))


def test_no_validate_skips_the_evaluation(tiny_base_run):
    """The session's base run was trained with evaluation.interval=1 (and a test set) under --no-validate."""
    work, result = tiny_base_run.work, tiny_base_run.result
    assert "evaluation.interval=1" in tiny_base_run.options and "data.test.ann_file" in " ".join(tiny_base_run.options)
    assert result.epochs == 2 and result.evaluations is None
    assert (work / "epoch_1.pth").is_file() and (work / "epoch_2.pth").is_file()
    assert not list(work.glob("eval_epoch_*"))


def test_evaluation_settings_are_checked_before_training(tiny_dataset, tmp_path):
    work = tmp_path / "w"
    with pytest.raises(DataError, match="evaluates every 1 epoch.*/nonexistent/val.json do not exist") as info:
        train(TrainRequest(config=str(BASE), work_dir=str(work), cfg_options=opts(tiny_dataset) + [
            "evaluation.interval=1", "data.test.ann_file=/nonexistent/val.json"]))
    assert "--no-validate" in info.value.hint
    # with --no-validate, or an interval the run never reaches, the test set is not needed
    from loce_cli.engine.training.run import validate

    validate(TrainRequest(config=str(BASE), no_validate=True, cfg_options=opts(tiny_dataset) + [
        "evaluation.interval=1", "data.test.ann_file=/nonexistent/val.json"]))
    validate(TrainRequest(config=str(BASE), cfg_options=opts(tiny_dataset) + [
        "evaluation.interval=2", "data.test.ann_file=/nonexistent/val.json"]))
    for setting, message in [("interval=1, save_best='auto'", "sets save_best, which loce does not support"),
                             ("interval=1, metric=['bbox', 'proposal']", r"evaluation.metric \['proposal'\]")]:
        user = tmp_path / "user_config.py"  # an mmdet user's evaluation settings
        user.write_text(f"_base_ = [{str(BASE)!r}]\nevaluation = dict({setting})\n")
        with pytest.raises(LoceUsageError, match=message):
            train(TrainRequest(config=str(user), work_dir=str(work), cfg_options=opts(tiny_dataset)))
    with pytest.raises(LoceUsageError, match="interval must be"):
        train(TrainRequest(config=str(BASE), work_dir=str(work), cfg_options=opts(tiny_dataset) + [
            "evaluation.interval=0"]))
    assert not work.exists()


def test_existing_run_needs_resume_or_force(base_run, tiny_dataset):
    work, _ = base_run
    with pytest.raises(OutputExistsError, match="already holds a run"):
        train(TrainRequest(config=str(BASE), work_dir=str(work), cfg_options=opts(tiny_dataset)))


def test_bad_requests(tiny_dataset, tmp_path, base_run):
    with pytest.raises(DataError, match="does not exist"):
        train(TrainRequest(config=str(tmp_path / "nope.py"), work_dir=str(tmp_path / "w")))
    with pytest.raises(LoceUsageError, match="does not exist"):
        train(TrainRequest(config=str(BASE), work_dir=str(tmp_path / "w"),
                           cfg_options=opts(tiny_dataset) + ["runner.max_epochz=2"]))
    with pytest.raises(LoceUsageError, match="GPU"):
        train(TrainRequest(config=str(BASE), work_dir=str(tmp_path / "w"), cfg_options=opts(tiny_dataset),
                           launch=LaunchOptions(gpus=2)))
    with pytest.raises(DataError, match="training data"):
        train(TrainRequest(config=str(BASE), work_dir=str(tmp_path / "w"),
                           cfg_options=["data.train.ann_file=/nonexistent/train.json"]))
    mixed = tmp_path / "fp16_synth.py"  # mmdet's mixed-precision switch on the CPU: refused (fp16 needs CUDA)
    mixed.write_text(f"_base_ = [{str(BASE)!r}]\nfp16 = dict(loss_scale=512.0)\n")
    with pytest.raises(DataError, match="fp16 mixed precision, which needs a CUDA GPU"):
        train(TrainRequest(config=str(mixed), work_dir=str(tmp_path / "w"), cfg_options=opts(tiny_dataset)))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        train(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "w"),
                           base_checkpoint=str(junk), cfg_options=opts(tiny_dataset)))
    # a 7-class config on this 6-class data is refused before the checkpoint is read (data prep's check) ...
    with pytest.raises(DataError, match="num_classes is 7 but .* has 6 classes"):
        train(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "w"),
                           base_checkpoint=str(base_run[0] / "epoch_1.pth"), cfg_options=opts(tiny_dataset, classes=7)))
    assert not (tmp_path / "w").exists()  # nothing written for refused requests
    # ... and a base checkpoint of another class count is refused by the checkpoint check itself
    from loce_cli.engine.config.loading import load_config
    from loce_cli.engine.training.run import check_base_checkpoint

    with pytest.raises(DataError, match="trained for 6 classes"):
        check_base_checkpoint(base_run[0] / "epoch_1.pth", load_config(LOCE, opts(tiny_dataset, classes=7)))


def test_checkpoint_write_is_atomic(base_run, monkeypatch, tmp_path):
    """A crash while writing leaves the previous checkpoint intact and no partial file under the real name."""
    import mmcv.runner.checkpoint as ck

    import loce_cli.mmdet_ext.runner.epoch_runner as epoch_runner

    work = tmp_path / "run"
    work.mkdir()
    good = base_run[0] / "epoch_1.pth"
    (work / "epoch_1.pth").write_bytes(good.read_bytes())
    before = (work / "epoch_1.pth").read_bytes()

    def crash(model, filename, optimizer=None, meta=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(epoch_runner, "save_checkpoint", crash)

    class FakeRunner(epoch_runner.LoceEpochBasedRunner):
        def __init__(self):
            self._epoch, self._iter, self.meta, self.model, self.optimizer = 0, 10, {}, None, None

    with pytest.raises(OSError):
        FakeRunner().save_checkpoint(str(work), filename_tmpl="epoch_{}.pth")
    assert (work / "epoch_1.pth").read_bytes() == before
    assert sorted(p.name for p in work.iterdir()) == ["epoch_1.pth"]
    assert ck  # mmcv's own writer is what the runner uses normally


@pytest.mark.slow
def test_two_cpu_processes_finetune(base_run, tiny_dataset, tmp_path):
    result = train(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path),
                                base_checkpoint=str(base_run[0] / "epoch_1.pth"),
                                cfg_options=opts(tiny_dataset, extra=["data.samples_per_gpu=2", "evaluation.interval=1"]
                                                 + _test_opts(tiny_dataset)),
                                launch=LaunchOptions(nproc=2, master_port=29731)))
    assert result.world_size == 2 and result.iterations == 10  # 40 images / (2 x 2) per step
    # rank 0 evaluated while rank 1 waited; the report is the run's result
    assert set(result.evaluations["1"]) == {"bbox", "segm"} and (tmp_path / "eval_epoch_1" / "metrics.json").is_file()
    state = _state(Path(result.checkpoint))["state_dict"]
    assert int(state["roi_head.memory.counts"].sum()) > 0
    log = next(tmp_path.glob("*.log")).read_text()
    assert "2 process(es), cpu" in log
    # torch DDP over gloo, mmdet's unused-parameter default, the per-rank memory never broadcast
    assert "model wrapper: LoceDistributedDataParallel (torch DDP, gloo, find_unused_parameters=False, " \
           "broadcast_buffers=False)" in log


@pytest.mark.slow
def test_two_nodes_on_one_machine(base_run, tiny_dataset, tmp_path):
    """--nnodes 2 --node-rank 0/1 with the same master: the multi-node launch path, here over loopback."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("loce")
    args = [str(exe), "finetune", str(LOCE), "--from", str(base_run[0] / "epoch_1.pth"), "--nnodes", "2",
            "--master-port", "29741", "--json"]
    for o in opts(tiny_dataset, extra=["data.samples_per_gpu=2"]):
        args += ["--cfg-options", o]
    procs = [subprocess.Popen(args + ["--node-rank", str(r), "--work-dir", str(tmp_path / f"node{r}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    node0 = json.loads(outs[0][0])
    assert node0["world_size"] == 2 and node0["iterations"] == 10
    assert (tmp_path / "node0" / "epoch_1.pth").is_file()
    assert "node 0 writes the checkpoints" in json.loads(outs[1][0])["note"]


def _slurm_up() -> bool:
    import shutil
    import subprocess

    if not (shutil.which("srun") and shutil.which("sinfo")):
        return False
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(s.strip() in ("idle", "mix", "alloc") for s in states.splitlines())


def _two_tasks_finetune_and_eval(prefix, launcher, base_run, tiny_dataset, tmp_path):
    """Fine-tune, then evaluate, as two tasks that an outside launcher started (``prefix(port)`` + the `loce`
    command line each): every task is a `loce` process; only rank 0 prints the --json result."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "RANK", "WORLD_SIZE"))}
    env["OMP_NUM_THREADS"] = "1"

    def run(port, args, options):
        args += ["--launcher", launcher, "--master-port", str(port), "--json"]
        for o in options:
            args += ["--cfg-options", o]
        proc = subprocess.run(prefix(port) + args, capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout), proc.stderr  # one document: rank 1 reports on stderr only

    result, err = run(29761, ["finetune", str(LOCE), "--from", str(base_run[0] / "epoch_1.pth"), "--work-dir",
                              str(tmp_path / "loce")],
                      opts(tiny_dataset, extra=["data.samples_per_gpu=2"]))
    assert result["world_size"] == 2 and result["iterations"] == 10 and result["rank"] == 0
    assert "rank 1: done" in err
    state = _state(Path(result["checkpoint"]))["state_dict"]
    assert int(state["roi_head.memory.counts"].sum()) > 0
    log = next((tmp_path / "loce").glob("*.log")).read_text()
    assert "2 process(es), cpu" in log and "LoceDistributedDataParallel (torch DDP, gloo" in log

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    report, err = run(29763, ["eval", str(LOCE), result["checkpoint"], "--out", str(tmp_path / "eval"),
                              "--evaluator", "lvis"],
                      opts(tiny_dataset) + [f"data.test.ann_file={ann}", f"data.test.img_prefix={tiny_dataset}/"])
    assert set(report["metrics"]) == {"bbox", "segm"} and "rank 1: inference done" in err
    dets = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {d["image_id"] for d in dets} <= {img["id"] for img in json.loads(ann.read_text())["images"]}


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_two_tasks_finetune_and_eval(base_run, tiny_dataset, tmp_path):
    """Real srun, two tasks, --launcher slurm: ranks, world size and master from Slurm's environment (the
    master through `scontrol show hostnames`), gloo on the CPU."""
    import sys

    if not _slurm_up():
        pytest.skip("no Slurm controller with an idle node (bash scripts/dev/slurm_local.sh start)")
    exe = str(Path(sys.executable).with_name("loce"))
    # --immediate: fail, not wait, on a node without 2 free CPUs
    _two_tasks_finetune_and_eval(lambda port: ["srun", "-n", "2", "--kill-on-bad-exit=1", "--immediate=120", exe],
                                 "slurm", base_run, tiny_dataset, tmp_path)


@pytest.mark.slow
def test_user_started_torchrun_two_processes(base_run, tiny_dataset, tmp_path):
    """`torchrun --nproc_per_node 2 -m loce_cli ... --launcher pytorch`: the processes a user starts."""
    import sys

    _two_tasks_finetune_and_eval(lambda port: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                                               f"--master_port={port}", "-m", "loce_cli"],
                                 "pytorch", base_run, tiny_dataset, tmp_path)


def test_eval_of_a_trained_model_end_to_end(base_run, tiny_dataset, tmp_path, capsys):
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    options = opts(tiny_dataset) + [f"data.test.ann_file={ann}", f"data.test.img_prefix={tiny_dataset}/"]
    req = EvalRequest(str(BASE), str(base_run[0] / "epoch_1.pth"), str(tmp_path / "eval"), cfg_options=options)
    report = evaluate_model(req)
    assert capsys.readouterr().out == ""  # stdout stays free for `loce eval --json` (mmcv print()s loads)
    assert set(report.metrics) == {"bbox", "segm"}
    assert all(0.0 <= report.metrics["bbox"].summary[k] <= 1.0 for k in ("AP", "APr", "APc", "APf")
               if report.metrics["bbox"].summary[k] >= 0)
    dets = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert dets and "segmentation" in dets[0] and len(report.metrics["segm"].per_class) == 6
    with pytest.raises(OutputExistsError):
        evaluate_model(req)


@pytest.mark.slow
def test_eval_protocols_from_one_uncapped_inference(base_run, tiny_dataset, tmp_path):
    """``--protocol fixed`` infers with no per-image cap (a per-class cap instead); the standard numbers of that
    one inference equal those of the usual 300-per-image inference (test_per_class_cap: the prefix property)."""
    import numpy as np
    from typer.testing import CliRunner

    from loce_cli.cli import app
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model, read_report

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    options = opts(tiny_dataset) + [f"data.test.ann_file={ann}", f"data.test.img_prefix={tiny_dataset}/"]
    ckpt = str(base_run[0] / "epoch_1.pth")
    std = evaluate_model(EvalRequest(str(BASE), ckpt, str(tmp_path / "std"), cfg_options=options, max_dets=20))
    r = CliRunner().invoke(app, ["eval", str(BASE), ckpt, "--out", str(tmp_path / "all"), "--max-dets", "20",
                                 "--protocol", "standard", "--protocol", "fixed", "--protocol", "pooled",
                                 *[part for o in options for part in ("--cfg-options", o)]])
    assert r.exit_code == 0, r.output
    assert "AP-fixed" in r.stdout and "AP-pool" in r.stdout
    both = read_report(tmp_path / "all")
    for metric in ("bbox", "segm"):
        assert both.metrics[metric].summary == std.metrics[metric].summary
        assert both.protocols["fixed"].metrics[metric].summary["AP"] >= 0
    per_image = lambda f: np.bincount([d["image_id"] for d in json.loads(f.read_text())])  # noqa: E731
    assert per_image(tmp_path / "std" / "results.json").max() == 20
    assert per_image(tmp_path / "all" / "results.json").max() > 20  # no per-image cap
    assert not both.warnings


@pytest.mark.slow
def test_eval_in_two_processes_equals_one(base_run, tiny_dataset, tmp_path):
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    options = opts(tiny_dataset) + [f"data.test.ann_file={ann}", f"data.test.img_prefix={tiny_dataset}/"]
    ckpt = str(base_run[0] / "epoch_1.pth")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes (OMP_NUM_THREADS=1): bit-identical arithmetic
    try:
        one = evaluate_model(EvalRequest(str(BASE), ckpt, str(tmp_path / "one"), ["bbox"], cfg_options=options))
    finally:
        torch.set_num_threads(threads)
    two = evaluate_model(EvalRequest(str(BASE), ckpt, str(tmp_path / "two"), ["bbox"], cfg_options=options,
                                     evaluator="lvis", launch=LaunchOptions(nproc=2, master_port=29561)))
    assert (tmp_path / "one" / "results.json").read_bytes() == (tmp_path / "two" / "results.json").read_bytes()
    assert two.evaluator == "lvis" and not (tmp_path / "two" / ".loce_eval_launch.json").exists()
    for key in ("AP", "APr", "APc", "APf"):
        assert abs(one.metrics["bbox"].summary[key] - two.metrics["bbox"].summary[key]) <= 1e-4


def test_class_names_come_from_loce_meta_when_prepared(tiny_dataset, tmp_path, monkeypatch):
    """A prepared dataset's class names are read from loce_meta.json, not by parsing the (1 GB on LVIS) file."""
    import shutil

    from loce_cli.engine import checkpoints
    from loce_cli.engine.config.loading import load_config
    from loce_cli.engine.data.prep import prep_dataset

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    cfg = load_config(BASE, opts(root))
    names = checkpoints.dataset_class_names(cfg)
    prep_dataset(root, check_images="none")

    def no_parse(*_a, **_k):
        raise AssertionError("parsed the annotation file")

    monkeypatch.setattr(checkpoints.json, "load", no_parse)
    assert checkpoints.dataset_class_names(cfg) == names and len(names) == 6


def test_eval_refuses_bad_requests_before_writing(base_run, tiny_dataset, tmp_path):
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    options = opts(tiny_dataset) + [f"data.test.ann_file={ann}", f"data.test.img_prefix={tiny_dataset}/"]
    ckpt = torch.load(base_run[0] / "epoch_1.pth", map_location="cpu", weights_only=True)
    ckpt.pop("meta")  # no class names: the test set's are taken when the classifier's class count is its
    for key in ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias"):
        ckpt["state_dict"][key] = ckpt["state_dict"][key][:5]  # a classifier of 4 classes (+ background)
    nometa = tmp_path / "nometa.pth"
    torch.save(ckpt, nometa)
    out = tmp_path / "eval"
    with pytest.raises(DataError, match="no class names and its classifier .* trained for 4 classes, but the test "
                                        "set .* has 6"):
        evaluate_model(EvalRequest(str(BASE), str(nometa), str(out), cfg_options=options))
    with pytest.raises(LoceUsageError, match="unknown split"):
        evaluate_model(EvalRequest(str(BASE), str(base_run[0] / "epoch_1.pth"), str(out), split="medium",
                                   cfg_options=options))
    with pytest.raises(DataError, match="test annotations"):
        evaluate_model(EvalRequest(str(BASE), str(base_run[0] / "epoch_1.pth"), str(out),
                                   cfg_options=opts(tiny_dataset) + ["data.test.ann_file=/nonexistent.json"]))
    assert not out.exists()

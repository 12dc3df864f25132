"""Messages that must say what is true (issue 31): a resumed run's config, an interrupted quickstart's advice, a
quickstart rerun's skipped eval, an empty image, an eval's progress in a pipe."""

from __future__ import annotations

from pathlib import Path

from loce_cli.engine.training.run import TrainRequest


def test_a_resumed_run_names_its_config_not_a_temporary_file(tiny_base_model):
    """The run's config is read back from the checkpoint through a temporary saved_config.py; what the run
    reports as its config (the 'training (base): CONFIG ...' line, the log) is the CONFIG given."""
    from loce_cli.engine.training.run import run_config

    config, ckpt, options = tiny_base_model
    cfg = run_config(TrainRequest(config="synthetic/mask_rcnn_r18_fpn_normed_synth", resume=str(ckpt),
                                  cfg_options=options))
    assert Path(cfg.filename).resolve() == Path(config).resolve() and "saved_config" not in cfg.filename
    cfg = run_config(TrainRequest(config=str(config), resume=str(ckpt), cfg_options=options))
    assert cfg.filename == str(config) and cfg.runner.max_epochs == 2  # the run's own config all the same


def _quickstart_dir(tmp_path, tiny_dataset, ckpt, epochs_done):
    """A quickstart work dir as an earlier run leaves it: data, checkpoints after ``epochs_done`` epochs."""
    import shutil

    work = tmp_path / "qs"
    shutil.copytree(tiny_dataset, work / "data")
    for run in ("base", "loce"):
        (work / run).mkdir(parents=True)
        shutil.copy(ckpt, work / run / f"epoch_{epochs_done}.pth")
    return work


def test_a_quickstart_rerun_says_eval_was_skipped(tiny_dataset, tiny_base_model, tmp_path):
    import json

    from loce_cli.engine.evaluation import evaluate_results, write_report
    from loce_cli.engine.quickstart.steps import run_quickstart
    from tests.engine.test_evaluate import _results

    _config, ckpt, _options = tiny_base_model
    work = _quickstart_dir(tmp_path, tiny_dataset, ckpt, 1)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset, seed=0)))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    for run in ("base", "loce"):
        write_report(evaluate_results(res, ann, protocols=["standard", "fixed"]), work / "eval" / run)
    (work / "predictions").mkdir()
    (work / "predictions" / "pictures.json").write_text(json.dumps(dict(pictures=[])))
    lines = []
    one_epoch = ["runner.max_epochs=1"]
    result = run_quickstart(work, echo=lines.append, cfg_options={"base": one_epoch, "finetune": one_epoch})
    assert [s.status for s in result.steps] == ["skipped"] * 5
    skipped = [line for line in lines if line.startswith("[4/5] eval")]
    assert len(skipped) == 2 and all("exists, skipped" in line for line in skipped), lines
    assert [line[:6] for line in lines if line.startswith("[")] == ["[1/5] ", "[2/5] ", "[3/5] ", "[4/5] ", "[4/5] ",
                                                                    "[5/5] "]


def test_an_interrupted_quickstart_is_told_to_rerun_the_quickstart(tiny_dataset, tiny_base_model, tmp_path,
                                                                      monkeypatch):
    """Ctrl-C during the base stage: the advice is the quickstart again (it resumes), not loce train base."""
    import pytest

    from loce_cli.engine.quickstart import steps
    from loce_cli.engine.training import TrainingStopped
    from loce_cli.engine.training.resume import interrupted

    _config, ckpt, _options = tiny_base_model
    work = _quickstart_dir(tmp_path, tiny_dataset, ckpt, 1)

    def stopped(req):  # what train() raises on Ctrl-C (engine/training/resume.py), here at once
        raise interrupted(req)

    monkeypatch.setattr(steps, "train", stopped)
    with pytest.raises(TrainingStopped) as e:
        steps.run_quickstart(work, cfg_options={"base": ["runner.max_epochs=2"]})
    assert e.value.exit_code == 130 and "epoch_1.pth" in e.value.message
    assert e.value.hint.startswith(f"rerun loce quickstart --work-dir {work}") and "train base" not in e.value.hint


def test_an_empty_image_file_is_told_it_is_empty(tmp_path):
    """A 0-byte empty.jpg is a JPEG by name: 'pass a JPEG or PNG image' would not help; it is empty."""
    import pytest

    from loce_cli.engine.predict.images import check_image
    from loce_cli.errors import DataError

    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError) as e:
        check_image(tmp_path / "empty.jpg")
    line = e.value.one_line()
    assert "empty.jpg is empty (0 bytes)" in line and "JPEG or PNG" not in line and "again" in line


def test_a_single_process_eval_in_a_pipe_prints_progress_lines(tiny_base_model, tiny_dataset, tmp_path):
    """Not a terminal (CliRunner's streams, like a pipe): plain 'inference: N/M images' lines while it runs,
    as the rank-0 text progress of a multi-process eval; the last one says all images are done."""
    import json
    import re

    from typer.testing import CliRunner

    from loce_cli.cli import app

    config, ckpt, options = tiny_base_model
    args = ["eval", str(config), str(ckpt), "--out", str(tmp_path / "ev"), "--metric", "bbox", "--device", "cpu"]
    for o in options:
        args += ["--cfg-options", o]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = re.findall(r"^inference: (\d+)/(\d+) images$", r.stderr, re.M)
    images = len(json.loads((tiny_dataset / "annotations" / "lvis_v1_val.json").read_text())["images"])
    assert len(lines) >= 2 and lines[-1] == (str(images), str(images)), r.stderr
    assert [int(d) for d, _ in lines] == sorted(int(d) for d, _ in lines)

"""What a new user met (issue 21), each checked: the eval of a LOCE model says nothing about freezing, a
checkpoint path that is a directory, metrics.txt's '-', plot titles that name the run, and synth's
--val-images rule (monotonic, with its minimum stated)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.errors import DataError, LoceUsageError

ROOT = Path(__file__).resolve().parents[2]
LOCE = ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py"
runner = CliRunner()


def test_a_loce_model_built_for_evaluation_says_nothing_about_freezing(capfd):
    """`loce eval` / `loce predict` build the fine-tune's model: the "weights train ... frozen" line belongs to the
    training (its log and terminal), not to them."""
    import loce_cli.mmdet_ext  # noqa: F401
    from mmdet.models import build_detector

    from loce_cli.engine.config.loading import load_config

    cfg = load_config(LOCE, [])
    capfd.readouterr()
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    captured = capfd.readouterr()
    assert "weights train" not in captured.out + captured.err
    assert model.frozen_params and "backbone" in model.freeze_summary()
    assert model.freeze_summary().startswith("LOCE fine-tune: ") and " weights train " in model.freeze_summary()


def _ckpt(path: Path, value: float) -> Path:
    torch.save({"state_dict": {"w": torch.full((2,), value)}, "meta": {}}, str(path))
    return path


def test_a_checkpoint_directory_reads_its_latest_pth(tmp_path):
    from loce_cli.core.checkpoint_io import checkpoint_file, load_checkpoint_file

    _ckpt(tmp_path / "epoch_1.pth", 1.0)
    _ckpt(tmp_path / "epoch_2.pth", 2.0)
    (tmp_path / "latest.pth").symlink_to("epoch_2.pth")
    assert checkpoint_file(tmp_path) == tmp_path / "epoch_2.pth"
    assert float(load_checkpoint_file(tmp_path)["state_dict"]["w"][0]) == 2.0
    assert checkpoint_file(tmp_path / "epoch_1.pth") == tmp_path / "epoch_1.pth"


def test_a_checkpoint_directory_without_latest_names_its_files(tmp_path):
    from loce_cli.core.checkpoint_io import load_checkpoint_file

    _ckpt(tmp_path / "epoch_1.pth", 1.0)
    _ckpt(tmp_path / "iter_30.pth", 1.0)
    with pytest.raises(DataError) as e:
        load_checkpoint_file(tmp_path)
    text = e.value.one_line()
    assert "is a directory without latest.pth" in text and "epoch_1.pth, iter_30.pth" in text
    assert "does not exist" not in text
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="is a directory with no .pth file"):
        load_checkpoint_file(empty)


@pytest.mark.parametrize("command", [["inspect", "scores"], ["inspect", "memory"],
                                     ["eval", str(LOCE)], ["predict", str(LOCE)]])
def test_every_command_says_a_checkpoint_directory_is_one(tmp_path, command, tiny_dataset):
    _ckpt(tmp_path / "epoch_3.pth", 1.0)
    extra = [str(tiny_dataset / "val2017"), "--out", str(tmp_path / "o")] if command[0] == "predict" else []
    r = runner.invoke(app, command + [str(tmp_path)] + extra)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: checkpoint ") and "is a directory without latest.pth; it holds " \
        "epoch_3.pth" in " ".join(lines) and "Traceback" not in r.output


def test_metrics_txt_shows_dash_where_lvis_has_no_value(tmp_path):
    from loce_cli.engine.evaluation import SUMMARY_KEYS, EvalReport, MetricResult, write_report

    summary = {k: 0.25 for k in SUMMARY_KEYS}
    summary.update(APm=-1.0, APl=-1.0, APf=-1.0)
    report = EvalReport("a.json", "r.json", "lvis", 300, "all", {"bbox": MetricResult(summary)}, 1.0)
    write_report(report, tmp_path)
    rows = (tmp_path / "metrics.txt").read_text().splitlines()
    cells = dict(zip(rows[0].split(), rows[1].split()))
    assert cells["AP"] == "25.0" and cells["APm"] == cells["APl"] == cells["APf"] == "-"
    assert "-100" not in rows[1]
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["bbox"]["summary"]["APm"] == -1.0


def test_plot_titles_name_the_run_and_break_only_at_separators(tmp_path, monkeypatch):
    from loce_cli.engine.pictures.inspect_plots import path_title

    run = tmp_path / "work" / "quickstart" / "loce"
    run.mkdir(parents=True)
    (run / "epoch_2.pth").write_bytes(b"x")
    (run / "latest.pth").symlink_to("epoch_2.pth")
    monkeypatch.chdir(run)
    title = path_title("latest.pth")
    assert title.endswith("quickstart/loce/latest.pth (epoch_2.pth)")  # a bare latest.pth still names its run
    deep = "/data/" + "/".join(f"folder_number_{i}" for i in range(8)) + "/a_run_with_a_long_name/epoch_12.pth"
    lines = path_title(deep, width=40).splitlines()
    assert lines[0].startswith(".../") and lines[-1].endswith("a_run_with_a_long_name/epoch_12.pth") or \
        lines[-1] == "epoch_12.pth"
    names = set(deep.split("/"))
    for line in lines:  # every piece between separators is a whole folder or file name
        assert all(piece in names | {"..."} for piece in line.strip("/").split("/")), line
    assert "a_run_with_a_long_name" in "".join(lines)


def test_scores_plot_title_names_the_checkpoint_folder(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from loce_cli.engine.inspect.state import ClassScore, ScoresReport
    from loce_cli.engine.pictures.inspect_plots import plot_scores

    titles = []
    real = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda self, text, *a, **k: titles.append(text) or real(self, text, *a,
                                                                                                        **k))
    classes = [ClassScore(f"c{i}", g, 0.1 * i, n, n) for i, (g, n) in enumerate([("r", 3), ("c", 40), ("f", 300)])]
    ckpt = tmp_path / "my_loce_run" / "latest.pth"
    report = ScoresReport(str(ckpt), 3, 0.9, {}, classes[:1], classes)
    plot_scores(report, tmp_path / "s.png")
    assert titles and "my_loce_run/latest.pth" in titles[0] and "per-class mean scores" in titles[0]


def test_val_images_rule_is_monotonic_with_its_minimum_stated():
    """60 classes of 600 training images used to pass at 69 val images, fail at 70 and pass from 71 on (rounded
    proportional counts overfilled the split); now every count from the stated minimum on works."""
    from loce_cli.engine.data.synth import (SynthOptions, allocate, class_table, min_val_images, train_image_counts,
                                       val_image_counts)

    assert min_val_images(60, 6) == 30 and min_val_images(6, 6) == 1 and min_val_images(7, 6) == 4
    passed = []
    for v in range(1, 121):
        opts = SynthOptions(num_classes=60, train_images=600, val_images=v)
        try:
            opts.validate()
        except LoceUsageError as e:
            assert v < 30 and "--val-images 30 or more" in e.one_line(), e.one_line()
            continue
        passed.append(v)
        rng = np.random.default_rng(opts.seed)
        class_table(opts.num_classes, rng)
        train = train_image_counts(opts)
        allocate(train, opts.train_images, opts.max_objects, rng)
        counts = val_image_counts(opts, train)
        placed = allocate(counts, opts.val_images, opts.max_objects, rng)  # the real placement: it fits
        per_class = np.bincount([k for img in placed for k in img], minlength=60)
        assert per_class.min() >= 3 and max(map(len, placed)) <= opts.max_objects and (per_class == counts).all()
    assert passed == list(range(30, 121))

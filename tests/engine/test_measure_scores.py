"""`loce inspect scores --measure`: per-class mean scores of a checkpoint measured on the training data, checked
against a direct computation (every positive RoI of every box, with mmdet's assigner; no sampler) on the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_CLASSES

# deterministic: no flip, and room in the sampler for every positive (so the sampler keeps them all)
DETERMINISTIC = ["data.train.pipeline.3.flip_ratio=0.0", "model.train_cfg.rcnn.sampler.num=100000",
                 "model.train_cfg.rcnn.sampler.pos_fraction=1.0"]


def direct_means(cfg, checkpoint: Path, images_per_class: int):
    """Per-class means computed the plain way: per image, gt boxes + RPN proposals, mmdet's MaxIoUAssigner,
    each box's positive proposals' softmax probability of its class, averaged per box, then per class."""
    from mmcv.parallel import collate
    from mmdet.core import bbox2roi
    from mmdet.core.bbox import build_assigner
    from mmdet.datasets import build_dataset

    from loce_cli.engine.config.loading import train_dataset_cfg
    from loce_cli.mmdet_ext.score_measure import measure_list, measuring_model

    model, _, _ = measuring_model(cfg, checkpoint)
    dataset = build_dataset(train_dataset_cfg(cfg))
    assigner = build_assigner(cfg.model.train_cfg.rcnn.assigner)
    per_class = {c: [] for c in range(TINY_CLASSES)}
    with torch.no_grad():
        for idx in measure_list(dataset, images_per_class):
            batch = collate([dataset[idx]], samples_per_gpu=1)
            img, metas = batch["img"].data[0], batch["img_metas"].data[0]
            gts, labels = batch["gt_bboxes"].data[0][0], batch["gt_labels"].data[0][0]
            feats = model.extract_feat(img)
            props = model.rpn_head.get_bboxes(*model.rpn_head(feats), img_metas=metas,
                                              cfg=cfg.model.train_cfg.rpn_proposal)[0][:, :4]
            boxes = torch.cat([gts, props])  # add_gt_as_proposals=True
            gt_of = assigner.assign(boxes, gts, None, labels).gt_inds
            rois = bbox2roi([boxes])
            extractor = model.roi_head.bbox_roi_extractor
            cls, _ = model.roi_head.bbox_head(extractor(feats[:extractor.num_inputs], rois))
            probs = torch.softmax(cls, dim=1)
            for j in range(len(gts)):
                rows = (gt_of == j + 1).nonzero().flatten().tolist()
                if rows:
                    label = int(labels[j])
                    per_class[label].append(sum(float(probs[r, label]) for r in rows) / len(rows))
    return [sum(v) / len(v) if v else None for c, v in sorted(per_class.items())]


@pytest.mark.slow
def test_measured_scores_equal_a_direct_computation(tiny_base_model):
    from loce_cli.engine.config.loading import load_config
    from loce_cli.engine.inspect.measure import measure_checkpoint_scores

    config, checkpoint, options = tiny_base_model
    options = [*options, *DETERMINISTIC]
    report = measure_checkpoint_scores(checkpoint, config, images_per_class=3, cfg_options=options)
    want = direct_means(load_config(config, options), checkpoint, 3)
    got = [c.score for c in report.classes]
    assert [g is None for g in got] == [w is None for w in want]
    assert any(w is not None for w in want)
    for g, w in zip(got, want):
        if w is not None:
            assert math.isclose(g, w, rel_tol=1e-4, abs_tol=1e-6), (got, want)


def test_the_time_it_will_take_is_printed_after_the_third_image(tiny_dataset, tmp_path, capsys):
    """The list's size before the first image, the estimate after the third (before the rest), and the
    ``max_images`` / ``progress`` hooks the benchmark uses (bench/bench_measure_scores.py)."""
    from loce_cli.engine.inspect.measure import measure_checkpoint_scores
    from tests.conftest import tiny_train_options
    from tests.engine.test_foreign_checkpoints import BASE, tiny_model_parts

    state, _, names, _ = tiny_model_parts(tiny_dataset)
    ckpt = tmp_path / "untrained.pth"
    torch.save({"state_dict": state, "meta": {"CLASSES": names}}, ckpt)
    calls = []

    def progress(done, total):
        calls.append((done, total, capsys.readouterr().err))

    measure_checkpoint_scores(ckpt, BASE, images_per_class=2, cfg_options=tiny_train_options(tiny_dataset),
                              max_images=5, progress=progress)
    assert [c[:2] for c in calls] == [(n, 5) for n in range(1, 6)]
    assert f"2 per class, {TINY_CLASSES} classes, the first 5 measured" in calls[0][2]
    assert all("to go" not in c[2] for c in calls[:2] + calls[3:])
    assert "3 / 5 images: about " in calls[2][2] and "s per image)" in calls[2][2]

"""Fidelity to the paper and the authors' code (issue 22 point 4): the rules the LOCE state follows, each tested
against a hand-built case that a plausible wrong implementation gets wrong."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.mmdet_ext import tiny

NUM_CLASSES = 5


class ListDataset:
    """An mmdet-like training dataset held in memory: image ``i`` holds ``len(labels[i])`` boxes with those
    labels; items are already formatted (``DataContainer``s as mmdet's ``Collect`` gives them), so every read
    returns the same data. ``loaded`` records the indices read."""

    def __init__(self, labels, size: int = 64, seed: int = 0):
        from mmcv.parallel import DataContainer as DC

        self.labels = [list(ls) for ls in labels]
        self.data_infos = [dict(id=i) for i in range(len(labels))]
        self.loaded = []
        self.items = []
        for i, ls in enumerate(self.labels):
            imgs, metas, boxes, _, _ = tiny.batch(num_classes=NUM_CLASSES, gts=(len(ls),), size=size,
                                                  seed=seed + i)
            self.items.append(dict(img=DC(imgs[0], stack=True), img_metas=DC(metas[0], cpu_only=True),
                                   gt_bboxes=DC(boxes[0]), gt_labels=DC(torch.tensor(ls, dtype=torch.long))))

    def __len__(self):
        return len(self.items)

    def get_ann_info(self, i):
        return dict(labels=np.array(self.labels[i], dtype=np.int64))

    def __getitem__(self, i):
        self.loaded.append(i)
        return self.items[i]


def _model(queue_size: int = 16, **memory):
    cfg = tiny.model_cfg(num_classes=NUM_CLASSES, memory=memory)
    cfg["roi_head"]["memory"]["queue_size"] = queue_size
    return tiny.build(cfg)


def _sampling_result(num_props: int, gt_inds, gt_labels):
    """A real mmdet ``SamplingResult`` over ``num_props`` dummy boxes: ``gt_inds[i]`` is proposal ``i``'s
    assigned ground truth, 1-based (0 = negative); every proposal is sampled."""
    from mmdet.core.bbox import AssignResult, SamplingResult

    gt_inds = torch.tensor(gt_inds, dtype=torch.long)
    bboxes = torch.arange(num_props, dtype=torch.float32).view(-1, 1).repeat(1, 4) + torch.tensor([0, 0, 5, 5.0])
    gt_bboxes = torch.zeros((len(gt_labels), 4)) + torch.tensor([0, 0, 5, 5.0])
    labels = torch.where(gt_inds > 0, torch.tensor(gt_labels + [0])[gt_inds - 1], torch.full_like(gt_inds, -1))
    assign = AssignResult(len(gt_labels), gt_inds, torch.ones(num_props), labels=labels)
    pos = torch.nonzero(gt_inds > 0).squeeze(1)
    neg = torch.nonzero(gt_inds == 0).squeeze(1)
    return SamplingResult(pos, neg, bboxes, gt_bboxes, assign, torch.zeros(num_props, dtype=torch.uint8))


def _logits(rows):
    """Logits whose softmax is exactly ``rows`` (``{class: prob}`` per row; the rest of the mass on background)."""
    probs = torch.zeros(len(rows), NUM_CLASSES + 1)
    for i, row in enumerate(rows):
        for c, p in row.items():
            probs[i, c] = p
        probs[i, NUM_CLASSES] = 1.0 - sum(row.values())
    return probs.clamp_min(1e-12).log()


# -- the per-ground-truth mean ---------------------------------------------------------------------------------
def test_a_ground_truths_mean_is_over_its_own_positive_rois_only():
    """Per gt with >= 1 positive: the mean over *its* positives of the probability of its class. A version that
    averages over all RoIs, over all positives of the class, or counts a gt without positives, gives other
    scores."""
    model = _model()
    roi = model.roi_head
    # image 0: gts (class 1, class 2, class 1); proposals 0..3 positive for gts 0, 1, 0, 2; 4, 5 negative
    res0 = _sampling_result(6, [1, 2, 1, 3, 0, 0], [1, 2, 1])
    # image 1: gts (class 3 without any positive, class 2); proposals 0 and 2 positive for gt 1, 1 negative
    res1 = _sampling_result(3, [2, 0, 2], [3, 2])
    rows = [  # sampled order: each image's positives (in pos_inds order), then its negatives
        {1: 0.6, 2: 0.1}, {2: 0.3, 1: 0.2}, {1: 0.4}, {1: 0.9}, {1: 0.05, 2: 0.05, 3: 0.3}, {1: 0.02, 3: 0.5},
        {2: 0.7, 3: 0.1}, {2: 0.5}, {2: 0.01, 3: 0.8},
    ]
    roi._update_scores(_logits(rows), [res0, res1], [torch.tensor([1, 2, 1]), torch.tensor([3, 2])], 9, None)
    a, s0 = 0.9, 0.01
    # class 1: two pairs, gt 0 (0.6 + 0.4) / 2 and gt 2 (0.9); class 2: gt 1 of image 0 (0.3), gt 1 of image 1
    # (0.7 + 0.5) / 2; class 3: its only gt has no positive, no pair (the negatives' 0.3 .. 0.8 must not count)
    expected = torch.tensor([s0, a ** 2 * s0 + (1 - a ** 2) * (0.5 + 0.9) / 2,
                             a ** 2 * s0 + (1 - a ** 2) * (0.3 + 0.6) / 2, s0, s0, s0])
    assert torch.allclose(roi.score_tracker.scores, expected, atol=1e-6), roi.score_tracker.scores


# -- box jitter ------------------------------------------------------------------------------------------------
def test_jitter_offsets_are_up_to_one_sixth_of_width_and_height():
    """Offsets ``(1/6) * sign * U(0,1) * (w, h, w, h)``: bound 1/6 of the box's own width (x) and height (y),
    reached, uniform below it; checked against the literal 1/6, not the module's constant."""
    from loce_cli.core.proposals import jitter_boxes

    gt = torch.tensor([[300.0, 400.0, 360.0, 430.0]]).repeat(256, 1)  # w = 60, h = 30, far from the border
    boxes, idx = jitter_boxes(gt, (1000, 1000, 3), generator=torch.Generator().manual_seed(0))
    rel = (boxes - gt[idx]) / torch.tensor([60.0, 30.0, 60.0, 30.0])  # offset / (w, h, w, h)
    bound = 1.0 / 6.0
    assert rel.abs().max() <= bound + 1e-6
    per_coord_max = rel.abs().amax(0)
    assert (per_coord_max > 0.99 * bound).all(), per_coord_max  # 4096 draws per coordinate reach the bound
    u = rel.abs() / bound
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float((u < 0.5).float().mean()) - 0.5) < 0.03  # U(0, 1)
    signs = torch.sign(rel.view(256, 16, 4))  # all 16 sign patterns of (x1, y1, x2, y2) for each gt
    assert all(len({tuple(s.tolist()) for s in signs[g]}) == 16 for g in range(0, 256, 51))


# -- memory rows in the box batch ------------------------------------------------------------------------------
def _train_step(model, data):
    imgs, metas, boxes, labels, masks = data
    model.train()
    losses = model.forward_train(imgs, metas, boxes, labels, gt_masks=masks)
    return model._parse_losses(losses)[0]


def test_memory_rows_carry_their_stored_labels_regression_targets_and_weight_one(monkeypatch):
    from loce_cli.core.proposals import jitter_boxes

    torch.manual_seed(0)
    model = _model(queue_size=80)
    roi = model.roi_head
    # stored regression targets: the encoding of each jittered box against its own ground truth
    imgs, metas, boxes, labels, _ = data = tiny.batch(num_classes=NUM_CLASSES, gts=(3, 2))
    with torch.no_grad():
        x = model.extract_feat(imgs)
    torch.manual_seed(1)
    roi.push_gt_features(x, boxes, labels, metas)
    torch.manual_seed(1)
    expected = {}
    for b, lab, meta in zip(boxes, labels, metas):
        jittered, gi = jitter_boxes(b, meta["img_shape"])
        for c, t in zip(lab[gi].tolist(), roi.bbox_head.bbox_coder.encode(jittered, b[gi])):
            expected.setdefault(c, []).append(t)
    mem = roi.memory
    for c in range(NUM_CLASSES):
        n = int(mem.counts[c])
        assert n == 16 * labels[0].eq(c).sum() + 16 * labels[1].eq(c).sum()
        if n:
            stored = mem.reg_targets[c, :n]
            dist = (stored[:, None] - torch.stack(expected[c])[None]).abs().amax(-1)  # [stored, expected]
            assert dist.min(1).values.max() < 1e-5 and (mem.labels[c, :n] == c).all()

    seen = {}
    sample, forward, loss, update = (mem.sample, roi.bbox_head.forward, roi.bbox_head.loss,
                                     roi.score_tracker.update)

    def spy_sample(*a, **k):
        seen["sample"] = out = sample(*a, **k)
        return out

    def spy_forward(feats):
        seen["feats"] = feats
        return forward(feats)

    def spy_loss(cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights, **k):
        seen["loss"] = (labels, label_weights, bbox_targets, bbox_weights)
        return loss(cls_score, bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights, **k)

    def spy_update(labels, means, weights=None, **k):
        seen["pairs"] = (labels, means, weights)
        return update(labels, means, weights, **k)

    monkeypatch.setattr(mem, "sample", spy_sample)
    monkeypatch.setattr(roi.bbox_head, "forward", spy_forward)
    monkeypatch.setattr(roi.bbox_head, "loss", spy_loss)
    monkeypatch.setattr(roi.score_tracker, "update", spy_update)
    step = tiny.batch(num_classes=NUM_CLASSES, gts=(2, 1), seed=4)
    total = _train_step(model, step)
    assert torch.isfinite(total)
    m_feats, m_labels, m_targets = seen["sample"]
    k = m_feats.shape[0]
    assert k == 8 * 4
    lab, lw, tgt, bw = seen["loss"]
    assert torch.equal(seen["feats"][-k:], m_feats)  # the drawn features are the batch's last rows
    assert torch.equal(lab[-k:], m_labels) and (m_labels < NUM_CLASSES).all()  # their class: foreground
    assert torch.equal(lw[-k:], torch.ones(k))
    assert torch.allclose(tgt[-k:], m_targets) and torch.count_nonzero(m_targets) > 0
    assert torch.equal(bw[-k:], torch.ones(k, 4))
    assert lab.shape[0] == 2 * 64 + k  # sampled RoIs + memory rows
    # and the score update got one pair per distinct drawn class after the 3 ground-truth pairs
    pair_labels, _, pair_weights = seen["pairs"]
    mem_pairs = pair_labels[3:][pair_weights[3:] > 0]
    assert sorted(mem_pairs.tolist()) == sorted(set(m_labels.tolist()))


# -- duplicate draws -------------------------------------------------------------------------------------------
def test_a_class_drawn_twice_gives_one_pair_with_the_mean_over_all_its_features():
    """8 draws x 4 features; class 3 drawn three times, class 1 twice: one pair each (counted once in a^n),
    the mean over all 12 (8) features. One pair per draw would decay class 3 by a^3; the mean of one draw, or of
    per-draw means, differs from the mean over all features for unequal values."""
    model = _model()
    roi = model.roi_head
    draws = [3, 1, 3, 0, 2, 3, 1, 4]
    mem_labels = torch.tensor(draws).repeat_interleave(4)
    rng = torch.Generator().manual_seed(0)
    p = torch.rand(32, generator=rng) * 0.5
    rows = [{0: 0.1}]  # one negative RoI of an image without ground truth
    rows += [{c: float(v)} for c, v in zip(mem_labels.tolist(), p)]
    empty = _sampling_result(1, [0], [])
    roi._update_scores(_logits(rows), [empty], [torch.zeros(0, dtype=torch.long)], 1, mem_labels)
    a, s0 = 0.9, 0.01
    expected = torch.full((NUM_CLASSES + 1,), s0)
    for c in range(NUM_CLASSES):
        expected[c] = a * s0 + (1 - a) * p[mem_labels == c].mean()
    assert torch.allclose(roi.score_tracker.scores, expected, atol=1e-6), (roi.score_tracker.scores, expected)


# -- memory initialisation -------------------------------------------------------------------------------------
def _one_class_images(per_class_available: int = 7, classes=(0, 1, 2)):
    return ListDataset([[c, c] for c in classes for _ in range(per_class_available)])


@pytest.mark.parametrize("queue_size, per_class", [(80, 5), (32, 2)])
def test_memory_init_reads_queue_size_over_16_images_per_class(queue_size, per_class):
    from loce_cli.mmdet_ext import fill_memory

    torch.manual_seed(0)
    ds = _one_class_images()
    model = _model(queue_size=queue_size)
    summary = fill_memory(model, ds)
    read_classes = [ds.labels[i][0] for i in ds.loaded]
    assert len(ds.loaded) == len(set(ds.loaded)) == summary["images"] == 3 * per_class
    assert all(read_classes.count(c) == per_class for c in (0, 1, 2))
    # 2 gts x 16 jitters per image, each class's queue holds min(queue, what was pushed)
    assert model.roi_head.memory.counts[:3].tolist() == [min(queue_size, per_class * 32)] * 3


def _expected_single_image_scores(model, item, seed):
    """One manual tracker update from a training-style forward of one image (memory empty: no draw)."""
    from mmcv.parallel import collate
    from mmdet.core import bbox2roi

    from loce_cli.core.score_tracker import MeanScoreTracker

    roi = model.roi_head
    model.eval()
    torch.manual_seed(seed)  # the RoI sampler's draw, as in fill_memory
    batch = collate([item], samples_per_gpu=1)
    img, metas = batch["img"].data[0], batch["img_metas"].data[0]
    gt, lab = batch["gt_bboxes"].data[0][0], batch["gt_labels"].data[0][0]
    with torch.no_grad():
        x = model.extract_feat(img)
        props = model.rpn_head.get_bboxes(*model.rpn_head(x), img_metas=metas, cfg=model.train_cfg.rpn_proposal)
        assign = roi.bbox_assigner.assign(props[0], gt, None, lab)
        res = roi.bbox_sampler.sample(assign, props[0], gt, lab, feats=[lvl[0][None] for lvl in x])
        labels, means = [], []
        for g in range(gt.shape[0]):
            pos = res.pos_bboxes[res.pos_assigned_gt_inds == g]
            if pos.shape[0] == 0:
                continue
            cls, _ = roi.bbox_head(roi.bbox_roi_extractor(x[:4], bbox2roi([pos])))
            labels.append(int(lab[g]))
            means.append(F.softmax(cls, 1)[:, lab[g]].mean())
    tracker = MeanScoreTracker(NUM_CLASSES)
    tracker.update(torch.tensor(labels), torch.stack(means))
    return tracker.scores, len(set(labels))


def test_memory_init_warms_the_scores_as_one_training_step_would():
    from loce_cli.mmdet_ext import fill_memory

    torch.manual_seed(0)
    ds = ListDataset([[0, 2, 2, 4]])
    model = _model()
    reference = copy.deepcopy(model)
    torch.manual_seed(7)
    summary = fill_memory(model, ds)
    expected, classes = _expected_single_image_scores(reference, ds.items[0], seed=7)
    scores = model.roi_head.score_tracker.scores
    assert classes > 0 and summary["warm_scores"] and summary["score_updates"] == 1
    assert summary["classes_warmed"] == classes
    assert not torch.allclose(scores, torch.full_like(scores, 0.01))
    assert torch.allclose(scores, expected, atol=1e-6), (scores, expected)
    assert scores[-1] == pytest.approx(0.01)


def test_memory_init_draws_from_the_memory_as_it_fills(monkeypatch):
    """As in the authors' init (the normal training forward), from the second image on the box batch holds
    features drawn from the memory filled so far, and each distinct drawn class brings one pair."""
    from loce_cli.mmdet_ext import fill_memory

    torch.manual_seed(0)
    ds = ListDataset([[0, 1], [2, 3]])
    model = _model()
    tracker = model.roi_head.score_tracker
    calls = []
    update = tracker.update

    def spy(labels, means, weights=None, **k):
        calls.append((labels.clone(), weights.clone()))
        return update(labels, means, weights, **k)

    monkeypatch.setattr(tracker, "update", spy)
    fill_memory(model, ds, images_per_class=1)
    assert len(calls) == 2
    assert calls[0][0].shape[0] == 2  # first image: empty memory, only its 2 ground truths
    labels, weights = calls[1]
    assert labels.shape[0] == 2 + NUM_CLASSES  # 2 gts + one slot per class for the drawn ones
    drawn = labels[2:][weights[2:] > 0].tolist()
    assert drawn and set(drawn) <= {0, 1}  # only classes stored by the first image can be drawn


def _hook_runner(model, ds):
    logs = []

    class Runner:
        rank, world_size = 0, 1
        data_loader = type("L", (), {"dataset": ds})()
        logger = type("Log", (), {"info": staticmethod(logs.append)})()

    Runner.model = model
    return Runner, logs


@pytest.mark.parametrize("warm", [True, False])
def test_hook_option_turns_the_warm_up_off(warm):
    from loce_cli.mmdet_ext import LoceMemoryInitHook

    torch.manual_seed(0)
    ds = _one_class_images(per_class_available=2)
    model = _model()
    runner, logs = _hook_runner(model, ds)
    hook = LoceMemoryInitHook(warm_scores=warm)
    hook.before_train_epoch(runner)
    scores = model.roi_head.score_tracker.scores
    assert not model.roi_head.memory.is_empty() and hook.summary["warm_scores"] is warm
    if warm:
        assert hook.summary["classes_warmed"] == 3 and (scores[:3] != 0.01).all() and (scores[3:] == 0.01).all()
        assert any("warmed" in line and "3 of 5 classes" in line for line in logs), logs
    else:
        assert torch.equal(scores, torch.full_like(scores, 0.01))
        assert hook.summary["classes_warmed"] == 0 and hook.summary["score_updates"] == 0
        assert any("not warmed" in line for line in logs), logs


@pytest.mark.parametrize("config", ["configs/synthetic/loce_mask_rcnn_r18_fpn_normed_synth.py",
                                    "configs/lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py",
                                    "configs/lvis/loce_mask_rcnn_r101_fpn_normed_6e_lvis_v1.py"])
def test_warm_scores_is_a_config_key_settable_from_cfg_options(config):
    from pathlib import Path

    from mmcv.runner import HOOKS
    from mmcv.utils import build_from_cfg

    import loce_cli.mmdet_ext  # noqa: F401
    from loce_cli.mmdet_ext.config import load_config

    path = Path(__file__).resolve().parents[2] / config

    def hook(options):
        cfg = dict(load_config(path, options).custom_hooks[0])
        cfg.pop("priority", None)
        return build_from_cfg(cfg, HOOKS)

    assert hook([]).warm_scores is True
    assert hook(["custom_hooks.0.warm_scores=False"]).warm_scores is False


# -- several processes -----------------------------------------------------------------------------------------
def _deterministic_model():
    """Memory sampling off and a sampler that keeps every RoI: the scores then depend only on the weights."""
    cfg = tiny.model_cfg(num_classes=NUM_CLASSES, memory=dict(enabled=False))
    cfg["train_cfg"]["rcnn"]["sampler"]["num"] = 100000
    torch.manual_seed(0)
    return tiny.build(cfg)


IMAGES = [[0, 0], [1, 2], [2, 3], [3], [4, 0]]  # 5 images: 2 ranks get 3 and 2 with shard=True


def _dist_worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from loce_cli.mmdet_ext import fill_memory

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        out = {}
        for shard in (False, True):
            model = _deterministic_model()
            torch.manual_seed(100 + rank)  # ranks' random streams differ (jitter)
            summary = fill_memory(model, ListDataset(IMAGES), images_per_class=5, rank=rank, world_size=2,
                                  shard=shard)
            out[shard] = (model.roi_head.score_tracker.scores.clone(), summary["images"], summary["score_updates"])
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_processes_warm_identical_scores_counting_each_image_once(tmp_path):
    import torch.multiprocessing as mp

    from loce_cli.mmdet_ext import fill_memory

    mp.spawn(_dist_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    single = _deterministic_model()
    fill_memory(single, ListDataset(IMAGES), images_per_class=5)
    reference = single.roi_head.score_tracker.scores
    assert not torch.allclose(reference, torch.full_like(reference, 0.01))
    # every rank runs every image; each image's pairs count once: the single-process scores exactly
    assert torch.equal(r0[False][0], r1[False][0])
    assert torch.allclose(r0[False][0], reference, atol=1e-6)
    assert r0[False][1:] == r1[False][1:] == (5, 5)
    # sharded: 3 + 2 images, 3 collective updates on each rank (the short rank adds an empty one)
    assert torch.equal(r0[True][0], r1[True][0])
    assert (r0[True][1], r1[True][1]) == (3, 2) and r0[True][2] == r1[True][2] == 3
    assert ((r0[True][0][:NUM_CLASSES] - 0.01).abs() > 1e-4).all()

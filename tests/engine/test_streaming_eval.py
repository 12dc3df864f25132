"""The streaming evaluator equals the official lvis API (every summary key and every class's AP) on sets built to
hit each of LVIS's rules, reads results block by block, and refuses bad results before evaluating anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.evaluation import SUMMARY_KEYS, evaluate_results
from loce_cli.errors import DataError


def _polygon(rng, x, y, w, h, n=10):
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.6, 1.0, n)
    px = x + w * (0.5 + 0.5 * r * np.cos(ang))
    py = y + h * (0.5 + 0.5 * r * np.sin(ang))
    return [float(v) for pair in zip(px, py) for v in pair]


def make_set(root: Path, seed: int = 0, images: int = 40, classes: int = 12, ties: bool = True):
    """An LVIS-format val file and detections that exercise every rule: ties in score (within and across
    images), zero-area boxes and annotations, ``ignore`` flags, negative and not-exhaustive categories, detections
    of categories an image says nothing about, images over the detection cap, repeated boxes."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    freq = ["r", "c", "f"]
    cats = [dict(id=int(k) * 3 + 1, name=f"class_{k}", frequency=freq[k % 3], image_count=int(k) + 1,
                 instance_count=int(k) + 2, synset=f"s{k}") for k in range(classes)]
    cat_ids = [c["id"] for c in cats]
    imgs, anns, dets = [], [], []
    ids = rng.choice(10_000, size=images, replace=False) + 1
    for i, img_id in enumerate(ids.tolist()):
        w, h = [(64, 48), (48, 64), (80, 60)][i % 3]
        pos = rng.choice(cat_ids, size=int(rng.integers(1, 4)), replace=False).tolist()
        rest = [c for c in cat_ids if c not in pos]
        neg = rng.choice(rest, size=int(rng.integers(0, 4)), replace=False).tolist()
        nel = [c for c in pos if rng.random() < 0.3]
        imgs.append(dict(id=img_id, width=w, height=h, neg_category_ids=sorted(neg),
                         not_exhaustive_category_ids=sorted(nel),
                         coco_url=f"http://images.cocodataset.org/val2017/{img_id:012d}.jpg"))
        boxes = []
        for c in pos:
            for _ in range(int(rng.integers(1, 5))):
                bw, bh = rng.uniform(3, w * 0.8), rng.uniform(3, h * 0.8)
                bx, by = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                poly = _polygon(rng, bx, by, bw, bh)
                rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
                area = float(mask_utils.area(rle))
                if rng.random() < 0.04:
                    area = 0.0  # never counted by LVIS (area filter)
                ann = dict(id=len(anns) + 1, image_id=img_id, category_id=c, bbox=[bx, by, bw, bh], area=area,
                           segmentation=[poly])
                if rng.random() < 0.08:
                    ann["ignore"] = 1
                anns.append(ann)
                boxes.append((c, bx, by, bw, bh))
        n_det = int(rng.integers(5, 30))
        for _ in range(n_det):
            r = rng.random()
            if r < 0.5 and boxes:
                c, bx, by, bw, bh = boxes[int(rng.integers(len(boxes)))]
                bx, by = bx + rng.normal(0, 2), by + rng.normal(0, 2)
                bw, bh = bw * np.exp(rng.normal(0, 0.2)), bh * np.exp(rng.normal(0, 0.2))
                if rng.random() < 0.2:
                    c = int(rng.choice(cat_ids))
            else:
                c = int(rng.choice(pos + neg + [int(rng.choice(cat_ids))]))
                bw, bh = rng.uniform(2, w * 0.7), rng.uniform(2, h * 0.7)
                bx, by = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            bx, by = float(np.clip(bx, 0, w - 2)), float(np.clip(by, 0, h - 2))
            bw, bh = float(min(bw, w - bx)), float(min(bh, h - by))
            if rng.random() < 0.03:
                bw = 0.0  # area 0: dropped like LVIS's get_ann_ids
            score = float(np.round(rng.random(), 1 if ties else 12))
            mask = mask_utils.frPyObjects([_polygon(rng, bx, by, max(bw, 1), max(bh, 1))], h, w)[0]
            mask["counts"] = mask["counts"].decode()
            det = dict(image_id=img_id, category_id=c, bbox=[bx, by, bw, bh], score=score, segmentation=mask)
            dets.append(det)
            if rng.random() < 0.05:  # the same box again with another score (exact duplicates are refused)
                dets.append(dict(det, score=round(score + 0.1 if score < 0.9 else score - 0.1, 12)))
    rng.shuffle(dets)  # results in no particular order
    root.mkdir(parents=True, exist_ok=True)
    ann_file, res_file = root / "val.json", root / "results.json"
    ann_file.write_text(json.dumps(dict(images=imgs, annotations=anns, categories=cats)))
    res_file.write_text(json.dumps(dets))
    return ann_file, res_file, dets


def _reference(ann_file: Path, dets, metric: str, max_dets: int):
    """The official API on the same detections: summary and per-class AP (area all)."""
    import copy
    import logging

    from loce_cli import compat

    compat.apply()
    from lvis import LVIS, LVISEval, LVISResults

    logging.getLogger("lvis").setLevel(logging.ERROR)
    gt = LVIS(str(ann_file))
    ev = LVISEval(gt, LVISResults(gt, copy.deepcopy(dets), max_dets=max_dets), iou_type=metric)
    ev.params.max_dets = max_dets
    ev.run()
    prec = ev.eval["precision"]
    per_class = []
    for k in range(prec.shape[2]):
        p = prec[:, :, k, 0]
        p = p[p > -1]
        per_class.append(float(p.mean()) if p.size else None)
    return {k: float(ev.results[k]) for k in SUMMARY_KEYS}, per_class


def _assert_equal(report, ann_file, dets, metrics, max_dets):
    for metric in metrics:
        summary, per_class = _reference(ann_file, dets, metric, max_dets)
        got = report.metrics[metric]
        for key in SUMMARY_KEYS:
            assert got.summary[key] == pytest.approx(summary[key], abs=1e-12), (metric, key)
        assert [c.ap is None for c in got.per_class] == [a is None for a in per_class], metric
        for c, a in zip(got.per_class, per_class):
            assert c.ap is None or c.ap == pytest.approx(a, abs=1e-12), (metric, c.name)


@pytest.mark.parametrize("seed,max_dets,workers", [(0, 300, 1), (1, 6, 2), (2, 3, 1)])
def test_equals_lvis_api_on_every_rule(tmp_path, seed, max_dets, workers):
    ann, res, dets = make_set(tmp_path, seed)
    report = evaluate_results(res, ann, ["bbox", "segm"], max_dets=max_dets, workers=workers)
    assert report.evaluator == "streaming"
    assert report.metrics["bbox"].summary["AP"] > 0.02
    _assert_equal(report, ann, dets, ["bbox", "segm"], max_dets)


def test_ties_follow_image_then_file_order(tmp_path):
    """With scores on a 0.1 grid most ranks are ties: a different tie order (by position only, or unstable)
    changes the AP on these sets, so equality here pins LVIS's order."""
    ann, res, dets = make_set(tmp_path, seed=7, images=30)
    scores = [d["score"] for d in dets]
    assert len(set(scores)) <= 11
    report = evaluate_results(res, ann, ["bbox"], max_dets=5, workers=1)
    _assert_equal(report, ann, dets, ["bbox"], 5)


def test_small_blocks_and_workers_give_the_same_numbers(tmp_path, monkeypatch):
    from loce_cli.engine.evaluation import results_blocks, streaming

    ann, res, dets = make_set(tmp_path, seed=3, images=60)
    whole = evaluate_results(res, ann, ["bbox", "segm"], workers=1)
    blocks = list(results_blocks.iter_blocks(res, block_bytes=2048))
    assert len(blocks) > 20 and sum(len(b) for _, b in blocks) == len(dets)
    assert [first for first, _ in blocks] == list(np.cumsum([0] + [len(b) for _, b in blocks[:-1]]))
    monkeypatch.setattr(results_blocks, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(streaming, "CHUNK_DETECTIONS", 50)  # many chunks, over 2 worker processes
    parts = evaluate_results(res, ann, ["bbox", "segm"], workers=2)
    for m in ("bbox", "segm"):
        assert parts.metrics[m].summary == whole.metrics[m].summary
        assert [c.ap for c in parts.metrics[m].per_class] == [c.ap for c in whole.metrics[m].per_class]


def test_masks_without_boxes_and_polygon_results(tmp_path):
    """Without a bbox LVIS takes a detection's area from its mask; polygon masks are turned into RLEs."""
    from pycocotools import mask as mask_utils

    ann, res, dets = make_set(tmp_path, seed=4)
    no_box = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
    res.write_text(json.dumps(no_box))
    report = evaluate_results(res, ann, ["segm"], workers=1)
    _assert_equal(report, ann, no_box, ["segm"], 300)
    with pytest.raises(DataError, match="no boxes"):
        evaluate_results(res, ann, ["bbox"])
    images = {im["id"]: im for im in json.loads(ann.read_text())["images"]}
    poly = []
    for d in dets:
        x, y, w, h = d["bbox"]
        poly.append(dict(d, segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    res.write_text(json.dumps(poly))
    report = evaluate_results(res, ann, ["segm"], workers=1)
    _assert_equal(report, ann, poly, ["segm"], 300)
    assert images  # the polygons were rasterised at each image's size (a wrong size fails the equality)
    assert mask_utils  # noqa


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_results_refused_before_evaluation(tmp_path, monkeypatch):
    from loce_cli.engine.evaluation import streaming

    import tempfile

    ann, res, dets = make_set(tmp_path, seed=5)
    spills_before = set(Path(tempfile.gettempdir()).glob("loce-eval-rle-*"))
    called = []
    monkeypatch.setattr(streaming, "_evaluate_metric", lambda *a, **k: called.append(1))
    text = json.dumps(dets)
    cases = {
        "not valid JSON": text[: len(text) // 2],
        "not an LVIS results list": json.dumps({"detections": dets}),
        "unknown images": json.dumps([dict(dets[0], image_id=-5)] + dets[1:]),
        "unknown categories": json.dumps(dets[:-1] + [dict(dets[-1], category_id=99999)]),
        "non-finite": text.replace(f'"score": {dets[3]["score"]}', '"score": NaN', 1),
        "negative box": json.dumps([dict(dets[0], bbox=[1, 1, -3, 4])] + dets[1:]),
        "missing required field `score`": json.dumps(dets[:7] + [{k: v for k, v in dets[7].items() if k != "score"}]),
        "differ in size": json.dumps([dict(dets[0], segmentation=dict(dets[0]["segmentation"], size=[5, 5]))]
                                     + dets[1:]),
        "holds no detections": "[]",
        "is empty": "",
    }
    for match, content in cases.items():
        p = _write(tmp_path / "bad.json", content)
        with pytest.raises(DataError, match=match):
            evaluate_results(p, ann, ["bbox", "segm"])
    assert "detection 7" in _message(lambda: evaluate_results(
        _write(tmp_path / "bad.json", cases["missing required field `score`"]), ann))
    assert called == []  # nothing was evaluated
    assert set(Path(tempfile.gettempdir()).glob("loce-eval-rle-*")) == spills_before  # spill files removed


def _message(fn) -> str:
    try:
        fn()
    except DataError as e:
        return e.message
    raise AssertionError("no DataError")


def test_truncated_large_file_refused_in_blocks(tmp_path, monkeypatch):
    """A truncated file bigger than one block: refused at its end, after the earlier blocks decoded."""
    from loce_cli.engine.evaluation import results_blocks

    ann, res, dets = make_set(tmp_path, seed=6)
    monkeypatch.setattr(results_blocks, "BLOCK_BYTES", 4096)
    text = json.dumps(dets)
    bad = _write(tmp_path / "cut.json", text[:-200])
    with pytest.raises(DataError, match="closing"):
        evaluate_results(bad, ann, ["bbox"])


def test_cli_streaming_default_one_line_errors(tmp_path):
    ann, res, dets = make_set(tmp_path, seed=8)
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", str(ann), "--json", "--workers", "2"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["evaluator"] == "streaming"
    bad = _write(tmp_path / "bad.json", json.dumps(dets)[:-10])
    r = runner.invoke(app, ["eval", "--results", str(bad), "--ann", str(ann), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "not valid JSON" in r.stderr and "Traceback" not in r.output
    assert [line for line in r.stderr.splitlines() if not line.endswith("...")] == [r.stderr.strip().splitlines()[-1]]
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "o").exists()
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", str(ann), "--workers", "0"])
    assert r.exit_code == 2

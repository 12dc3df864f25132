"""AP on COCO data is never silently wrong: on a val set imported by ``loce data import coco`` the default evaluator
gives pycocotools' COCOeval numbers (maxDets 300, crowd regions matched as COCO matches them) for bbox and segm;
a plain COCO file, crowd regions under the lvis API and an LVIS file without neg_category_ids are refused or
warned about."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from loce_cli.engine.data.coco_import import import_coco
from loce_cli.engine.evaluation.results_eval import evaluate_results
from loce_cli.errors import DataError
from tests.engine.coco_data import H, W, make_coco


def _detections(val_file: Path, seed: int = 0) -> list:
    """Detections as a model writes them: near each ground truth (crowd regions too), random boxes of every
    class, scores on a 0.05 grid (many ties), at most 300 per image; boxes with their RLE masks."""
    rng = np.random.default_rng(seed)
    data = json.loads(val_file.read_text())
    cats = [c["id"] for c in data["categories"]]
    dets = []

    def add(img, cat, box):
        x, y, w, h = box
        x, y = float(np.clip(x, 0, W - 2)), float(np.clip(y, 0, H - 2))
        w, h = float(np.clip(w, 1, W - x)), float(np.clip(h, 1, H - y))
        m = np.zeros((H, W), np.uint8, order="F")
        m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
        if rng.random() < 0.5:
            m[int(y):int(y + h / 2), int(x):int(x + w / 3)] = 0
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode("ascii")
        dets.append({"image_id": img, "category_id": cat, "bbox": [x, y, w, h],
                     "score": float(np.round(rng.integers(1, 20) * 0.05, 2)), "segmentation": rle})

    for a in data["annotations"]:
        for _ in range(int(rng.integers(2 if a["iscrowd"] else 0, 4))):
            jit = rng.normal(0, 0.1, 4) * np.array(a["bbox"])[[2, 3, 2, 3]]
            cat = a["category_id"] if rng.random() < 0.85 else int(rng.choice(cats))
            add(a["image_id"], cat, np.array(a["bbox"]) + jit)
    for im in data["images"]:
        for _ in range(int(rng.integers(0, 6))):
            add(im["id"], int(rng.choice(cats)), [rng.integers(0, W - 10), rng.integers(0, H - 10),
                                                  rng.integers(4, 120), rng.integers(4, 90)])
    return dets


def _coco_reference(val_file: Path, dets: list, metric: str, groups: dict) -> dict:
    gt = COCO(str(val_file))
    dt = gt.loadRes(copy.deepcopy(dets))
    ev = COCOeval(gt, dt, iouType=metric)
    ev.params.maxDets = [1, 10, 300]
    ev.evaluate()
    ev.accumulate()
    p = ev.eval["precision"][..., -1]  # [T, R, K, A] at maxDets 300 (summarize() would read 100)
    cat_ids = list(ev.params.catIds)

    def mean(s):
        s = s[s > -1]
        return float(s.mean()) if s.size else -1.0

    out = {"AP": mean(p[..., 0]), "AP50": mean(p[0, :, :, 0]), "AP75": mean(p[5, :, :, 0]),
           "APs": mean(p[..., 1]), "APm": mean(p[..., 2]), "APl": mean(p[..., 3])}
    for g in ("r", "c", "f"):
        idx = [cat_ids.index(c) for c in groups[g]]
        out[f"AP{g}"] = mean(p[:, :, idx, 0])
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_eval")
    src = make_coco(root / "src", masks=True, seed=3, val_images=40)
    import_coco(root / "data", src["train"], src["train_images"], src["val"], src["val_images"])
    return src, root / "data" / "annotations" / "val.json", root


def _groups(ann_file: Path) -> dict:
    cats = json.loads(ann_file.read_text())["categories"]
    return {g: [c["id"] for c in cats if c["frequency"] == g] for g in ("r", "c", "f")}


@pytest.mark.parametrize("evaluator,seed", [("streaming", 0), ("streaming", 1)])
def test_equals_cocoeval_on_imported_val(imported, evaluator, seed):
    src, val_lvis, root = imported
    dets = _detections(src["val"], seed)
    counts = np.bincount([d["image_id"] for d in dets])
    assert counts.max() <= 300
    assert {d["image_id"] for d in dets} >= {a["image_id"] for a in json.loads(src["val"].read_text())[
        "annotations"] if a["iscrowd"]}  # detections over crowd regions' images
    res = root / f"results_{seed}.json"
    res.write_text(json.dumps(dets))
    report = evaluate_results(res, val_lvis, ("bbox", "segm"), evaluator=evaluator, workers=1)
    groups = _groups(val_lvis)
    for metric in ("bbox", "segm"):
        ref = _coco_reference(src["val"], dets, metric, groups)
        got = report.metrics[metric].summary
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, abs=1e-4), (metric, key, got[key], value)
        assert min(ref[k] for k in ("AP", "APs", "APm", "APr", "APc", "APf")) > 0.05  # not a trivial figure
    assert not report.warnings


def test_crowd_changes_the_figure(imported):
    """The crowd rule matters here: treating crowd regions as ordinary ignored boxes (LVIS's rule) would change AP,
    so the equality above can fail."""
    src, val_lvis, root = imported
    data = json.loads(val_lvis.read_text())
    for a in data["annotations"]:
        if a.get("iscrowd"):
            a["iscrowd"], a["ignore"] = 0, 1
    no_crowd = root / "no_crowd" / "annotations"
    no_crowd.mkdir(parents=True)
    (no_crowd / "val.json").write_text(json.dumps(data))
    dets = _detections(src["val"], 0)
    res = root / "results_nc.json"
    res.write_text(json.dumps(dets))
    got = evaluate_results(res, no_crowd / "val.json", ("bbox",), workers=1).metrics["bbox"].summary
    ref = _coco_reference(src["val"], dets, "bbox", _groups(val_lvis))
    assert abs(got["AP"] - ref["AP"]) > 1e-4


def test_plain_coco_file_refused(imported, tmp_path):
    src, _val, _root = imported
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_detections(src["val"], 0)))
    with pytest.raises(DataError) as e:
        evaluate_results(res, src["val"], ("bbox",), workers=1)
    assert "loce data import coco" in e.value.one_line()
    assert "COCO annotation file" in e.value.one_line()


def test_lvis_api_refuses_crowd_regions(imported, tmp_path):
    src, val_lvis, _root = imported
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_detections(src["val"], 0)))
    with pytest.raises(DataError) as e:
        evaluate_results(res, val_lvis, ("bbox",), evaluator="lvis", workers=1)
    assert "the lvis API has no crowd regions; use --evaluator streaming" in e.value.one_line()


def test_lvis_file_without_negative_lists_warns(imported, tmp_path):
    src, val_lvis, _root = imported
    data = json.loads(val_lvis.read_text())
    for im in data["images"]:
        del im["neg_category_ids"]
    for a in data["annotations"]:
        a.pop("iscrowd", None)
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps(data))
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_detections(src["val"], 0)))
    report = evaluate_results(res, ann, ("bbox",), workers=1)
    assert any("neg_category_ids" in w and "higher" in w for w in report.warnings)


def test_cli_refuses_plain_coco_in_one_line(imported, tmp_path):
    from typer.testing import CliRunner

    from loce_cli.cli import app

    src, _val, _root = imported
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_detections(src["val"], 0)))
    r = CliRunner().invoke(app, ["eval", "--results", str(res), "--ann", str(src["val"]), "--metric", "bbox"])
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "loce data import coco" in lines[0], r.output


@pytest.mark.slow
def test_model_eval_refuses_plain_coco_before_inference(tiny_base_model, tiny_dataset, tmp_path):
    """`loce eval CONFIG CKPT` on a test set that is a plain COCO file: one line naming the import, no inference."""
    from typer.testing import CliRunner

    from loce_cli.cli import app

    config, ckpt, options = tiny_base_model
    data = json.loads((tiny_dataset / "annotations" / "lvis_v1_val.json").read_text())
    for c in data["categories"]:
        for k in ("frequency", "image_count", "instance_count"):
            c.pop(k, None)
    for im in data["images"]:
        im.pop("neg_category_ids", None)
        im.pop("not_exhaustive_category_ids", None)
    plain = tmp_path / "coco_val.json"
    plain.write_text(json.dumps(data))
    opts = [o for o in options if not o.startswith("data.test.ann_file=")] + [f"data.test.ann_file={plain}"]
    args = ["eval", str(config), str(ckpt), "--out", str(tmp_path / "ev"), "--metric", "bbox"]
    for o in opts:
        args += ["--cfg-options", o]
    r = CliRunner().invoke(app, args)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and "loce data import coco" in lines[0], r.output
    assert not (tmp_path / "ev" / "results.json").exists()


@pytest.fixture(scope="module")
def imported_train(tmp_path_factory):
    """An import whose train file (the exhaustive flag in its info, no per-image lists) is evaluated; its crowd
    regions left out so that the lvis API takes it too."""
    root = tmp_path_factory.mktemp("coco_train_eval")
    src = make_coco(root / "src", masks=True, seed=5)
    data = json.loads(src["train"].read_text())
    data["annotations"] = [a for a in data["annotations"] if not a["iscrowd"]]
    train = root / "src" / "train_no_crowd.json"
    train.write_text(json.dumps(data))
    import_coco(root / "data", train, src["train_images"], src["val"], src["val_images"])
    return train, root / "data" / "annotations" / "train.json", root


@pytest.mark.parametrize("evaluator", ["streaming", "lvis"])
def test_train_file_with_the_exhaustive_flag_gives_cocoeval_ap(imported_train, evaluator):
    """Every evaluator honours the flag: without it (no lists) only the classes annotated in each image would be
    scored and AP would come out far higher."""
    src_train, train_lvis, root = imported_train
    gt = json.loads(train_lvis.read_text())
    assert gt["info"]["all_categories_exhaustive"] is True
    assert not any("neg_category_ids" in im for im in gt["images"])
    dets = _detections(src_train, 2)
    res = root / f"results_train_{evaluator}.json"
    res.write_text(json.dumps(dets))
    metrics = ("bbox", "segm") if evaluator == "streaming" else ("bbox",)
    report = evaluate_results(res, train_lvis, metrics, evaluator=evaluator, workers=1)
    groups = _groups(train_lvis)
    for metric in metrics:
        ref = _coco_reference(src_train, dets, metric, groups)
        got = report.metrics[metric].summary
        for key, value in ref.items():
            assert got[key] == pytest.approx(value, abs=1e-4), (metric, key, got[key], value)
        assert ref["AP"] > 0.05 and min(ref[k] for k in ("APr", "APc", "APf")) > 0.01  # not a trivial figure
    assert not report.warnings  # the flag stands for the lists: no "no neg_category_ids" warning


def test_the_flag_is_what_keeps_ap_at_coco_s(imported_train, tmp_path):
    """The same train file without its flag: the federated rule then scores only annotated classes (a warning
    says so) and AP differs from COCOeval's, so the equality above depends on the flag being honoured."""
    src_train, train_lvis, _root = imported_train
    data = json.loads(train_lvis.read_text())
    del data["info"]["all_categories_exhaustive"]
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(data))
    dets = _detections(src_train, 2)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(dets))
    report = evaluate_results(res, ann, ("bbox",), workers=1)
    ref = _coco_reference(src_train, dets, "bbox", _groups(train_lvis))
    assert report.metrics["bbox"].summary["AP"] > ref["AP"] + 0.01
    assert any("neg_category_ids" in w for w in report.warnings)


def test_ignore_without_iscrowd_is_an_ordinary_object_as_in_cocoeval(tmp_path):
    """pycocotools' COCOeval overwrites an annotation's ``ignore`` with ``iscrowd``: an object with ignore 1 and
    iscrowd 0 is an ordinary ground truth there. The import keeps the flag as ``source_ignore`` (says so in a
    note), so loce's AP on the imported val set is COCOeval's; honoured as LVIS honours ``ignore``, it would not."""
    src = make_coco(tmp_path / "src", masks=False, seed=7, val_images=40)
    rng = np.random.default_rng(0)
    flagged = 0
    for split in ("train", "val"):
        data = json.loads(src[split].read_text())
        for a in data["annotations"]:
            if rng.random() < 0.25:
                a["ignore"] = 1
                flagged += not a["iscrowd"]
            elif rng.random() < 0.2:
                a["ignore"] = 0
        src[split].write_text(json.dumps(data))
    result = import_coco(tmp_path / "data", src["train"], src["train_images"], src["val"], src["val_images"])
    assert len(result.notes) == 1 and f"{flagged:,} object(s)" in result.notes[0], result.notes
    assert "ordinary objects" in result.notes[0] and "iscrowd" in result.notes[0]
    from typer.testing import CliRunner

    from loce_cli.cli import app

    r = CliRunner().invoke(app, ["data", "import", "coco", str(tmp_path / "again"), "--train", str(src["train"]),
                                 "--train-images", str(src["train_images"]), "--val", str(src["val"]),
                                 "--val-images", str(src["val_images"])])
    assert r.exit_code == 0 and f"note: {flagged:,} object(s)" in r.output, r.output
    val_lvis = tmp_path / "data" / "annotations" / "val.json"
    anns = json.loads(val_lvis.read_text())["annotations"]
    assert not any("ignore" in a for a in anns) and sum(bool(a.get("source_ignore")) for a in anns) > 10
    dets = _detections(src["val"], 0)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(dets))
    groups = _groups(val_lvis)
    got = evaluate_results(res, val_lvis, ("bbox",), workers=1).metrics["bbox"].summary
    ref = _coco_reference(src["val"], dets, "bbox", groups)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-4), (key, got[key], value)
    data = json.loads(val_lvis.read_text())
    for a in data["annotations"]:
        if a.get("source_ignore"):
            a["ignore"] = 1
    honoured = tmp_path / "honoured" / "annotations"
    honoured.mkdir(parents=True)
    (honoured / "val.json").write_text(json.dumps(data))
    other = evaluate_results(res, honoured / "val.json", ("bbox",), workers=1).metrics["bbox"].summary
    assert abs(other["AP"] - ref["AP"]) > 1e-3

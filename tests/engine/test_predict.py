"""loce predict with a real trained model: pictures of the input's size, drawn where detections are and equal to
the input elsewhere, predictions.json equal to loce eval's detections, grey / RGBA inputs, bad input."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from loce_cli.engine.pictures.drawing import Drawn, label_boxes, legend_box
from loce_cli.engine.predict.images import PredictRequest, predict, resolve_inputs
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError

THR, MAX_DETS = 0.05, 20


def _val(data: Path):
    ann = json.loads((data / "annotations" / "lvis_v1_val.json").read_text())
    per_image = {}
    for a in ann["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    images = sorted(ann["images"], key=lambda im: (-per_image.get(im["id"], 0), im["id"]))
    return ann, images


@pytest.fixture(scope="module")
def inputs(tiny_dataset, tmp_path_factory):
    """Image files of several kinds made from the tiny val set's busiest images."""
    ann, images = _val(tiny_dataset)
    folder = tmp_path_factory.mktemp("inputs")
    a, b = (tiny_dataset / images[0]["file_name"], tiny_dataset / images[1]["file_name"])
    shutil.copy(a, folder / "a.jpg")
    rgb_a = np.asarray(Image.open(a).convert("RGB"))
    rgb_b = np.asarray(Image.open(b).convert("RGB"))
    rng = np.random.default_rng(0)
    scene = np.zeros((192, 224, 3), np.uint8)  # a large, empty background ...
    scene[:64, :64] = rgb_a  # ... with the objects in one corner
    Image.fromarray(scene).save(folder / "scene.png")
    grey = np.asarray(Image.fromarray(rgb_b).convert("L"))
    Image.fromarray(grey).save(folder / "grey.png")
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(folder / "grey_as_rgb.png")
    alpha = rng.integers(0, 256, grey.shape, dtype=np.uint8)
    Image.fromarray(np.dstack([rgb_a, alpha]), "RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb_a).save(folder / "rgba_as_rgb.png")
    return folder, images


def _digest(folder: Path):
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.fixture(scope="module")
def predicted(tiny_base_model, inputs, tmp_path_factory):
    config, ckpt, options = tiny_base_model
    folder, _ = inputs
    before = _digest(folder)
    out = tmp_path_factory.mktemp("pred") / "out"
    report = predict(PredictRequest(str(config), str(ckpt), [str(folder)], str(out), THR, MAX_DETS, "cpu",
                                    cfg_options=options))
    assert _digest(folder) == before  # the inputs are only read
    dets = json.loads((out / "predictions.json").read_text())
    by_file = {}
    for d in dets:
        by_file.setdefault(Path(d["file_name"]).name, []).append(d)
    return report, out, by_file


def _meta(ckpt):
    meta = torch.load(str(ckpt), map_location="cpu", weights_only=True)["meta"]
    return meta["CLASSES"], meta["class_frequency"]


def test_pictures_have_the_input_size_and_change_only_where_drawn(predicted, inputs, tiny_base_model):
    report, out, by_file = predicted
    folder, _ = inputs
    assert not report.failed and len(report.images) == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{Path(i.input).stem}.png" for i in report.images] + ["predictions.json"])
    names, freq = _meta(tiny_base_model[1])
    for im in report.images:
        with Image.open(im.input) as src, Image.open(im.output) as pic:
            assert pic.size == src.size and pic.mode == "RGB"
        assert im.detections == len(by_file.get(Path(im.input).name, []))
    scene_dets = by_file["scene.png"]
    assert scene_dets, "the trained model finds the objects"
    src = np.asarray(Image.open(folder / "scene.png"))
    pic = np.asarray(Image.open(out / "scene.png"))
    h, w = src.shape[:2]
    drawn = [Drawn((d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]),
                   d["category_name"], d["score"], freq[names.index(d["category_name"])]) for d in scene_dets]
    allowed = np.zeros((h, w), bool)
    labels = label_boxes(drawn, h, w)
    for d, (lx0, ly0, lx1, ly1) in zip(drawn, labels):
        x1, y1, x2, y2 = d.box
        allowed[max(0, int(y1)):int(np.ceil(y2)) + 1, max(0, int(x1)):int(np.ceil(x2)) + 1] = True
        allowed[ly0:ly1, lx0:lx1] = True
    lx0, ly0, lx1, ly1 = legend_box(h, w, [d.group for d in drawn])
    allowed[ly0:ly1, lx0:lx1] = True
    assert (~allowed).mean() > 0.3
    assert np.array_equal(pic[~allowed], src[~allowed])  # far from every detection: the input's own pixels
    # every detection's box and label changed pixels; inside the masks, away from outlines and labels, the
    # translucent overlay changed (nearly) every pixel
    for d, (lx0, ly0, lx1, ly1) in zip(drawn, labels):
        x1, y1, x2, y2 = (int(v) for v in d.box)
        assert (pic[ly0:ly1, lx0:lx1] != src[ly0:ly1, lx0:lx1]).any()
        assert (pic[y1:y2 + 1, x1:x2 + 1] != src[y1:y2 + 1, x1:x2 + 1]).any()
    from pycocotools import mask as mask_util

    inner_changed, inner_total = 0, 0
    for name, dets in by_file.items():
        src_i = np.asarray(Image.open(folder / name).convert("RGB"))
        pic_i = np.asarray(Image.open(out / f"{Path(name).stem}.png"))
        hi, wi = src_i.shape[:2]
        inner = np.zeros((hi, wi), bool)
        for d in dets:
            seg = d["segmentation"]
            inner |= mask_util.decode(dict(seg, counts=seg["counts"].encode())).astype(bool)
        dds = [Drawn((d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]),
                     d["category_name"], d["score"], freq[names.index(d["category_name"])]) for d in dets]
        for dd, (lx0, ly0, lx1, ly1) in zip(dds, label_boxes(dds, hi, wi)):
            inner[ly0:ly1, lx0:lx1] = False
            x1, y1 = int(dd.box[0]), int(dd.box[1])
            x2, y2 = int(np.ceil(dd.box[2])), int(np.ceil(dd.box[3]))
            for ys, xs in ((slice(y1 - 1, y1 + 2), slice(x1, x2 + 1)), (slice(y2 - 2, y2 + 1), slice(x1, x2 + 1)),
                           (slice(y1, y2 + 1), slice(x1 - 1, x1 + 2)), (slice(y1, y2 + 1), slice(x2 - 2, x2 + 1))):
                inner[max(0, ys.start):ys.stop, max(0, xs.start):xs.stop] = False  # outlines
        inner_total += int(inner.sum())
        inner_changed += int((pic_i[inner] != src_i[inner]).any(axis=1).sum()) if name.endswith(".png") else 0
        if not name.endswith(".png"):  # a JPEG: the decoders may differ by a unit; count clear changes only
            inner_changed += int((np.abs(pic_i[inner].astype(int) - src_i[inner]) > 3).any(axis=1).sum())
    assert inner_total > 20 and inner_changed > 0.9 * inner_total
    # the legend's corner changed, and an image's detections are drawn in its own coordinates
    gx0, gy0, gx1, gy1 = legend_box(h, w, [d.group for d in drawn])
    assert (pic[gy0:gy1, gx0:gx1] != src[gy0:gy1, gx0:gx1]).any()
    assert all(d["bbox"][0] < 80 and d["bbox"][1] < 80 for d in scene_dets)


def test_predictions_equal_loce_eval_detections(predicted, inputs, tiny_base_model, tiny_dataset, tmp_path):
    """The same image through loce eval at the same thresholds: the same detections, masks byte for byte; at
    eval's own threshold (1e-4) the ones scoring >= THR are the same too."""
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model

    _, _, by_file = predicted
    config, ckpt, options = tiny_base_model
    _, images = inputs
    ann, _ = _val(tiny_dataset)
    image = images[0]  # a.jpg is a copy of it
    subset = dict(ann, images=[image], annotations=[a for a in ann["annotations"] if a["image_id"] == image["id"]])
    ann_file = tmp_path / "one_image.json"
    ann_file.write_text(json.dumps(subset))
    test_opts = [f"data.test.ann_file={ann_file}", f"data.test.img_prefix={tiny_dataset}/"]
    ours = [{k: v for k, v in d.items() if k not in ("file_name", "category_name")} for d in by_file["a.jpg"]]
    assert ours and all(d["score"] >= THR for d in ours)
    for d in ours:
        d["image_id"] = image["id"]
    same = evaluate_model(EvalRequest(str(config), str(ckpt), str(tmp_path / "same"), max_dets=MAX_DETS,
                                      cfg_options=options + test_opts + [f"model.test_cfg.rcnn.score_thr={THR}"]))
    theirs = json.loads(Path(same.results_file).read_text())
    assert theirs == ours
    default = evaluate_model(EvalRequest(str(config), str(ckpt), str(tmp_path / "default"), max_dets=300,
                                         cfg_options=options + test_opts))
    theirs = json.loads(Path(default.results_file).read_text())
    assert len(theirs) > len(ours)
    kept = sorted((d for d in theirs if d["score"] >= THR), key=lambda d: -d["score"])[:MAX_DETS]
    assert sorted(kept, key=json.dumps) == sorted(ours, key=json.dumps)


def test_grey_and_rgba_inputs_are_converted(predicted, inputs):
    report, out, by_file = predicted
    folder, _ = inputs

    def strip(dets):
        return [{k: v for k, v in d.items() if k not in ("file_name", "image_id")} for d in dets]

    assert strip(by_file.get("grey.png", [])) == strip(by_file.get("grey_as_rgb.png", []))
    assert strip(by_file.get("rgba.png", [])) == strip(by_file.get("rgba_as_rgb.png", []))
    assert by_file.get("rgba.png")
    for name, same_as in (("grey", "grey_as_rgb"), ("rgba", "rgba_as_rgb")):
        assert np.array_equal(np.asarray(Image.open(out / f"{name}.png")),
                              np.asarray(Image.open(out / f"{same_as}.png")))
    with Image.open(folder / "grey.png") as g:
        assert g.mode == "L"
    with Image.open(out / "grey.png") as p:
        assert p.mode == "RGB"


def test_split_draws_only_that_group(tiny_base_model, inputs, predicted, tmp_path):
    config, ckpt, options = tiny_base_model
    folder, _ = inputs
    _, full_out, by_file = predicted
    names, freq = _meta(ckpt)
    report = predict(PredictRequest(str(config), str(ckpt), [str(folder / "scene.png")], str(tmp_path / "o"), THR,
                                    MAX_DETS, "cpu", split="frequent", cfg_options=options))
    dets = by_file["scene.png"]
    frequent = [d for d in dets if freq[names.index(d["category_name"])] == "f"]
    assert report.images[0].detections == len(dets) and report.images[0].drawn == len(frequent)
    assert len(json.loads((tmp_path / "o" / "predictions.json").read_text())) == len(dets)  # the JSON keeps all
    pic = np.asarray(Image.open(tmp_path / "o" / "scene.png"))
    if not frequent:
        assert np.array_equal(pic, np.asarray(Image.open(folder / "scene.png")))
    if len(frequent) < len(dets):
        assert not np.array_equal(pic, np.asarray(Image.open(full_out / "scene.png")))


def _bad_files(folder: Path, good: Path):
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image at all\n")
    data = good.read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    return {"empty.png": "is empty", "notes.jpg": "is not an image", "cut.png": "damaged or truncated"}


def test_bad_inputs_one_line_each_and_nothing_written(tiny_base_model, tiny_dataset, inputs, tmp_path):
    config, ckpt, options = tiny_base_model
    folder, _ = inputs
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = _bad_files(bad, folder / "scene.png")

    def run(inputs_, out, **kw):
        return predict(PredictRequest(str(config), str(ckpt), inputs_, str(out), THR, MAX_DETS, "cpu",
                                      cfg_options=options, **kw))

    for name, match in cases.items():
        with pytest.raises(DataError, match=match):
            run([str(bad / name)], tmp_path / name)
        assert not (tmp_path / name).exists()
    # some bad images in a folder: a warning each, the good ones written, the failures reported
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _bad_files(mixed, folder / "scene.png")
    shutil.copy(folder / "a.jpg", mixed / "a.jpg")
    before = _digest(mixed)
    warnings = []
    report = predict(PredictRequest(str(config), str(ckpt), [str(mixed)], str(tmp_path / "m"), THR, MAX_DETS,
                                    "cpu", cfg_options=options), warn=warnings.append)
    assert _digest(mixed) == before
    assert [Path(f.input).name for f in report.failed] == ["cut.png", "empty.png", "notes.jpg"]
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["a.png", "predictions.json"]
    assert {Path(d["file_name"]).name for d in json.loads((tmp_path / "m" / "predictions.json").read_text())} == \
        {"a.jpg"}
    # an existing output folder, an unusable checkpoint, options
    with pytest.raises(OutputExistsError, match="already exists"):
        run([str(folder / "a.jpg")], tmp_path / "m")
    run([str(folder / "a.jpg")], tmp_path / "m", force=True)
    with pytest.raises(DataError, match="does not exist"):
        predict(PredictRequest(str(config), str(tmp_path / "nope.pth"), [str(folder / "a.jpg")], str(tmp_path / "x")))
    state = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    torch.save({"state_dict": state["state_dict"]}, tmp_path / "no_meta.pth")
    # a checkpoint without meta (as other codebases write them) takes its class names from the config's data
    bare = predict(PredictRequest(str(config), str(tmp_path / "no_meta.pth"), [str(folder / "a.jpg")],
                                  str(tmp_path / "bare"), THR, MAX_DETS, "cpu", cfg_options=options))
    named = json.loads(Path(bare.predictions_file).read_text())
    data_names = {c["name"] for c in json.loads((tiny_dataset / "annotations" / "lvis_v1_train.json").read_text())[
        "categories"]}
    assert named and {d["category_name"] for d in named} <= data_names
    with pytest.raises(LoceUsageError, match="unknown split"):
        predict(PredictRequest(str(config), str(ckpt), [str(folder / "a.jpg")], str(tmp_path / "x"), split="rarest"))
    assert not (tmp_path / "x").exists()


def test_resolve_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.JPG", "c.txt"):
        (tmp_path / "d" / name).write_bytes(b"x")
    (tmp_path / "d" / "sub").mkdir()
    (tmp_path / "d" / "sub" / "e.png").write_bytes(b"x")
    got = resolve_inputs([str(tmp_path / "d"), str(tmp_path / "d" / "b.png"), str(tmp_path / "d" / "**" / "*.png")])
    assert [p.name for p in got] == ["a.JPG", "b.png", "e.png"]  # folder by suffix, sorted; each file once
    with pytest.raises(DataError, match="no file matches"):
        resolve_inputs([str(tmp_path / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        resolve_inputs([str(tmp_path / "empty")])
    with pytest.raises(DataError, match="does not exist"):
        resolve_inputs([str(tmp_path / "missing.jpg")])


def test_classes_groups_and_category_ids_come_from_the_checkpoint(tiny_base_model, tiny_dataset, tmp_path):
    from loce_cli.engine.predict.images import read_classes

    cats = json.loads((tiny_dataset / "annotations" / "lvis_v1_train.json").read_text())["categories"]
    names, groups, ids = read_classes(tiny_base_model[1])
    assert names == tuple(c["name"] for c in cats) and groups == tuple(c["frequency"] for c in cats)
    assert ids == tuple(c["id"] for c in cats)
    ckpt = torch.load(str(tiny_base_model[1]), map_location="cpu", weights_only=True)
    del ckpt["meta"]["class_ids"]  # a checkpoint from before class ids were recorded: ids 1..C
    torch.save({"state_dict": ckpt["state_dict"], "meta": ckpt["meta"]}, tmp_path / "old.pth")
    assert read_classes(tmp_path / "old.pth") == (names, groups, None)
    del ckpt["meta"]["class_frequency"]
    torch.save({"state_dict": ckpt["state_dict"], "meta": ckpt["meta"]}, tmp_path / "nofreq.pth")
    with pytest.raises(DataError, match="no frequency groups"):
        read_classes(tmp_path / "nofreq.pth")


def test_extreme_aspect_ratios_warn_and_the_rest_is_written(tiny_base_model, inputs, tmp_path):
    """6000x20 and 20x6000 images decode but shrink to 0 px at the model's test scale (128): each is refused
    with a one-line warning; a thin image that still fits (2000x40 -> 128x3 px) is predicted, as are the others,
    and predictions.json is written for them (issue 31)."""
    config, ckpt, options = tiny_base_model
    folder, _ = inputs
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(folder / "a.jpg", mixed / "a.jpg")
    rng = np.random.default_rng(1)
    for name, (w, h) in {"wide.png": (6000, 20), "tall.png": (20, 6000), "thin.png": (2000, 40)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(mixed / name)
    warnings = []
    report = predict(PredictRequest(str(config), str(ckpt), [str(mixed)], str(tmp_path / "o"), 0.0, MAX_DETS,
                                    "cpu", cfg_options=options), warn=warnings.append)
    assert sorted(Path(f.input).name for f in report.failed) == ["tall.png", "wide.png"]
    assert len(warnings) == 2 and all("\n" not in w and "aspect ratio 300:1" in w for w in warnings)
    assert sorted(Path(i.input).name for i in report.images) == ["a.jpg", "thin.png"]
    assert [(i.width, i.height) for i in report.images if i.input.endswith("thin.png")] == [(2000, 40)]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "predictions.json", "thin.png"]
    dets = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert {Path(d["file_name"]).name for d in dets} <= {"a.jpg", "thin.png"} and dets
    for d in dets:  # boxes within their image
        x, y, w, h = d["bbox"]
        W, H = (2000, 40) if d["file_name"].endswith("thin.png") else (64, 64)
        assert 0 <= x and 0 <= y and x + w <= W + 1e-3 and y + h <= H + 1e-3
    with pytest.raises(DataError, match=r"6000x20 px.*cannot be resized to the model's test scale"):
        predict(PredictRequest(str(config), str(ckpt), [str(mixed / "wide.png")], str(tmp_path / "one"), THR,
                               MAX_DETS, "cpu", cfg_options=options))

"""`loce data prep` engine: the validator on clean synthetic data, on each kind of bad file, the subset, the meta."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from loce_cli.core.frequency import frequency_group
from loce_cli.engine.data.prep import (META_NAME, MissingDataError, check_prepared, make_subset, prep_dataset,
                                  read_meta)
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError


@pytest.fixture
def root(tiny_dataset, tmp_path):
    """A writable copy of the tiny synthetic dataset."""
    dst = tmp_path / "lvis"
    shutil.copytree(tiny_dataset, dst)
    return dst


def _ann(root, split="train"):
    return root / "annotations" / f"lvis_v1_{split}.json"


def _load(root, split="train"):
    return json.loads(_ann(root, split).read_text())


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _kinds(result, severity="error"):
    return {p.kind: p for _, p in result.all_problems() if p.severity == severity}


def _bad(root, mutate=None, text=None, split="train", **kw):
    """Rewrite one annotation file (mutated JSON or raw text), prep, check that nothing was written or changed."""
    path = _ann(root, split)
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    else:
        data = _load(root, split)
        data = mutate(data) or data
        path.write_text(json.dumps(data))
    before = {p: _sha(p) for p in (root / "annotations").iterdir()}
    result = prep_dataset(root, **kw)
    assert not result.ok and result.errors > 0
    assert result.meta_path is None and not (root / "annotations" / META_NAME).exists()
    assert {p: _sha(p) for p in (root / "annotations").iterdir()} == before  # inputs untouched
    return result


# ------------------------------------------------------------------------------------------------ clean

def test_clean_synthetic_dataset_validates_and_writes_meta(root):
    result = prep_dataset(root, check_images="all")
    assert result.ok and result.errors == 0, result.all_problems()
    assert result.version == "v1"
    train = _load(root)
    cats = train["categories"]
    assert result.num_classes == len(cats)
    assert sum(f.images_checked for f in result.files) == len(train["images"]) + len(_load(root, "val")["images"])
    meta = json.loads((root / "annotations" / META_NAME).read_text())
    assert Path(result.meta_path) == root / "annotations" / META_NAME
    assert meta["version"] == "v1" and meta["train_file"] == "lvis_v1_train.json"
    assert meta["classes"] == [c["name"] for c in cats]
    assert meta["category_ids"] == [c["id"] for c in cats]
    assert meta["frequency"] == [c["frequency"] for c in cats]
    assert meta["groups"] == {g: sum(c["frequency"] == g for c in cats) for g in "rcf"}
    entry = meta["files"]["lvis_v1_train.json"]
    assert entry["image_count"] == [c["image_count"] for c in cats]
    assert entry["instance_count"] == [c["instance_count"] for c in cats]
    assert (entry["images"], entry["annotations"]) == (len(train["images"]), len(train["annotations"]))
    assert entry["sha256"] == _sha(_ann(root)) and entry["size"] == _ann(root).stat().st_size
    assert meta["files"]["lvis_v1_val.json"]["sha256"] == _sha(_ann(root, "val"))
    assert meta["image_root"] == ".." and entry["image_dirs"] == ["train2017"]
    # the synthetic train file has images without objects: a warning, not an error
    assert "images-without-annotations" in _kinds(result, "warning")


def test_frequency_groups_recomputed_from_image_counts_match_the_file(root):
    prep_dataset(root, check_images="none")
    meta = json.loads((root / "annotations" / META_NAME).read_text())
    recomputed = [frequency_group(n) for n in meta["files"]["lvis_v1_train.json"]["image_count"]]
    assert recomputed == [c["frequency"] for c in _load(root)["categories"]] == meta["frequency"]


def test_default_synthetic_dataset_has_all_three_groups(default_dataset, tmp_path):
    src, synth = default_dataset
    dst = tmp_path / "d"
    shutil.copytree(src / "annotations", dst / "annotations")
    result = prep_dataset(dst, check_images="none")  # image folders not copied: only the folder check fails
    assert {p.kind for _, p in result.all_problems() if p.severity == "error"} == {"image-dir-missing"}
    (dst / "train2017").symlink_to(src / "train2017")
    (dst / "val2017").symlink_to(src / "val2017")
    result = prep_dataset(dst, check_images="sample")
    assert result.ok
    assert result.classes_per_group == synth.classes_per_group
    assert "frequency-mismatch" not in _kinds(result, "warning")


def test_rerun_replaces_meta_atomically(root):
    prep_dataset(root, check_images="none")
    meta = root / "annotations" / META_NAME
    first = json.loads(meta.read_text())
    prep_dataset(root, check_images="none")
    assert json.loads(meta.read_text())["classes"] == first["classes"]
    assert [p.name for p in (root / "annotations").iterdir() if p.name.startswith(".")] == []  # no temp files


# ------------------------------------------------------------------------------------------- bad files

def test_truncated_json(root):
    raw = _ann(root).read_bytes()
    r = _bad(root, text=raw[: len(raw) // 2])
    p = _kinds(r)["not-json"]
    assert "truncated" in p.examples[0] and "lvis_v1_train.json" in p.examples[0]


def test_not_json(root):
    r = _bad(root, text="this is not json at all\n")
    assert "line 1" in _kinds(r)["not-json"].examples[0]


def test_empty_file(root):
    r = _bad(root, text=b"")
    assert "empty" in _kinds(r)["not-json"].examples[0]


def test_results_list_instead_of_annotations(root):
    dets = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]
    r = _bad(root, text=json.dumps(dets))
    assert "results list" in _kinds(r)["wrong-shape"].examples[0]


def test_coco_file_without_frequency(root):
    def coco(d):
        for c in d["categories"]:
            del c["frequency"]
            c["supercategory"] = "thing"
    r = _bad(root, coco)
    assert "COCO" in _kinds(r)["wrong-shape"].examples[0]


def test_missing_top_level_list(root):
    r = _bad(root, lambda d: d.pop("annotations") and None)
    assert "annotations" in _kinds(r)["wrong-shape"].examples[0]


def test_duplicate_image_ids(root):
    def dup(d):
        d["images"][1]["id"] = d["images"][0]["id"]
    r = _bad(root, dup)
    p = _kinds(r)["duplicate-image-id"]
    assert p.count == 1 and "appears 2 times" in p.examples[0]


def test_annotation_for_a_missing_image(root):
    def orphan(d):
        d["annotations"][0]["image_id"] = 999999
    r = _bad(root, orphan)
    p = _kinds(r)["missing-image"]
    assert p.count == 1 and "image_id 999999" in p.examples[0]


def test_unknown_category(root):
    def unknown(d):
        d["annotations"][2]["category_id"] = 77
        d["annotations"][3]["category_id"] = 78
    r = _bad(root, unknown)
    p = _kinds(r)["unknown-category"]
    assert p.count == 2 and "category_id 77" in p.examples[0]


def test_nan_box(root):
    def nan(d):
        d["annotations"][0]["bbox"][2] = float("nan")  # json.dumps writes the non-standard literal NaN
    r = _bad(root, nan)
    assert _kinds(r)["bad-box"].count == 1 and "nan" in _kinds(r)["bad-box"].examples[0]
    assert "non-standard-json" in _kinds(r, "warning")


def test_negative_and_zero_size_boxes(root):
    def neg(d):
        d["annotations"][0]["bbox"][2] = -5.0
        d["annotations"][1]["bbox"][3] = 0
    r = _bad(root, neg)
    assert _kinds(r)["bad-box"].count == 2


def test_box_outside_the_image(root):
    def out(d):
        d["annotations"][0]["bbox"] = [50.0, 50.0, 40.0, 10.0]  # 64 px images
    r = _bad(root, out)
    assert "64 x 64 image" in _kinds(r)["box-outside"].examples[0]


def test_malformed_bbox(root):
    def short(d):
        d["annotations"][0]["bbox"] = [1, 2, 3]
    r = _bad(root, short)
    assert "bbox is [1, 2, 3]" in _kinds(r)["bad-annotation"].examples[0]


def test_degenerate_polygons(root):
    def degenerate(d):
        d["annotations"][0]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # two points
        d["annotations"][1]["segmentation"] = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]  # odd count
        d["annotations"][2]["segmentation"] = []
        del d["annotations"][3]["segmentation"]
    r = _bad(root, degenerate)
    p = _kinds(r)["bad-segmentation"]
    assert p.count == 4
    assert "degenerate polygon with 4" in p.examples[0] and "7 coordinate" in p.examples[1]
    assert "empty list" in p.examples[2]


def test_bad_frequency_and_category_lists(root):
    def bad(d):
        d["categories"][0]["frequency"] = "x"
        d["images"][0]["neg_category_ids"] = [999]
    r = _bad(root, bad)
    assert "frequency is 'x'" in _kinds(r)["bad-frequency"].examples[0]
    assert "999" in _kinds(r)["bad-image-category-list"].examples[0]


def test_empty_annotation_list(root):
    r = _bad(root, lambda d: d.update(annotations=[]))
    assert "no-annotations" in _kinds(r)


def test_missing_image_file(root):
    data = _load(root)
    victim = root / data["images"][0]["file_name"]
    victim.unlink()
    r = prep_dataset(root, check_images="all")
    assert not r.ok and r.meta_path is None and not (root / "annotations" / META_NAME).exists()
    p = _kinds(r)["image-file-missing"]
    assert p.count == 1 and str(victim) in p.examples[0]
    assert r.layout_help and "train2017/" in r.layout_help
    assert prep_dataset(root, check_images="none").ok  # not looked at without image checks


def test_unreadable_and_wrong_size_images(root):
    data = _load(root)
    (root / data["images"][0]["file_name"]).write_bytes(b"not an image")
    from PIL import Image

    Image.new("RGB", (10, 12)).save(root / data["images"][1]["file_name"], format="JPEG")
    r = prep_dataset(root, check_images="all")
    assert _kinds(r)["image-unreadable"].count == 1
    assert "10 x 12, annotated as 64 x 64" in _kinds(r)["image-size"].examples[0]


def test_missing_image_folder(root):
    shutil.rmtree(root / "val2017")
    r = prep_dataset(root, check_images="sample")
    assert "val2017" in _kinds(r)["image-dir-missing"].examples[0]


def test_v05_file_passed_as_v1(root):
    def v05(d):
        d["info"]["version"] = "0.5"
    r = _bad(root, v05, version="v1")
    assert "looks like LVIS v0.5" in _kinds(r)["wrong-version"].examples[0]


def test_v05_dataset_detected_and_v1_request_names_it(root):
    for split in ("train", "val"):
        data = _load(root, split)
        data["info"]["version"] = "0.5"
        (root / "annotations" / f"lvis_v0.5_{split}.json").write_text(json.dumps(data))
        _ann(root, split).unlink()
    with pytest.raises(MissingDataError) as e:
        prep_dataset(root, version="v1")
    assert "found LVIS v0.5 files instead" in e.value.message and "lvis_v1_train.json" in e.value.layout
    r = prep_dataset(root, version="auto", check_images="none")
    assert r.ok and r.version == "v0.5"
    assert json.loads((root / "annotations" / META_NAME).read_text())["version"] == "v0.5"


def test_train_and_val_categories_must_agree(root):
    def rename(d):
        d["categories"][0]["name"] = "something_else"
    r = _bad(root, rename, split="val")
    assert "categories-differ" in _kinds(r)


def test_missing_root_and_missing_files(tmp_path):
    with pytest.raises(MissingDataError) as e:
        prep_dataset(tmp_path / "nowhere")
    assert "annotations/" in e.value.layout and "COCO 2017" in e.value.layout
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="no annotation files"):
        prep_dataset(tmp_path / "empty")
    with pytest.raises(LoceUsageError):
        prep_dataset(tmp_path / "empty", version="v2")


def test_only_val_present_is_a_warning(root):
    _ann(root).unlink()
    r = prep_dataset(root, check_images="none")
    assert r.ok and "file-missing" in _kinds(r, "warning")
    meta = json.loads((root / "annotations" / META_NAME).read_text())
    assert meta["train_file"] is None and list(meta["files"]) == ["lvis_v1_val.json"]


# ----------------------------------------------------------------------------------------------- subset

def test_subset_round_trip(root, tmp_path):
    full = _load(root)
    out = tmp_path / "small"
    sub = make_subset(root, out, 0.5, seed=1)
    assert sub.prep.ok and sub.images == round(0.5 * len(full["images"]))
    small = json.loads((out / "annotations" / "lvis_v1_train.json").read_text())
    assert small["categories"] == full["categories"]  # categories and their groups from the full set
    kept = {im["id"] for im in small["images"]}
    by_image = lambda d: {i: sorted(a["id"] for a in d["annotations"] if a["image_id"] == i) for i in kept}
    assert by_image(small) == by_image(full)  # each kept image keeps all its annotations
    assert sub.annotations == len(small["annotations"])
    meta = json.loads((out / "annotations" / META_NAME).read_text())
    assert meta["frequency"] == [c["frequency"] for c in full["categories"]]
    assert meta["subset"]["fraction"] == 0.5 and meta["subset"]["source_sha256"] == _sha(_ann(root))
    assert meta["files"]["lvis_v1_train.json"]["images"] == len(kept)
    # the subset is a dataset root of its own: its images resolve, and it validates again
    assert prep_dataset(out, check_images="all").errors == 0
    # same seed, same file; another seed, other images
    again = make_subset(root, tmp_path / "again", 0.5, seed=1)
    assert _sha(Path(again.out_dir) / "annotations" / "lvis_v1_train.json") == _sha(out / "annotations" /
                                                                                      "lvis_v1_train.json")
    other = json.loads((Path(make_subset(root, tmp_path / "other", 0.5, seed=2).out_dir) / "annotations" /
                        "lvis_v1_train.json").read_text())
    assert {im["id"] for im in other["images"]} != kept
    assert not (root / "annotations" / META_NAME).exists()  # the source is never touched


def test_subset_refuses_bad_options(root, tmp_path):
    with pytest.raises(LoceUsageError):
        make_subset(root, tmp_path / "s", 0.0)
    with pytest.raises(LoceUsageError):
        make_subset(root, root, 0.5)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(OutputExistsError):
        make_subset(root, tmp_path / "full", 0.5)


def test_subset_of_a_bad_file_leaves_nothing(root, tmp_path):
    data = _load(root)
    for a in data["annotations"]:
        a["bbox"][2] = -1.0
    _ann(root).write_text(json.dumps(data))
    sub = make_subset(root, tmp_path / "s", 0.5)
    assert not sub.prep.ok
    assert [p.name for p in (tmp_path / "s" / "annotations").iterdir()] == []


# ------------------------------------------------------------------------------------------------- meta

class _Cfg(dict):
    __getattr__ = dict.__getitem__


def _cfg(ann_file, required=True):
    train = _Cfg(type="LoceLVISDataset", ann_file=str(ann_file))
    if required:
        train["loce_meta"] = "required"
    return _Cfg(data=_Cfg(train=train))


def test_check_prepared_names_the_prep_command(root):
    cfg = _cfg(_ann(root))
    with pytest.raises(DataError) as e:
        check_prepared(cfg, "configs/lvis/x.py")
    assert f"loce data prep --root {root}" in e.value.hint and "configs/lvis/x.py" in e.value.message
    check_prepared(_cfg(_ann(root), required=False), "configs/synthetic/x.py")  # no meta needed there
    prep_dataset(root, check_images="none")
    check_prepared(cfg, "configs/lvis/x.py")
    assert read_meta(_ann(root))["classes"] == [c["name"] for c in _load(root)["categories"]]
    with open(_ann(root), "a") as f:  # the file changed after prep
        f.write(" ")
    with pytest.raises(DataError, match="changed since"):
        check_prepared(cfg, "configs/lvis/x.py")


def test_image_path_rule_is_the_datasets_and_strips_the_host():
    from loce_cli.engine.data.prep import image_relpath
    from loce_cli.mmdet_ext import datasets

    assert datasets.image_relpath is image_relpath  # prep checks the files the dataset will open
    cases = [({"coco_url": "http://images.cocodataset.org/train2017/000000391895.jpg"}, "train2017/000000391895.jpg"),
             ({"coco_url": "https://host/val2017/1.jpg", "file_name": "x.jpg"}, "val2017/1.jpg"),
             ({"coco_url": "train2017/000000000001.jpg"}, "train2017/000000000001.jpg"),
             ({"file_name": "COCO_val2014_000000000001.jpg"}, "COCO_val2014_000000000001.jpg"),
             ({"coco_url": "http://h/a/b.jpg?x=1"}, "a/b.jpg")]
    for info, expected in cases:
        assert image_relpath(info) == expected, info
    with pytest.raises(ValueError, match="neither coco_url nor file_name"):
        image_relpath({"id": 7})


# ------------------------------------------------------------------------------- consumed by training

def _dataset(ann_file, **kw):
    import loce_cli.mmdet_ext  # noqa: F401  (registers LoceLVISDataset)
    from mmdet.datasets import build_dataset

    return build_dataset(dict(type="LoceLVISDataset", ann_file=str(ann_file), img_prefix=str(ann_file.parents[1]),
                              pipeline=[], **kw))


def test_dataset_takes_classes_and_groups_from_the_meta(root):
    prep_dataset(root, check_images="none")
    meta_path = root / "annotations" / META_NAME
    meta = json.loads(meta_path.read_text())
    meta["frequency"] = ["f"] * len(meta["frequency"])  # marks what was read from the meta
    meta_path.write_text(json.dumps(meta))
    train = _dataset(_ann(root))
    assert train.CLASSES == tuple(meta["classes"]) and train.class_frequency == ("f",) * len(meta["classes"])
    assert train.meta["version"] == "v1"
    val = _dataset(_ann(root, "val"), test_mode=True)  # val counts are the training set's
    assert val.class_image_count == tuple(meta["files"]["lvis_v1_train.json"]["image_count"])
    meta["classes"][0] = "renamed"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="loce data prep --root"):
        _dataset(_ann(root))


def test_dataset_requiring_meta_names_prep(root):
    with pytest.raises(FileNotFoundError, match="loce data prep --root"):
        _dataset(_ann(root), loce_meta="required")
    assert _dataset(_ann(root)).meta is None  # optional by default (synthetic configs)


def test_lvis_config_on_unprepared_data_fails_early(root):
    from loce_cli.engine.training.run import TrainRequest, validate

    config = Path(__file__).resolve().parents[2] / "configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"
    classes = len(json.loads(_ann(root).read_text())["categories"])  # the class-count check runs too
    req = TrainRequest(config=str(config), no_validate=True,  # no val set here: no evaluation during training
                       cfg_options=[f"data.train.ann_file={_ann(root)}", f"data.train.img_prefix={root}/",
                                    f"model.roi_head.bbox_head.num_classes={classes}",
                                    f"model.roi_head.mask_head.num_classes={classes}"])
    with pytest.raises(DataError) as e:
        validate(req)
    assert f"loce data prep --root {root}" in e.value.hint
    prep_dataset(root, check_images="none")
    cfg = validate(req)
    assert cfg.data.train.loce_meta == "required"

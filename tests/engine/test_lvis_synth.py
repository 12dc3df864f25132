"""``loce data synth --like lvis-v1 / lvis-v0.5``: the real LVIS layout, names, sizes, class counts and groups,
consistent counts, accepted by ``loce data prep`` and by mmdet's own LVIS datasets."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.core.frequency import frequency_group
from loce_cli.engine.data.synth_lvis import COCO_HOST, IMAGE_SIZES, LvisLikeOptions, class_image_counts, \
    synthesize_lvis_like
from loce_cli.errors import LoceUsageError, OutputExistsError

OFFICIAL = {"v1": (1203, {"r": 337, "c": 461, "f": 405}), "v0.5": (1230, {"r": 454, "c": 461, "f": 315})}
ROOTS = {"v1": "lvis_v1_root", "v0.5": "lvis_v05_root"}


@pytest.fixture(params=["v1", "v0.5"])
def lvis(request):
    """(version, dataset root) for each LVIS version."""
    return request.param, request.getfixturevalue(ROOTS[request.param])


def _load(root: Path, version: str, split: str) -> dict:
    return json.loads((root / "annotations" / f"lvis_{version}_{split}.json").read_text())


def test_layout_names_urls_and_sizes(lvis):
    version, root = lvis
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "train2017", "val2017"]
    assert sorted(p.name for p in (root / "annotations").iterdir()) == sorted(
        [f"lvis_{version}_train.json", f"lvis_{version}_val.json", "loce_meta.json"])
    sizes = {(w, h) for w, h, _ in IMAGE_SIZES}
    folders_seen = {}
    for split in ("train", "val"):
        data = _load(root, version, split)
        ids = [im["id"] for im in data["images"]]
        assert len(set(ids)) == len(ids) and all(1 <= i <= 581929 for i in ids)
        for im in data["images"]:
            m = re.fullmatch(re.escape(COCO_HOST) + r"(train2017|val2017)/(\d{12})\.jpg", im["coco_url"])
            assert m, im["coco_url"]
            assert int(m.group(2)) == im["id"]
            assert (im["width"], im["height"]) in sizes
            assert (root / m.group(1) / f"{m.group(2)}.jpg").is_file()
            folders_seen.setdefault(split, set()).add(m.group(1))
            if version == "v0.5":  # COCO 2014 names; mmdet's LVISV05Dataset keeps their last 16 characters
                assert re.fullmatch(r"COCO_(train|val)2014_\d{12}\.jpg", im["file_name"])
                assert im["file_name"][-16:] == f"{m.group(2)}.jpg"
            else:
                assert "file_name" not in im  # LVIS v1 names images by coco_url only
    assert folders_seen["train"] == {"train2017"}
    # LVIS v1 val draws on COCO train2017 and val2017; v0.5 val is COCO val2017
    assert folders_seen["val"] == ({"train2017", "val2017"} if version == "v1" else {"val2017"})
    from PIL import Image

    for im in _load(root, version, "val")["images"][:10]:  # annotated sizes are the files' sizes
        with Image.open(root / im["coco_url"][len(COCO_HOST):]) as f:
            assert f.size == (im["width"], im["height"])


def test_official_classes_groups_and_consistent_counts(lvis):
    version, root = lvis
    train, val = _load(root, version, "train"), _load(root, version, "val")
    n, groups = OFFICIAL[version]
    cats = train["categories"]
    assert len(cats) == n and [c["id"] for c in cats] == list(range(1, n + 1))
    assert {g: sum(c["frequency"] == g for c in cats) for g in "rcf"} == groups
    assert val["categories"] == cats
    img_of = {}
    inst = np.zeros(n + 1, np.int64)
    for a in train["annotations"]:
        img_of.setdefault(a["category_id"], set()).add(a["image_id"])
        inst[a["category_id"]] += 1
    for c in cats:  # the fields are the train split's own counts, the group follows LVIS's thresholds
        assert c["image_count"] == len(img_of.get(c["id"], ())), c["name"]
        assert c["instance_count"] == inst[c["id"]], c["name"]
        assert c["frequency"] == frequency_group(c["image_count"])
    assert min(c["image_count"] for c in cats if c["frequency"] == "f") > 100
    assert max(c["image_count"] for c in cats if c["frequency"] == "r") <= 10
    for split in (train, val):  # neg: verified absent; not exhaustive: present but not all annotated
        present = {}
        for a in split["annotations"]:
            present.setdefault(a["image_id"], set()).add(a["category_id"])
        assert any(im["neg_category_ids"] for im in split["images"])
        assert any(im["not_exhaustive_category_ids"] for im in split["images"])
        for im in split["images"]:
            assert not set(im["neg_category_ids"]) & present.get(im["id"], set())
            assert set(im["not_exhaustive_category_ids"]) <= present.get(im["id"], set())
            assert im["neg_category_ids"] == sorted(set(im["neg_category_ids"]))


def test_prep_accepts_it_with_the_official_counts(lvis, tmp_path):
    from loce_cli.engine.data.prep import prep_dataset

    version, root = lvis
    result = prep_dataset(root, check_images="all", write=False)
    assert result.ok and result.version == version
    n, groups = OFFICIAL[version]
    assert result.num_classes == n and result.classes_per_group == groups
    train = next(f for f in result.files if f.role == "train")
    assert train.problems == [] and train.images_checked == train.images == 1000
    kinds = {p.kind for _, p in result.all_problems()}
    assert kinds <= {"classes-without-instances"}  # val lacks some classes, as the real val sets do


def test_prep_cli_reports_the_official_counts(lvis):
    version, root = lvis
    r = CliRunner().invoke(app, ["data", "prep", "--root", str(root), "--check-images", "none", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    n, groups = OFFICIAL[version]
    assert out["ok"] and out["version"] == version and out["num_classes"] == n
    assert out["classes_per_group"] == {"rare": groups["r"], "common": groups["c"], "frequent": groups["f"]}


def test_mmdets_own_lvis_datasets_find_every_image(lvis_v1_root, lvis_v05_root):
    """mmdet 2.28: LVISV1Dataset strips COCO's host from coco_url (img_prefix = data root); LVISV05Dataset reads
    file_name's last 16 characters (img_prefix = data root + 'train2017/', mmdet's own v0.5 config)."""
    from loce_cli import compat

    compat.apply()
    from mmdet.datasets import build_dataset

    v1 = build_dataset(dict(type="LVISV1Dataset", ann_file=str(lvis_v1_root / "annotations/lvis_v1_val.json"),
                            img_prefix=str(lvis_v1_root) + "/", pipeline=[], test_mode=True))
    assert len(v1) == 100 and all((lvis_v1_root / d["filename"]).is_file() for d in v1.data_infos)
    v05 = build_dataset(dict(type="LVISV05Dataset",
                             ann_file=str(lvis_v05_root / "annotations/lvis_v0.5_train.json"),
                             img_prefix=str(lvis_v05_root / "train2017") + "/", pipeline=[]))
    assert len(v05.data_infos) == 1000
    assert all((lvis_v05_root / "train2017" / d["filename"]).is_file() for d in v05.data_infos)


def _tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "loce_meta.json"}


def test_cli_writes_the_same_bytes_for_the_same_seed(lvis_v05_root, tmp_path):
    """Through the CLI, with defaults: byte-identical to the session's dataset (same seed), atomic, then refuses
    the non-empty folder without --force."""
    out = tmp_path / "again"
    r = CliRunner().invoke(app, ["data", "synth", "--like", "lvis-v0.5", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["version"] == "v0.5" and res["num_classes"] == 1230 and res["train"]["images"] == 1000
    assert _tree_digest(out) == _tree_digest(lvis_v05_root)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no staging folder left behind
    r = CliRunner().invoke(app, ["data", "synth", "--like", "lvis-v0.5", "--out", str(out)])
    assert r.exit_code == 1 and "not empty" in r.stderr


def test_other_seed_other_counts_same_groups():
    a = class_image_counts("v1", 1000, np.random.default_rng(0))
    b = class_image_counts("v1", 1000, np.random.default_rng(1))
    assert not np.array_equal(a[0], b[0])
    for counts, groups in (a, b):
        assert all(frequency_group(int(n)) == g for n, g in zip(counts, groups))


def test_refuses_non_empty_out_and_bad_options(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError):
        synthesize_lvis_like(tmp_path, LvisLikeOptions())
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    for bad in (dict(like="lvis-v2"), dict(train_images=100), dict(val_images=0)):
        with pytest.raises(LoceUsageError):
            synthesize_lvis_like(tmp_path / "new", LvisLikeOptions(**bad))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, match", [
    (["--like", "lvis-v2"], "--like must be one of"),
    (["--like", "lvis-v1", "--num-classes", "5"], "--num-classes cannot be combined with --like"),
    (["--like", "lvis-v1", "--image-size", "64", "--max-objects", "3"], "--image-size, --max-objects cannot"),
    (["--like", "lvis-v1", "--train-images", "50"], "between 500 and 20000"),
])
def test_cli_usage_errors_write_nothing(tmp_path, args, match):
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["data", "synth", "--out", str(out), *args])
    assert r.exit_code == 2, r.output
    assert match in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []

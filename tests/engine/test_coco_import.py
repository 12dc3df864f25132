"""``loce data import coco``: groups against a direct count of the COCO files, what each image and category gets,
the layout prep accepts, and the refusals (one line, nothing written, input untouched)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.data.coco_import import import_coco
from loce_cli.engine.data.prep import prep_dataset, read_meta
from loce_cli.errors import DataError, LoceUsageError
from tests.engine.coco_data import make_coco


def _direct_groups(train_file: Path, rare_max: int, common_max: int) -> dict:
    """{category id: (group, training images, instances)} counted straight from the COCO file (crowd regions are
    not instances)."""
    data = json.loads(train_file.read_text())
    images, instances = defaultdict(set), defaultdict(int)
    for a in data["annotations"]:
        if not a.get("iscrowd"):
            images[a["category_id"]].add(a["image_id"])
            instances[a["category_id"]] += 1
    out = {}
    for c in data["categories"]:
        n = len(images[c["id"]])
        out[c["id"]] = ("r" if n <= rare_max else "c" if n <= common_max else "f", n, instances[c["id"]])
    return out


def _sha(paths) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco") / "src", masks=True)


@pytest.mark.parametrize("cutoffs", [(10, 100), (5, 50)])
def test_groups_equal_a_direct_count(coco, tmp_path, cutoffs):
    before = _sha([coco["train"], coco["val"]])
    res = import_coco(tmp_path / "out", coco["train"], coco["train_images"], coco["val"], coco["val_images"],
                      rare_max=cutoffs[0], common_max=cutoffs[1])
    want = _direct_groups(coco["train"], *cutoffs)
    assert sorted(n for _g, n, _m in want.values()) == [0, 0, 1, 10, 11, 100, 101]  # straddles the cut-offs
    for split in ("train", "val"):
        cats = json.loads((tmp_path / "out" / "annotations" / f"{split}.json").read_text())["categories"]
        got = {c["id"]: (c["frequency"], c["image_count"], c["instance_count"]) for c in cats}
        assert got == want
    meta = read_meta(tmp_path / "out" / "annotations" / "train.json")
    assert meta["frequency"] == [want[c][0] for c in meta["category_ids"]]
    assert res.classes_per_group == {g: sum(1 for v in want.values() if v[0] == g) for g in "rcf"}
    assert res.val_only == ["val_only"] and any("val_only" in w for w in res.warnings)
    # `loce data prep` run again on the imported folder keeps the import's cut-offs (recorded in the train file):
    # no frequency-mismatch warning, the same groups in the rewritten meta
    again = prep_dataset(tmp_path / "out")
    kinds = [p.kind for p in again.problems] + [p.kind for r in again.files for p in r.problems]
    assert again.ok and "frequency-mismatch" not in kinds, kinds
    assert read_meta(tmp_path / "out" / "annotations" / "train.json")["frequency"] == meta["frequency"]
    assert _sha([coco["train"], coco["val"]]) == before


def test_images_and_annotations_as_coco_means_them(coco, tmp_path):
    import_coco(tmp_path / "out", coco["train"], coco["train_images"], coco["val"], coco["val_images"])
    for split in ("train", "val"):
        src = json.loads(coco[split].read_text())
        got = json.loads((tmp_path / "out" / "annotations" / f"{split}.json").read_text())
        assert [a["id"] for a in got["annotations"]] == [a["id"] for a in src["annotations"]]
        assert [a["iscrowd"] for a in got["annotations"]] == [a["iscrowd"] for a in src["annotations"]]
        assert [(c["id"], c["name"]) for c in got["categories"]] == [(c["id"], c["name"]) for c in src["categories"]]
        all_ids = {c["id"] for c in src["categories"]}
        annotated = defaultdict(set)
        for a in src["annotations"]:
            annotated[a["image_id"]].add(a["category_id"])
        empty = 0
        # val lists each image's negatives (for the lvis API and outside tools); train says it once in its info
        assert got["info"].get("all_categories_exhaustive") is (True if split == "train" else None)
        for s_im, g_im in zip(src["images"], got["images"]):
            assert g_im["id"] == s_im["id"]
            if split == "val":
                assert g_im["neg_category_ids"] == sorted(all_ids - annotated[s_im["id"]])
                assert g_im["not_exhaustive_category_ids"] == []
            else:
                assert "neg_category_ids" not in g_im and "not_exhaustive_category_ids" not in g_im
            assert g_im["file_name"] == f"{split}/{s_im['file_name']}"
            assert (tmp_path / "out" / g_im["file_name"]).is_file()
            empty += not annotated[s_im["id"]]
        assert empty >= 4  # images without annotations: every category verified absent
    assert (tmp_path / "out" / "train").is_symlink()
    meta = json.loads((tmp_path / "out" / "annotations" / "loce_meta.json").read_text())
    for name in ("train.json", "val.json"):  # the meta describes the files as written (streamed)
        raw = (tmp_path / "out" / "annotations" / name).read_bytes()
        assert meta["files"][name]["size"] == len(raw)
        assert meta["files"][name]["sha256"] == hashlib.sha256(raw).hexdigest()
    again = prep_dataset(tmp_path / "out", check_images="all")  # prep accepts what the import wrote
    assert again.ok, [p.examples for r in again.files for p in r.problems if p.severity == "error"]


def test_prep_needs_the_lists_without_the_exhaustive_flag(coco, tmp_path):
    """The flag is what lets the train file go without per-image lists: taken out, prep refuses the file."""
    import_coco(tmp_path / "out", coco["train"], coco["train_images"], coco["val"], coco["val_images"])
    path = tmp_path / "out" / "annotations" / "train.json"
    data = json.loads(path.read_text())
    del data["info"]["all_categories_exhaustive"]
    path.write_text(json.dumps(data))
    res = prep_dataset(tmp_path / "out", check_images="none")
    assert not res.ok
    assert any(p.kind == "bad-image-category-list" and "no neg_category_ids" in p.examples[0]
               for r in res.files for p in r.problems)


def test_box_only_and_copy(tmp_path):
    coco = make_coco(tmp_path / "src", masks=False)
    res = import_coco(tmp_path / "out", coco["train"], coco["train_images"], coco["val"], coco["val_images"],
                      copy=True)
    assert not res.masks and not (tmp_path / "out" / "train").is_symlink()
    got = json.loads((tmp_path / "out" / "annotations" / "val.json").read_text())
    assert all("segmentation" not in a for a in got["annotations"])
    assert all((tmp_path / "out" / im["file_name"]).is_file() for im in got["images"])


def _broken(coco: dict, tmp_path: Path, edit) -> Path:
    data = json.loads(coco["train"].read_text())
    edit(data)
    p = tmp_path / "bad_train.json"
    p.write_text(json.dumps(data))
    return p


def _drop_image_file(coco, tmp_path):
    data = json.loads(coco["train"].read_text())
    data["images"][3]["file_name"] = "not_there.png"
    p = tmp_path / "bad_train.json"
    p.write_text(json.dumps(data))
    return p


BAD = {
    "results list": (lambda d: None, "top level is a detection results list"),
    "duplicate image id": (lambda d: d["images"][1].update(id=d["images"][0]["id"]), "duplicate image id"),
    "duplicate annotation id": (lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]),
                                "duplicate annotation id"),
    "dangling category": (lambda d: d["annotations"][0].update(category_id=999), "unlisted category_id"),
    "dangling image": (lambda d: d["annotations"][0].update(image_id=-5), "unlisted image_id"),
    "box outside": (lambda d: d["annotations"][0].update(bbox=[150.0, 10.0, 40.0, 10.0]), "outside their image"),
    "zero width": (lambda d: d["annotations"][0].update(bbox=[1.0, 1.0, 0.0, 5.0]), "positive finite size"),
    "zero area": (lambda d: d["annotations"][0].update(area=0), "area is 0"),
    "text area": (lambda d: d["annotations"][0].update(area="12"), "area is '12'"),
    "no width": (lambda d: d["images"][0].update(width=0), "width x height"),
}


@pytest.mark.parametrize("case", [*BAD, "missing image file"])
def test_bad_input_one_line_nothing_written(coco, tmp_path, case):
    if case == "missing image file":
        bad, needle = _drop_image_file(coco, tmp_path), "image file(s) of bad_train.json missing"
    elif case == "results list":
        bad, needle = tmp_path / "bad_train.json", BAD[case][1]
        bad.write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    else:
        bad, needle = _broken(coco, tmp_path, BAD[case][0]), BAD[case][1]
    before = _sha([bad, coco["val"]])
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        import_coco(out, bad, coco["train_images"], coco["val"], coco["val_images"])
    assert needle in e.value.one_line() and "\n" not in e.value.one_line()
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging left behind
    assert _sha([bad, coco["val"]]) == before
    r = CliRunner().invoke(app, ["data", "import", "coco", str(out), "--train", str(bad), "--train-images",
                                 str(coco["train_images"]), "--val", str(coco["val"]), "--val-images",
                                 str(coco["val_images"])])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 1 and len(lines) == 1 and needle in lines[0], r.output


def test_usage_errors(coco, tmp_path):
    with pytest.raises(LoceUsageError):
        import_coco(tmp_path / "o", coco["train"], coco["train_images"], coco["val"], coco["val_images"],
                    rare_max=20, common_max=10)
    with pytest.raises(LoceUsageError):  # OUT holding an input
        import_coco(coco["train_images"].parent, coco["train"], coco["train_images"], coco["val"],
                    coco["val_images"], force=True)


def test_cli_prints_groups(coco, tmp_path):
    r = CliRunner().invoke(app, ["data", "import", "coco", str(tmp_path / "out"), "--train", str(coco["train"]),
                                 "--train-images", str(coco["train_images"]), "--val", str(coco["val"]),
                                 "--val-images", str(coco["val_images"])])
    assert r.exit_code == 0, r.output
    assert "frequent (training images): head (101)" in r.output
    assert "val_only" in r.output  # the warning names it
    r2 = CliRunner().invoke(app, ["data", "import", "coco", str(tmp_path / "out"), "--train", str(coco["train"]),
                                  "--train-images", str(coco["train_images"]), "--val", str(coco["val"]),
                                  "--val-images", str(coco["val_images"])])
    assert r2.exit_code == 1 and "--force" in r2.output


def test_missing_area_filled_as_pycocotools_would(tmp_path):
    coco = make_coco(tmp_path / "src", masks=False)
    data = json.loads(coco["train"].read_text())
    a = data["annotations"][0]
    del a["area"]
    coco["train"].write_text(json.dumps(data))
    import_coco(tmp_path / "out", coco["train"], coco["train_images"], coco["val"], coco["val_images"])
    got = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())["annotations"][0]
    assert got["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])

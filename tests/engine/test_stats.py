import json

import pytest

from loce_cli.engine.data.stats import dataset_stats
from loce_cli.engine.pictures.stats_plot import plot_stats
from loce_cli.errors import DataError, LoceUsageError


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def _mini():
    cats = [{"id": 1, "name": "a", "frequency": "f"}, {"id": 2, "name": "b", "frequency": "r"},
            {"id": 5, "name": "c", "frequency": "c"}]
    images = [{"id": i} for i in range(1, 5)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 1, "category_id": 1},
        {"id": 3, "image_id": 2, "category_id": 1}, {"id": 4, "image_id": 2, "category_id": 5},
        {"id": 5, "image_id": 3, "category_id": 1},
    ]
    return {"images": images, "annotations": anns, "categories": cats}


def test_counts_per_group_from_category_frequency(tmp_path):
    s = dataset_stats(_write(tmp_path / "a.json", _mini()))
    assert s.frequency_source == "categories"
    assert (s.num_images, s.num_annotations, s.num_classes) == (4, 5, 3)
    f, r, c = s.groups["f"], s.groups["r"], s.groups["c"]
    assert (f.classes, f.images, f.instances) == (1, 3, 4)
    assert (c.classes, c.images, c.instances) == (1, 1, 1)
    assert (r.classes, r.images, r.instances, r.classes_without_instances) == (1, 0, 0, 1)
    assert s.head_tail_ratio == 4.0
    d = s.to_dict()
    assert set(d["groups"]) == {"rare", "common", "frequent"}
    assert {c["name"]: c["instances"] for c in d["classes"]} == {"a": 4, "b": 0, "c": 1}


def test_groups_derived_from_image_counts_without_frequency_field(tmp_path):
    data = _mini()
    for c in data["categories"]:
        del c["frequency"]
    s = dataset_stats(_write(tmp_path / "a.json", data))
    assert s.frequency_source == "derived"
    assert {c.name: c.group for c in s.classes} == {"a": "r", "b": "r", "c": "r"}


def test_matches_synthetic_category_fields(tiny_dataset):
    path = tiny_dataset / "annotations" / "lvis_v1_train.json"
    data = json.loads(path.read_text())
    s = dataset_stats(path)
    by_id = {c.id: c for c in s.classes}
    for c in data["categories"]:
        assert by_id[c["id"]].images == c["image_count"]
        assert by_id[c["id"]].instances == c["instance_count"]
        assert by_id[c["id"]].group == c["frequency"]
    assert sum(g.instances for g in s.groups.values()) == len(data["annotations"])


@pytest.mark.parametrize("content,match", [
    ('{"images": [', "not valid JSON"),
    ("[1, 2]", "not an LVIS annotation file"),
    ('{"images": []}', "lacks the list"),
])
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        dataset_stats(p)
    assert info.value.hint


def test_missing_file_and_unknown_category(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        dataset_stats(tmp_path / "nope.json")
    data = _mini()
    data["annotations"].append({"id": 9, "image_id": 1, "category_id": 77})
    with pytest.raises(DataError, match="unknown or missing category_id 77"):
        dataset_stats(_write(tmp_path / "a.json", data))


def test_plot_is_a_real_png(tmp_path, tiny_dataset):
    from PIL import Image

    s = dataset_stats(tiny_dataset / "annotations" / "lvis_v1_train.json")
    out = plot_stats(s, tmp_path / "plots" / "stats.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 800
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["stats.png"]
    with pytest.raises(LoceUsageError):
        plot_stats(s, tmp_path / "stats.txt")

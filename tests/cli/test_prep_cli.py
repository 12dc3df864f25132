"""`loce data prep` on the command line: exit codes, one-line errors, the report, --json, --subset."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app

runner = CliRunner()


@pytest.fixture
def root(tiny_dataset, tmp_path):
    dst = tmp_path / "lvis"
    shutil.copytree(tiny_dataset, dst)
    return dst


def _prep(*args):
    return runner.invoke(app, ["data", "prep", *map(str, args)])


def test_clean_data_exit_0_and_meta_written(root):
    r = _prep("--root", root, "--check-images", "all")
    assert r.exit_code == 0, r.output
    assert "lvis_v1_train.json" in r.output and "wrote" in r.output and "loce_meta.json" in r.output
    assert "image files checked: 56 (all)" in r.output
    assert (root / "annotations" / "loce_meta.json").is_file()


def test_json_output(root):
    r = _prep("--root", root, "--json", "--check-images", "none")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["ok"] is True and data["version"] == "v1" and data["errors"] == 0
    assert data["meta_path"].endswith("loce_meta.json")
    assert set(data["classes_per_group"]) == {"rare", "common", "frequent"}


def test_bad_file_lists_problems_exit_1_writes_nothing(root):
    path = root / "annotations" / "lvis_v1_train.json"
    data = json.loads(path.read_text())
    data["images"][1]["id"] = data["images"][0]["id"]
    data["annotations"][0]["bbox"][2] = -3
    path.write_text(json.dumps(data))
    r = _prep("--root", root, "--check-images", "none")
    assert r.exit_code == 1
    assert "duplicate image ids (1)" in r.stdout and "boxes that are not finite" in r.stdout
    assert "e.g. annotation id" in r.stdout
    assert "nothing written" in r.stderr and "Traceback" not in r.output
    assert not (root / "annotations" / "loce_meta.json").exists()


def test_truncated_file_one_clear_message(root):
    path = root / "annotations" / "lvis_v1_val.json"
    path.write_bytes(path.read_bytes()[:100])
    r = _prep("--root", root)
    assert r.exit_code == 1
    assert "not valid JSON" in r.stdout and "truncated" in r.stdout
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")


def test_missing_data_prints_layout_and_where_to_get_it(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _prep("--root", tmp_path / "empty")
    assert r.exit_code == 1
    assert "annotations/" in r.stderr and "lvis_v1_train.json" in r.stderr and "COCO 2017" in r.stderr
    assert "error: no annotation files under" in r.stderr and "Traceback" not in r.output


def test_missing_image_exit_1(root):
    data = json.loads((root / "annotations" / "lvis_v1_val.json").read_text())
    (root / data["images"][0]["file_name"]).unlink()
    r = _prep("--root", root, "--check-images", "all")
    assert r.exit_code == 1 and "image files missing (1)" in r.stdout


def test_usage_errors_exit_2(root, tmp_path):
    assert _prep("--root", root, "--version", "v2").exit_code == 2
    assert _prep("--root", root, "--check-images", "some").exit_code == 2
    r = _prep("--root", root, "--subset", "0.5")
    assert r.exit_code == 2 and "--out" in r.stderr
    r = _prep("--root", root, "--subset", "1.5", "--out", tmp_path / "s")
    assert r.exit_code == 2 and "--subset must be in (0, 1]" in r.stderr


def test_subset(root, tmp_path):
    out = tmp_path / "small"
    r = _prep("--root", root, "--subset", "0.25", "--seed", "3", "--out", out)
    assert r.exit_code == 0, r.output
    assert "subset: 10 of 40 images" in r.stdout
    assert (out / "annotations" / "lvis_v1_train.json").is_file() and (out / "annotations" / "loce_meta.json").is_file()
    r = _prep("--root", root, "--subset", "0.25", "--out", out)
    assert r.exit_code == 1 and "not empty" in r.stderr


def test_warning_count_is_the_warnings_listed(root, tmp_path):
    """The last line counts the warnings printed above it, not the items they concern (issue 31)."""
    import re

    path = root / "annotations" / "lvis_v1_train.json"
    data = json.loads(path.read_text())
    bare = {im["id"] for im in data["images"][:5]}  # five images lose their annotations: one warning of 5
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in bare]
    path.write_text(json.dumps(data))
    r = _prep("--root", root, "--subset", "0.5", "--out", tmp_path / "small", "--check-images", "none")
    assert r.exit_code == 0, r.output
    listed = [line for line in r.stdout.splitlines() if line.startswith("warning ")]
    assert any("images without annotations" in line and "(5)" in line for line in listed), r.stdout
    counted = re.search(r"\((\d+) warning\(s\) above\)", r.stdout)
    assert counted and int(counted.group(1)) == len(listed), r.stdout

"""Every evaluator refuses the same bad results files with the same one line (issue 15): non-finite or
out-of-range scores, non-finite or negative boxes, exact duplicates, masks of the wrong size; eval --results
writes next to the results, refuses an existing metrics.json, writes its outputs as a set; loce report refuses
runs evaluated on different val sets."""

import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.evaluation import EVALUATORS, evaluate_results
from loce_cli.errors import DataError
from tests.engine.test_evaluate import _results

runner = CliRunner()


@pytest.fixture(scope="module")
def good(tiny_dataset):
    return _results(tiny_dataset, seed=5)


def _ann(root):
    return root / "annotations" / "lvis_v1_val.json"


def _write(path, dets):
    # json writes NaN / Infinity literals for non-finite floats, as Python users' files have them
    path.write_text(json.dumps(dets))
    return path


def _nan_scores(dets):
    return [dict(d, score=math.nan) if i % 10 == 3 else d for i, d in enumerate(dets)]


CASES = {
    "nan-score": (_nan_scores, r"non-finite number.*\(the first: detection 3\)"),
    "inf-box": (lambda ds: [dict(d, bbox=[d["bbox"][0], math.inf, 5, 5]) if i == 7 else d for i, d in enumerate(ds)],
                r"1 non-finite number .*\(the first: detection 7\)"),
    "score-above-1": (lambda ds: [dict(d, score=1.5) if i in (4, 9) else d for i, d in enumerate(ds)],
                      r"2 detections have a score that is not a finite number in \[0, 1\] \(the first: detection 4: "
                      r"image \d+, category \d+, score 1.5\)"),
    "negative-score": (lambda ds: [dict(d, score=-0.2) if i == 2 else d for i, d in enumerate(ds)],
                       r"1 detection have a score .* \(the first: detection 2"),
    "negative-width": (lambda ds: [dict(d, bbox=[d["bbox"][0], d["bbox"][1], -3.0, 4.0]) if i == 5 else d
                                   for i, d in enumerate(ds)],
                       r"1 detection have a negative box width or height \(the first: detection 5"),
    "all-duplicated": (lambda ds: ds + [dict(d) for d in ds],
                       r"(\d+) detections repeat an earlier detection exactly \(the first: detection (\d+): .*the same "
                       r"as detection 0\)"),
    "wrong-mask-size": (lambda ds: [dict(d, segmentation=dict(d["segmentation"], size=[3, 3])) if i == 6 else d
                                    for i, d in enumerate(ds)],
                        r"1 masks differ in size from their image \(the first: detection 6; image_id \d+ is \d+x\d+\)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_evaluator_refuses_the_same_way(case, good, tiny_dataset, tmp_path):
    make, pattern = CASES[case]
    dets = make([dict(d) for d in good])
    res = _write(tmp_path / "r.json", dets)
    messages = set()
    for evaluator in EVALUATORS:
        with pytest.raises(DataError, match=pattern) as e:
            evaluate_results(res, _ann(tiny_dataset), ["bbox", "segm"], evaluator=evaluator, workers=1)
        messages.add(e.value.one_line())
    assert len(messages) == 1, messages  # the evaluators agree, word for word
    if case == "all-duplicated":
        import re

        count, first = re.search(pattern, messages.pop()).groups()
        assert int(count) == len(good) and int(first) == len(good)


def test_near_duplicates_are_kept_and_the_evaluators_agree(good, tiny_dataset, tmp_path):
    """The same box with another score, or the same score for another box, is not a duplicate."""
    dets = [dict(d) for d in good] + [dict(good[0], score=good[0]["score"] / 2),
                                      dict(good[1], bbox=[v + 0.5 for v in good[1]["bbox"]])]
    res = _write(tmp_path / "r.json", dets)
    aps = {ev: evaluate_results(res, _ann(tiny_dataset), ["bbox"], evaluator=ev, workers=1).metrics["bbox"].summary["AP"]
           for ev in EVALUATORS}
    assert max(aps.values()) - min(aps.values()) < 1e-9, aps


def test_cli_nan_results_one_line_exit_1(good, tiny_dataset, tmp_path):
    res = _write(tmp_path / "r.json", _nan_scores([dict(d) for d in good]))
    for evaluator in EVALUATORS:
        r = runner.invoke(app, ["eval", "--results", str(res), "--ann", str(_ann(tiny_dataset)), "--evaluator",
                                evaluator])
        lines = [x for x in r.stderr.splitlines() if not x.endswith("...")]
        assert r.exit_code == 1 and len(lines) == 1 and "unexpected" not in r.stderr, (evaluator, r.stderr)
        assert f"{len(good) // 10 + (len(good) % 10 > 3)} non-finite numbers" in lines[0]
    assert not (tmp_path / "metrics.json").exists()


def test_eval_results_writes_next_to_them_and_refuses_without_force(good, tiny_dataset, tmp_path):
    res = _write(tmp_path / "r.json", good)
    args = ["eval", "--results", str(res), "--ann", str(_ann(tiny_dataset)), "--metric", "bbox"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "metrics.txt").is_file()
    assert f"written:{tmp_path / 'metrics.json'}" in "".join(r.stdout.split())  # rich may wrap the line
    before = (tmp_path / "metrics.json").read_bytes()
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "already holds metrics.json" in r.stderr and "--force" in r.stderr
    assert (tmp_path / "metrics.json").read_bytes() == before
    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    r = runner.invoke(app, args + ["--out", str(out)])
    assert r.exit_code == 1 and (out / "metrics.json").read_text() == "{}"
    r = runner.invoke(app, args + ["--out", str(out), "--force"])
    assert r.exit_code == 0 and json.loads((out / "metrics.json").read_text())["metrics"]["bbox"]
    assert json.loads((out / "metrics.json").read_text())["annotation_sha256"]


def test_report_refuses_runs_on_different_val_sets(good, tiny_dataset, tmp_path):
    ann = json.loads(_ann(tiny_dataset).read_text())
    other = tmp_path / "other_val.json"  # the same classes, fewer images: another val set
    keep = {im["id"] for im in ann["images"][: len(ann["images"]) // 2]}
    other.write_text(json.dumps(dict(ann, images=[im for im in ann["images"] if im["id"] in keep],
                                     annotations=[a for a in ann["annotations"] if a["image_id"] in keep])))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _write(a / "r.json", good)
    _write(b / "r.json", [d for d in good if d["image_id"] in keep])
    for folder, annotation in ((a, _ann(tiny_dataset)), (b, other)):
        r = runner.invoke(app, ["eval", "--results", str(folder / "r.json"), "--ann", str(annotation), "--metric",
                                "bbox"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(a), str(b)])
    assert r.exit_code == 1 and "different val sets" in r.stderr and "--allow-different-data" in r.stderr
    r = runner.invoke(app, ["report", str(a), str(b), "--allow-different-data"])
    assert r.exit_code == 0 and "WARNING" in r.stderr and "different val sets" in r.stderr
    r = runner.invoke(app, ["report", str(a), str(a)])  # the same data: no note
    assert r.exit_code == 0 and "WARNING" not in r.stderr

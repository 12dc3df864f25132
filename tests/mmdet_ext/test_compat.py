import numpy as np

from loce_cli import compat


def test_aliases_restored_and_idempotent():
    compat.apply()
    assert compat.missing_aliases() == []
    assert np.float is float and np.int is int and np.object is object
    # numpy 2 has np.bool again (its own bool type); numpy 1.24-1.26 get the builtin back: same dtype either way
    assert np.dtype(np.bool) == np.dtype(bool)
    assert compat.apply() == []


def test_lvis_eval_runs_with_restored_aliases(tiny_dataset):
    """lvis 0.5.3's evaluator uses np.float: a perfect result file must score AP 1.0 with the compat applied."""
    import json

    compat.apply()
    from lvis import LVIS, LVISEval, LVISResults

    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    gt = LVIS(str(ann))
    data = json.loads(ann.read_text())
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in data["annotations"]]
    ev = LVISEval(gt, LVISResults(gt, dets), iou_type="bbox")
    ev.run()
    assert abs(ev.results["AP"] - 1.0) < 1e-6


def test_importing_loce_leaves_the_root_logger_alone():
    """lvis installs a root-logger handler on import (every INFO line would print twice); loce takes it off."""
    import subprocess
    import sys

    code = ("import logging, loce_cli.mmdet_ext, lvis; "
            "print(len(logging.getLogger().handlers), logging.getLogger().level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", str(30)]  # no handler, WARNING level as Python starts

"""Training data that skipped `loce data prep` (issue 15): a box leaving its image is refused when the dataset is
built, an image of another size than annotated, an empty or unreadable image when it is loaded, each in one line
naming the image, also from inside DataLoader workers and through `loce train base`."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import loce_cli.mmdet_ext  # noqa: F401
from loce_cli.errors import DataError, ImageDataError
from tests.engine.test_train import BASE, opts
from tests.mmdet_ext.test_dataset import PIPELINE


def _copy(tiny_dataset, tmp_path, edit_ann=None):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    (root / "annotations" / "loce_meta.json").unlink(missing_ok=True)  # as if never prepared
    if edit_ann is not None:
        path = root / "annotations" / "lvis_v1_train.json"
        data = json.loads(path.read_text())
        edit_ann(data)
        path.write_text(json.dumps(data))
    return root


def _build(root):
    from mmdet.datasets import build_dataset

    return build_dataset(dict(type="LoceLVISDataset", ann_file=str(root / "annotations" / "lvis_v1_train.json"),
                              img_prefix=f"{root}/", pipeline=PIPELINE))


def _first_image_of_annotation(data, k=0):
    a = data["annotations"][k]
    return next(im for im in data["images"] if im["id"] == a["image_id"]), a


def test_box_outside_its_image_is_refused_at_build_time(tiny_dataset, tmp_path):
    def push_out(data):
        img, a = _first_image_of_annotation(data, 3)
        a["bbox"] = [img["width"] + 40.0, 2.0, 10.0, 10.0]  # far right of the image

    root = _copy(tiny_dataset, tmp_path, push_out)
    data = json.loads((root / "annotations" / "lvis_v1_train.json").read_text())
    img, a = _first_image_of_annotation(data, 3)
    with pytest.raises(DataError, match=rf"1 annotation box\(es\) leave their image by more than 1 px \(the first: "
                                        rf"annotation {a['id']} of image {img['id']} \({img['file_name']}\)"):
        _build(root)
    within = _copy(tiny_dataset, tmp_path / "ok", lambda d: d["annotations"][3].update(
        bbox=[v + 0.5 for v in d["annotations"][3]["bbox"][:2]] + d["annotations"][3]["bbox"][2:]))
    _build(within)  # inside the tolerance: accepted


def _loader(ds, workers):
    from mmcv.parallel import collate

    return torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate)


@pytest.mark.parametrize("workers", [0, 1])
def test_image_of_another_size_and_empty_image_are_one_line(tiny_dataset, tmp_path, workers):
    import cv2

    root = _copy(tiny_dataset, tmp_path)
    ds = _build(root)
    wrong = ds.data_infos[1]["filename"]
    cv2.imwrite(str(root / wrong), np.zeros((64, 96, 3), np.uint8))  # 96 x 64 where the annotation says 64 x 64
    with pytest.raises(ImageDataError) as e:
        list(_loader(ds, workers))
    text = e.value.one_line()
    assert text.startswith(f"image {root / wrong} is 96 x 64 px but its annotation says 64 x 64"), text
    assert "\n" not in text
    cv2.imwrite(str(root / wrong), np.zeros((64, 64, 3), np.uint8))
    empty = ds.data_infos[2]["filename"]
    (root / empty).write_bytes(b"")
    with pytest.raises(ImageDataError) as e:
        list(_loader(ds, workers))
    assert e.value.one_line().startswith(f"image {root / empty} is empty (0 bytes)")
    assert "Traceback" not in str(e.value) and "DataLoader worker" not in str(e.value)


def test_train_base_names_the_empty_image_in_one_line(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path)
    data = json.loads((root / "annotations" / "lvis_v1_train.json").read_text())
    name = _first_image_of_annotation(data, 5)[0]["file_name"]  # an image training uses (it has objects)
    (root / name).write_bytes(b"")
    options = opts(root, extra=["data.workers_per_gpu=1"])
    r = subprocess.run([sys.executable, "-m", "loce_cli", "train", "base", str(BASE), "--work-dir",
                        str(tmp_path / "run"), "--cfg-options", *options], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 1, r.stderr[-3000:]
    assert f"image {root / name} is empty (0 bytes)" in errors[0]
    assert "Traceback" not in r.stderr and "cv2.error" not in r.stderr

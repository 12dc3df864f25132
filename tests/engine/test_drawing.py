"""Drawing detections (loce predict, the quickstart's pictures): exact pixels where something is drawn and
where nothing is."""

import numpy as np
import pytest
from PIL import Image

from loce_cli.engine.pictures.colours import group_rgb
from loce_cli.engine.pictures.drawing import (MASK_ALPHA, Drawn, draw_detections, label_box, label_boxes, legend_box,
                                              side_by_side, upscale, write_png)


def _image(h=200, w=240, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _touched(dets, h, w, legend=True):
    """Pixels drawing may change: each box (outline inside it), its label, the legend."""
    area = np.zeros((h, w), bool)
    for d, (lx0, ly0, lx1, ly1) in zip(dets, label_boxes(dets, h, w)):
        x1, y1, x2, y2 = d.box
        area[max(0, int(y1)):int(np.ceil(y2)), max(0, int(x1)):int(np.ceil(x2))] = True
        area[ly0:ly1, lx0:lx1] = True
    box = legend_box(h, w, [d.group for d in dets]) if legend else None
    if box:
        area[box[1]:box[3], box[0]:box[2]] = True
    return area


def test_mask_blend_outline_label_and_untouched_pixels():
    img = _image()
    h, w = img.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[80:120, 100:150] = True
    dets = [Drawn((90, 70, 160, 130), "zebra", 0.87, "r", mask), Drawn((10, 150, 60, 190), "cat", 0.4, "f")]
    out = draw_detections(img, dets)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, img)
    touched = _touched(dets, h, w)
    assert touched.mean() < 0.5  # a real test: most pixels are not near anything drawn
    assert np.array_equal(out[~touched], img[~touched])
    # inside the mask, away from outline and label: the exact alpha blend with the rare colour
    red = np.array(group_rgb("r"), float)
    want = np.rint((1 - MASK_ALPHA) * img[100, 125].astype(float) + MASK_ALPHA * red)
    assert np.array_equal(out[100, 125], want.astype(np.uint8))
    assert (out[85:115, 105:145] != img[85:115, 105:145]).any(axis=2).mean() > 0.95
    # in the box, outside the mask: unchanged; the outline carries the group colour
    assert np.array_equal(out[75, 95], img[75, 95])
    assert tuple(out[100, 90]) == group_rgb("r") and tuple(out[170, 59]) == group_rgb("f")
    # the label sits above the box, in its group's colour, on its left corner
    lx0, ly0, lx1, ly1 = label_box(dets[0], h, w)
    assert ly1 <= 70 and lx0 == 90 and lx1 > lx0 + 20
    assert (out[ly0:ly1, lx0:lx1] == group_rgb("r")).all(axis=2).mean() > 0.5
    # the legend lists the two groups present, bottom-left
    x0, y0, x1, y1 = legend_box(h, w, ["r", "f"])
    assert x0 == 0 and y1 == h and (y1 - y0) < (legend_box(h, w, ["r", "c", "f"])[3] - legend_box(h, w, ["r", "c", "f"])[1])


def test_no_detections_leaves_the_image_unchanged():
    img = _image(seed=1)
    assert np.array_equal(draw_detections(img, []), img)
    assert legend_box(100, 100, []) is None


def test_label_at_the_top_edge_goes_inside_and_stays_in_the_image():
    img = _image(120, 120, seed=2)
    d = Drawn((100, 0, 119, 40), "a_rather_long_class_name", 0.5, "c")
    x0, y0, x1, y1 = label_box(d, 120, 120)
    assert y0 == 0 and x1 <= 120 and x0 < 100  # inside the box's top, shifted left to fit
    out = draw_detections(img, [d], legend=False)
    assert np.array_equal(out[60:, :90], img[60:, :90])


def test_ground_truth_label_has_no_score_and_boxes_clip():
    img = _image(64, 64, seed=3)
    d = Drawn((-5, 10, 80, 30), "dog", None, "c")
    out = draw_detections(img, [d], legend=False)
    assert tuple(out[20, 0]) == group_rgb("c") and tuple(out[20, 63]) == group_rgb("c")
    with pytest.raises(ValueError):
        draw_detections(img[..., 0], [d])


def test_side_by_side_upscale_and_png(tmp_path):
    a, b = _image(50, 40, seed=4), _image(50, 60, seed=5)
    big = upscale(a, 3)
    assert big.shape == (150, 120, 3) and np.array_equal(big[::3, ::3], a)
    pic = side_by_side([("left", a), ("right", b)], gap=8)
    assert pic.shape[1] == 40 + 60 + 3 * 8 and pic.shape[0] > 50
    row0 = pic.shape[0] - 8 - 50  # the panels sit at the bottom, above one gap
    assert np.array_equal(pic[row0:row0 + 50, 8:48], a) and np.array_equal(pic[row0:row0 + 50, 56:116], b)
    with pytest.raises(ValueError):
        side_by_side([("x", a), ("y", _image(30, 30))])
    path = write_png(pic, tmp_path / "sub" / "p.png")
    with Image.open(path) as im:
        assert im.size == (pic.shape[1], pic.shape[0]) and np.array_equal(np.asarray(im), pic)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["p.png"]  # no temporary file left


def test_labels_of_overlapping_boxes_do_not_cover_each_other():
    img = _image(200, 200, seed=6)
    dets = [Drawn((50, 60, 150, 150), "first_class", 0.9, "f"), Drawn((52, 62, 148, 148), "second_class", 0.5, "r"),
            Drawn((54, 64, 146, 146), "third_class", 0.3, "c")]
    boxes = label_boxes(dets, 200, 200)
    assert boxes[0][3] <= 60  # the best one above its box
    for i in range(3):
        for j in range(i):
            a, b = boxes[i], boxes[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    out = draw_detections(img, dets, legend=False)
    for d, (x0, y0, x1, y1) in zip(dets, boxes):  # each label visible in its own colour
        assert (out[y0:y1, x0:x1] == group_rgb(d.group)).all(axis=2).mean() > 0.5

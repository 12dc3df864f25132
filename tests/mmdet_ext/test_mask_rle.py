"""loce's mask post-processing (loce_cli.mmdet_ext.mask_rle, mask_paste) against mmdet 2.28's stock path
(``FCNMaskHead.get_seg_masks`` + ``encode_mask_results``): the same RLE bytes for every detection."""

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

import loce_cli.mmdet_ext  # noqa: F401  (registers loce's heads)
from loce_cli.mmdet_ext import mask_paste, mask_rle
from tests.mmdet_ext import tiny

# LVIS test scale: a 640 x 480 original resized to 1067 x 800 (mmdet's Resize keep_ratio to 1333 x 800)
ORI = (480, 640, 3)
TEST_H, TEST_W = 800, 1067
SCALE = np.array([TEST_W / 640, TEST_H / 480, TEST_W / 640, TEST_H / 480], dtype=np.float32)


def _full_rle(mask: np.ndarray) -> dict:
    return mask_util.encode(np.array(mask[:, :, None], order="F", dtype="uint8"))[0]


# -- crop -> full-image RLE -------------------------------------------------------------------------------------


def test_crop_counts_give_pycocotools_encoding_of_the_full_mask():
    rng = np.random.default_rng(0)
    for trial in range(1500):
        height, width = (int(v) for v in rng.integers(1, 48, 2))
        if trial % 7 == 0:
            height, width = 480, 640
        h = int(rng.integers(0, height + 1)) if trial % 5 else height  # every 5th: full height (joined runs)
        w = int(rng.integers(0, width + 1))
        y0 = int(rng.integers(0, height - h + 1))
        x0 = int(rng.integers(0, width - w + 1))
        crop = rng.random((h, w)) < rng.choice([0.0, 0.05, 0.5, 0.95, 1.0])
        if trial % 3 == 0 and h and w:  # blobs: long runs, crossing columns
            crop = np.zeros((h, w), bool)
            crop[int(rng.integers(0, h)):, :int(rng.integers(1, w + 1))] = True
        full = np.zeros((height, width), bool)
        full[y0:y0 + h, x0:x0 + w] = crop
        counts = mask_paste.crop_rle_counts(crop, x0, y0, height, width)
        assert int(counts.sum()) == height * width
        got = mask_paste.compress([counts], height, width)[0]
        assert got == _full_rle(full), (trial, height, width, h, w, x0, y0)


def test_crop_counts_known_layout():
    # 3 x 4 image, crop [[1, 0], [1, 1]] at x0=1, y0=1: column-major pixels 000 011 001 000
    counts = mask_paste.crop_rle_counts(np.array([[1, 0], [1, 1]], bool), 1, 1, 3, 4)
    assert counts.tolist() == [4, 2, 2, 1, 3]
    # full-height crop of ones: one run across the two columns
    assert mask_paste.crop_rle_counts(np.ones((3, 2), bool), 1, 0, 3, 4).tolist() == [3, 6, 3]
    assert mask_paste.crop_rle_counts(np.ones((3, 4), bool), 0, 0, 3, 4).tolist() == [0, 12]
    assert mask_paste.crop_rle_counts(np.zeros((0, 0), bool), 0, 0, 3, 4).tolist() == [12]
    with pytest.raises(ValueError):
        mask_paste.crop_rle_counts(np.ones((2, 2), bool), 3, 0, 3, 4)


# -- a real mask head at LVIS scale -----------------------------------------------------------------------------


def _mask_head(num_classes=40, normed=True):
    from mmcv import ConfigDict
    from mmdet.models import build_head

    torch.manual_seed(0)
    head = build_head(ConfigDict(type="NormedMaskHead" if normed else "FCNMaskHead", num_convs=1, in_channels=8,
                                 conv_out_channels=8, num_classes=num_classes))
    head.init_weights()
    return head.eval()


def _test_cfg(thr=0.5):
    from mmcv import ConfigDict

    return ConfigDict(mask_thr_binary=thr)


def _boxes(n, seed, far_outside=False):
    """``[n, 5]`` boxes at the test scale: ordinary, touching/overflowing the borders, tiny (< 1 px, also of zero
    width or height), just outside the image (what mmdet's CPU branch can still paste) and, with
    ``far_outside``, far outside it."""
    g = torch.Generator().manual_seed(seed)
    kinds = torch.randint(0, 10, (n,), generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([TEST_W, TEST_H])
    wh = torch.rand(n, 2, generator=g) ** 2 * torch.tensor([TEST_W, TEST_H]) * 0.7 + 2
    b = torch.cat([xy, xy + wh], 1)
    size = torch.tensor([TEST_W, TEST_H, TEST_W, TEST_H], dtype=torch.float32)
    for i in range(n):
        k = int(kinds[i])
        if k == 0:  # touching the borders
            b[i, :2], b[i, 2:] = 0.0, size[2:]
        elif k == 1:  # overflowing
            b[i, 0] -= TEST_W * 0.5
            b[i, 3] += TEST_H
        elif k == 2:  # tiny
            b[i, 2:] = b[i, :2] + torch.rand(2, generator=g)
        elif k == 3:  # zero width or zero height
            b[i, 2 + i % 2] = b[i, i % 2]
        elif k == 4:  # just outside, right / bottom (at most ~1 original pixel past the border)
            b[i, 0 + i % 2] = size[i % 2] + torch.rand(1, generator=g) * 1.4
            b[i, 2 + i % 2] = b[i, i % 2] + 30
        elif k == 5:  # just outside, left / top
            b[i, 2 + i % 2] = -torch.rand(1, generator=g) * 1.4
            b[i, 0 + i % 2] = b[i, 2 + i % 2] - 30
        elif k == 6 and far_outside:
            b[i, :2] = size[2:] + 50
            b[i, 2:] = b[i, :2] + 40
    scores = torch.rand(n, 1, generator=g)
    return torch.cat([b, scores], 1)


def _logits(head, n, seed):
    """The head's logits for ``n`` RoIs of random features, some made constant (all 0: probabilities exactly
    0.5, on the threshold; all 30: probability 1.0, so samples just outside a box reach 0.5)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, head.in_channels, 14, 14, generator=g)
    with torch.no_grad():
        logits = head(feats) * 3
    logits[1::17] = 0.0
    logits[2::17] = 30.0
    return logits


def _stock(head, logits, bboxes, labels, thr, scale=SCALE, ori=ORI, rescale=True):
    from mmdet.core import encode_mask_results

    segms = head.get_seg_masks(logits, bboxes, labels, _test_cfg(thr), ori, torch.from_numpy(scale), rescale)
    return encode_mask_results(segms)


def _assert_same(got, ref, labels):
    assert len(got) == len(ref)
    assert [len(c) for c in got] == [len(c) for c in ref]
    for c, (g, r) in enumerate(zip(got, ref)):
        for j, (a, b) in enumerate(zip(g, r)):
            assert a["size"] == b["size"] and a["counts"] == b["counts"], (c, j)
    assert sum(len(c) for c in got) == len(labels)


@pytest.mark.parametrize("thr", [0.5, 0.3])
def test_box_paste_matches_stock_cpu_path_at_lvis_scale(thr):
    head = _mask_head()
    n = 300
    bboxes = _boxes(n, seed=1)
    labels = torch.randint(0, head.num_classes, (n,), generator=torch.Generator().manual_seed(2))
    logits = _logits(head, n, seed=3)
    ref = _stock(head, logits, bboxes, labels, thr)
    got = mask_rle.segm_rles(head, logits, bboxes, labels, _test_cfg(thr), ORI, torch.from_numpy(SCALE), True)
    _assert_same(got, ref, labels)
    # the data exercise what they should: masks with pixels, empty ones, and masks the other threshold changes
    decoded = mask_util.decode([r for c in ref for r in c])
    assert decoded.shape[:2] == ORI[:2]
    areas = decoded.reshape(-1, n).sum(0)
    assert (areas > 0).sum() > 100 and (areas == 0).sum() > 10
    other = mask_rle.segm_rles(head, logits, bboxes, labels, _test_cfg(0.8 - thr), ORI, torch.from_numpy(SCALE),
                               True)
    assert any(a["counts"] != b["counts"] for c1, c2 in zip(other, ref) for a, b in zip(c1, c2))


def test_box_paste_without_rescale_and_class_agnostic_head():
    from mmcv import ConfigDict
    from mmdet.models import build_head

    torch.manual_seed(0)
    head = build_head(ConfigDict(type="FCNMaskHead", num_convs=1, in_channels=8, conv_out_channels=8,
                                 num_classes=7, class_agnostic=True)).eval()
    n = 60
    bboxes = _boxes(n, seed=4)
    labels = torch.randint(0, 7, (n,), generator=torch.Generator().manual_seed(5))
    logits = _logits(head, n, seed=6)
    scale = np.array([TEST_W / 711, 1.25] * 2, dtype=np.float32)  # the masks at the test scale, 1067 x 800
    ref = _stock(head, logits, bboxes, labels, 0.5, scale, (640, 711, 3), rescale=False)
    got = mask_rle.segm_rles(head, logits, bboxes, labels, _test_cfg(0.5), (640, 711, 3), torch.from_numpy(scale),
                             False)
    assert got[0] and got[0][0]["size"] == [TEST_H, TEST_W]
    _assert_same(got, ref, labels)


def _stock_gpu_branch(head, logits, bboxes, labels, thr, chunk=16):
    """mmdet 2.28's GPU branch of get_seg_masks (every mask pasted over the whole image, skip_empty=False),
    run on the CPU, then encode_mask_results."""
    from mmdet.core import encode_mask_results
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

    probs = logits.sigmoid()
    boxes = bboxes[:, :4] / torch.from_numpy(SCALE)
    n = len(probs)
    probs = probs[range(n), labels][:, None]
    h, w = ORI[:2]
    segms = [[] for _ in range(head.num_classes)]
    for start in range(0, n, chunk):
        pasted, spatial = _do_paste_mask(probs[start:start + chunk], boxes[start:start + chunk], h, w,
                                         skip_empty=False)
        assert spatial == ()
        masks = (pasted >= thr).numpy()
        for k in range(len(masks)):
            segms[int(labels[start + k])].append(masks[k])
    return encode_mask_results(segms)


@pytest.mark.parametrize("thr", [0.5, 0.3, 0.0])
def test_full_paste_matches_stock_gpu_branch(thr):
    # the GPU branch's semantics, checked on the CPU: a support region per box, batched canvases (a small
    # budget: several batches, and boxes bigger than a batch), boxes far outside, degenerate boxes whose rows
    # or columns mmdet fills across the whole image
    head = _mask_head()
    n = 300 if thr else 40
    bboxes = _boxes(n, seed=7, far_outside=True)
    labels = torch.randint(0, head.num_classes, (n,), generator=torch.Generator().manual_seed(8))
    logits = _logits(head, n, seed=9)
    ref = _stock_gpu_branch(head, logits, bboxes, labels, thr)
    got_flat = mask_rle.detection_rles(head, logits, bboxes, labels, _test_cfg(thr), ORI,
                                       torch.from_numpy(SCALE), True, paste="full", budget=2 ** 18)
    got = [[] for _ in range(head.num_classes)]
    for label, rle in zip(labels.tolist(), got_flat):
        got[label].append(rle)
    _assert_same(got, ref, labels)
    if thr:
        # degenerate boxes give stripes across the image there, and the margin beyond a box's edge matters
        box_mode = mask_rle.segm_rles(head, logits, bboxes, labels, _test_cfg(thr), ORI,
                                      torch.from_numpy(SCALE), True, paste="box")
        assert any(a["counts"] != b["counts"] for c1, c2 in zip(box_mode, ref) for a, b in zip(c1, c2))


def test_boxes_mmdet_cannot_paste_on_cpu_give_empty_masks():
    head = _mask_head()
    n = 50
    bboxes = _boxes(n, seed=10, far_outside=True)
    far = (bboxes[:, 0] > TEST_W + 10).nonzero().flatten()
    assert len(far) > 0
    labels = torch.zeros(n, dtype=torch.long)
    logits = _logits(head, n, seed=11)
    logits[far] = 30.0
    rles = mask_rle.detection_rles(head, logits, bboxes, labels, _test_cfg(0.5), ORI, torch.from_numpy(SCALE),
                                   True, paste="box")
    empty = mask_util.encode(np.zeros((480, 640, 1), np.uint8, order="F"))[0]
    for i in far.tolist():
        assert rles[i] == empty
    near = torch.ones(n, dtype=torch.bool)
    near[far] = False
    ref = _stock(head, logits[near], bboxes[near], labels[near], 0.5)
    assert [r["counts"] for r in ref[0]] == [r["counts"] for i, r in enumerate(rles) if near[i]]


def test_zero_detections():
    head = _mask_head()
    empty = torch.zeros(0, 5)
    labels = torch.zeros(0, dtype=torch.long)
    got = mask_rle.segm_rles(head, torch.zeros(0, head.num_classes, 28, 28), empty, labels, _test_cfg(), ORI,
                             torch.from_numpy(SCALE), True)
    assert got == [[] for _ in range(head.num_classes)]


# -- the roi head and the whole detector ------------------------------------------------------------------------


def _image_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 3, TEST_H, 1088)  # padded to a multiple of 32, as mmdet's test pipeline pads
    img[..., :TEST_W] = torch.randn(1, 3, TEST_H, TEST_W, generator=g)
    meta = dict(img_shape=(TEST_H, TEST_W, 3), ori_shape=ORI, pad_shape=(TEST_H, 1088, 3), scale_factor=SCALE,
                flip=False, flip_direction=None, filename="random.jpg", ori_filename="random.jpg")
    return dict(img=[img], img_metas=[[meta]])


def _stock_detect(model, data):
    from mmdet.core import encode_mask_results

    with torch.no_grad():
        result = model(return_loss=False, rescale=True, **data)
    return [(bbox, encode_mask_results(segm)) for bbox, segm in result]


def _tiny_model(num_classes=5, **kw):
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(num_classes=num_classes, **kw))
    return model.eval()


def test_simple_test_mask_rles_with_an_image_without_detections():
    model = _tiny_model()
    roi_head = model.roi_head
    x = [torch.randn(2, tiny.FPN, TEST_H // s, TEST_W // s + 1) for s in (4, 8, 16, 32, 64)]
    metas = [dict(ori_shape=ORI, scale_factor=SCALE, img_shape=(TEST_H, TEST_W, 3))] * 2
    boxes = [torch.zeros(0, 5), _boxes(30, seed=12)[:, :4].clamp(min=0) / torch.from_numpy(SCALE)]
    boxes[1] = torch.cat([boxes[1], torch.rand(30, 1)], 1)
    labels = [torch.zeros(0, dtype=torch.long), torch.randint(0, 5, (30,))]
    from mmdet.core import encode_mask_results

    with torch.no_grad():
        ref = [encode_mask_results(s) for s in roi_head.simple_test_mask(x, metas, boxes, labels, rescale=True)]
        got = mask_rle.simple_test_mask_rles(roi_head, x, metas, boxes, labels, rescale=True)
        none = mask_rle.simple_test_mask_rles(roi_head, x, metas, [boxes[0]] * 2, [labels[0]] * 2, rescale=True)
    assert got[0] == [[] for _ in range(5)] and none == [[[] for _ in range(5)]] * 2
    _assert_same(got[1], ref[1], labels[1])


def test_detect_matches_stock_forward_of_a_mask_rcnn():
    from mmcv.parallel import MMDataParallel

    model = _tiny_model()
    data = _image_batch()
    ref = _stock_detect(model, data)
    got = mask_rle.detect(model, data)
    assert "simple_test_mask" not in vars(model.roi_head)  # the patch is gone after the call
    (bbox_ref, segm_ref), = ref
    (bbox_got, segm_got), = got
    n = sum(len(b) for b in bbox_ref)
    assert n > 50  # an untrained model still gives many detections at score_thr 1e-4
    for a, b in zip(bbox_got, bbox_ref):
        assert np.array_equal(a, b)
    _assert_same(segm_got, segm_ref, range(n))
    # through mmcv's wrapper, as loce's inference calls it
    wrapped = MMDataParallel(model, device_ids=None).eval()
    from mmcv.parallel import DataContainer

    dc = dict(img=[data["img"][0]], img_metas=[DataContainer([data["img_metas"][0]], cpu_only=True)])
    (bbox_w, segm_w), = mask_rle.detect(wrapped, dc)
    _assert_same(segm_w, segm_ref, range(n))


def test_detect_falls_back_to_the_stock_path_for_other_mask_heads():
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead

    class OtherHead(FCNMaskHead):
        def get_seg_masks(self, *args, **kwargs):
            return super().get_seg_masks(*args, **kwargs)

    model = _tiny_model(normed_mask=False)
    model.roi_head.mask_head.__class__ = OtherHead
    assert not mask_rle.supports_rles(model)
    data = _image_batch(seed=1)
    (_, segm_ref), = _stock_detect(model, data)
    (_, segm_got), = mask_rle.detect(model, data)
    _assert_same(segm_got, segm_ref, range(sum(len(c) for c in segm_ref)))


@pytest.mark.gpu
def test_cuda_matches_stock_gpu_path():
    """On CUDA: mmdet's own GPU branch of get_seg_masks vs loce's 'full' paste on the device, and a whole
    detector's forward (stock) vs detect()."""
    head = _mask_head()
    n = 300
    logits = _logits(head, n, seed=15).cuda()
    head = head.cuda()
    bboxes = _boxes(n, seed=13, far_outside=True).cuda()
    labels = torch.randint(0, head.num_classes, (n,), generator=torch.Generator().manual_seed(14)).cuda()
    for thr in (0.5, 0.3):
        ref = _stock(head, logits, bboxes, labels, thr)
        got = mask_rle.segm_rles(head, logits, bboxes, labels, _test_cfg(thr), ORI, torch.from_numpy(SCALE), True)
        _assert_same(got, ref, labels)
    model = _tiny_model().cuda()
    data = _image_batch(seed=2)
    data["img"] = [data["img"][0].cuda()]
    ref = _stock_detect(model, data)
    got = mask_rle.detect(model, data)
    (_, segm_ref), = ref
    (_, segm_got), = got
    _assert_same(segm_got, segm_ref, range(sum(len(c) for c in segm_ref)))

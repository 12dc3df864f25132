"""Pasting mask probabilities over the region of the image where each can be non-zero, and the COCO RLE of
the result from those crops, pixel for pixel what mmdet 2.28's ``_do_paste_mask`` and ``encode_mask_results``
give (:mod:`loce_cli.mmdet_ext.mask_rle` holds the mmdet side: the preamble of ``get_seg_masks`` and the test
entry points). Plain numpy / torch / pycocotools:

1. each mask is pasted over a small region only, with the same per-pixel arithmetic as mmdet's
   ``_do_paste_mask``:

   - ``paste="box"`` (mmdet's CPU branch, the default on CPU): like ``_do_paste_mask(skip_empty=True)`` one box
     at a time over ``[floor(x0) - 1, ceil(x1) + 1)`` clamped to the image, one ``grid_sample`` per box on the
     same grid values (computed for all boxes at once: a few tensor operations per box instead of ~25);
   - ``paste="full"`` (mmdet's GPU branch, the default on other devices): mmdet pastes over the whole image
     (``skip_empty=False``); a box's bilinear samples are non-zero only where its normalised grid coordinate
     ``u`` (computed exactly as mmdet computes it, ``inf`` set to 0) has ``|u| < 1 + 1/M`` (M: mask size), so
     the region is the pixels with ``|u| < 1 + 2/M`` (or ``u`` NaN) along each axis; outside it mmdet's
     samples are exactly 0, below any threshold > 0. Degenerate boxes (``x1 == x0``: ``u`` is ``inf`` -> 0
     everywhere) get the full width, as in mmdet. Boxes are pasted in batches of similar region size, each
     region's pixels laid out along one axis of the sampling grid (little padding), on the device; only the
     ends of the runs of True come to the host;
2. COCO RLE is column-major: the full-image runs of a crop placed at ``(x0, y0)`` in an ``H x W`` image follow
   from the rows where the crop changes value down each column (a False row above and below it): a run starts
   or ends at flat index ``(x0 + col) * H + y0 + row``; a run ending at the bottom of one column that meets one
   starting at the top of the next is joined (crops of full height). The counts are compressed by pycocotools
   (``frPyObjects`` of the uncompressed RLE, the same string code as ``encode``).
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F

# "full" paste: pixels (padding included) per batch of boxes; about 60 bytes of device memory a pixel at the
# peak (the grid, the samples, the int64 pixel indices): 2**22 pixels, about 250 MB
BATCH_PIXELS = 2 ** 22
_SUPPORT_MARGIN = 2.0  # region = |u| < 1 + _SUPPORT_MARGIN / M; samples are non-zero only for |u| < 1 + 1 / M


# ---------------------------------------------------------------------------------------------------------------
# runs from crops


def counts_from_runs(det: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int, height: int, width: int,
                     ordered: bool = False) -> List[np.ndarray]:
    """Uncompressed COCO RLE counts of ``n`` full ``height x width`` masks from their runs of True.

    ``det, starts, ends``: for every run of True pixels within a column of a crop, its mask (``0..n-1``) and
    its first and one-past-last pixel as column-major flat indices of the full image (``col * height + row``),
    in increasing order within each mask (the masks in any order, unless ``ordered``). A run that ends where
    the next one starts (the bottom of a column and the top of the next) is joined to it. Counts alternate
    False / True runs starting with False (a leading 0 when the first pixel is True), with no trailing empty
    run, as pycocotools writes them.
    """
    total = height * width
    det = np.asarray(det, dtype=np.int64)
    if det.size:
        starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        if not ordered:
            order = np.argsort(det, kind="stable")  # masks together, each one's runs kept in their order
            det, starts, ends = det[order], starts[order], ends[order]
        join = (ends[:-1] == starts[1:]) & (det[:-1] == det[1:])
        if join.any():
            starts, det = starts[np.r_[True, ~join]], det[np.r_[True, ~join]]
            ends = ends[np.r_[~join, True]]
        bounds = np.empty(2 * starts.size, np.int64)
        bounds[0::2], bounds[1::2] = starts, ends
        prev = np.empty_like(bounds)
        prev[0], prev[1:] = 0, bounds[:-1]
        prev[0::2][np.r_[True, det[1:] != det[:-1]]] = 0  # each mask's first run of False starts at pixel 0
        runs = bounds - prev
        per_mask = np.bincount(det, minlength=n) * 2
        last = np.r_[det[1:] != det[:-1], True]
        last_end = np.zeros(n, np.int64)
        last_end[det[last]] = ends[last]
    else:
        runs, per_mask, last_end = np.zeros(0, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    out = []
    at = 0
    for i, k in enumerate(per_mask.tolist()):
        if k == 0:
            out.append(np.array([total], np.int64))
            continue
        seg = runs[at:at + k]
        at += k
        tail = total - int(last_end[i])  # the last run of False, absent when the last pixel is True
        out.append(np.append(seg, tail) if tail else seg)
    return out


def _crop_runs(crop: np.ndarray, x0: int, y0: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the runs of True down the columns of a ``[h, w]`` bool crop at ``(x0, y0)``, as
    full-image column-major flat indices (see :func:`counts_from_runs`)."""
    h, w = crop.shape
    padded = np.zeros((w, h + 2), bool)  # a False row above and below each column
    padded[:, 1:h + 1] = crop.T
    flat = np.flatnonzero(padded[:, 1:] != padded[:, :-1])  # alternately a run's first row and one past its last
    col = flat // (h + 1)
    pos = (x0 + col) * height + y0 + (flat - col * (h + 1))
    return pos[0::2], pos[1::2]


def crop_rle_counts(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> np.ndarray:
    """Uncompressed COCO RLE counts of the ``height x width`` mask that is ``crop`` (``[h, w]`` bool) at
    ``(x0, y0)`` and False elsewhere; the crop must lie inside the image."""
    h, w = crop.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"crop {h}x{w} at ({x0}, {y0}) is not inside a {height}x{width} image")
    starts, ends = _crop_runs(np.asarray(crop, dtype=bool), x0, y0, height)
    return counts_from_runs(np.zeros(starts.size, np.int64), starts, ends, 1, height, width)[0]


def compress(counts: Sequence[np.ndarray], height: int, width: int) -> List[dict]:
    """COCO compressed RLEs (``{'size': [height, width], 'counts': bytes}``, as ``pycocotools.mask.encode``)."""
    if not counts:
        return []
    return mask_util.frPyObjects([{"size": [height, width], "counts": c} for c in counts], height, width)


# ---------------------------------------------------------------------------------------------------------------
# pasting


def _grid_coords(lo: torch.Tensor, hi: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """mmdet's normalised sampling coordinates ``(p + 0.5 - lo) / (hi - lo) * 2 - 1``, ``inf`` -> 0.

    ``lo, hi``: ``[n, 1]`` float32; ``pixels``: ``[n, m]`` or ``[m]`` integer pixel indices. The same
    operations in the same order as ``_do_paste_mask``, so each value is the same float."""
    u = (pixels.to(torch.float32) + 0.5 - lo) / (hi - lo) * 2 - 1
    return torch.where(torch.isinf(u), torch.zeros_like(u), u)


def box_mode_rles(masks: torch.Tensor, bboxes: torch.Tensor, img_h: int, img_w: int,
                   threshold: float) -> List[np.ndarray]:
    """mmdet's CPU branch: each box pasted over the extent ``_do_paste_mask(skip_empty=True)`` gives it,
    ``[floor(x0) - 1, ceil(x1) + 1)`` clamped to the image, with one ``grid_sample`` per box on the same
    ``[1, h, w, 2]`` grid values (the coordinates of all boxes computed at once, by the same operations)."""
    n = masks.shape[0]
    device = masks.device
    x0, y0, x1, y1 = torch.split(bboxes, 1, dim=1)  # each [n, 1], as _do_paste_mask
    ex0 = torch.clamp(x0[:, 0].floor() - 1, min=0).to(torch.int32).to(torch.int64)
    ey0 = torch.clamp(y0[:, 0].floor() - 1, min=0).to(torch.int32).to(torch.int64)
    ex1 = torch.clamp(x1[:, 0].ceil() + 1, max=img_w).to(torch.int32).to(torch.int64)
    ey1 = torch.clamp(y1[:, 0].ceil() + 1, max=img_h).to(torch.int32).to(torch.int64)
    # boxes whose extent is empty or inverted (mmdet's torch.arange fails on the latter) are all False here
    ew = (ex1 - ex0).clamp(min=0)
    eh = (ey1 - ey0).clamp(min=0)
    gx = _grid_coords(x0, x1, ex0[:, None] + torch.arange(int(ew.max()), device=device))  # [n, max w]
    gy = _grid_coords(y0, y1, ey0[:, None] + torch.arange(int(eh.max()), device=device))  # [n, max h]
    masks = masks.to(dtype=torch.float32)
    dets, starts, ends = [], [], []
    for i, (x, y, w, h) in enumerate(zip(ex0.tolist(), ey0.tolist(), ew.tolist(), eh.tolist())):
        if h == 0 or w == 0:
            continue
        grid = torch.stack([gx[i:i + 1, None, :w].expand(1, h, w), gy[i:i + 1, :h, None].expand(1, h, w)], dim=3)
        crop = F.grid_sample(masks[i:i + 1], grid, align_corners=False)[0, 0] >= threshold
        s, e = _crop_runs(crop.cpu().numpy(), x, y, img_h)
        if s.size:
            dets.append(np.full(s.size, i, np.int64))
            starts.append(s)
            ends.append(e)
    if not dets:
        return counts_from_runs(np.zeros(0), np.zeros(0), np.zeros(0), n, img_h, img_w)
    return counts_from_runs(np.concatenate(dets), np.concatenate(starts), np.concatenate(ends), n, img_h, img_w,
                            ordered=True)


def _support(lo: torch.Tensor, hi: torch.Tensor, size: int, mask_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[n]`` start and end (exclusive) of the pixels along one axis where a full-image paste of each box can be
    non-zero (``start == end == 0`` when there are none)."""
    u = _grid_coords(lo, hi, torch.arange(size, device=lo.device))
    inside = ~(u.abs() >= 1 + _SUPPORT_MARGIN / mask_size)  # NaN counts as inside
    found = inside.any(1)
    first = inside.to(torch.uint8).argmax(1)
    last = size - inside.flip(1).to(torch.uint8).argmax(1)
    zero = torch.zeros_like(first)
    return torch.where(found, first, zero), torch.where(found, last, zero)


def _batches(area: np.ndarray, budget: int, slack: float = 1.25, small: int = 1 << 16) -> Iterator[np.ndarray]:
    """Indices of the non-empty regions, largest first, in batches of similar size: a batch's padded size
    (``len * its largest area``) stays within ``slack`` x its pixels (or ``small`` pixels more) and ``budget``
    (a region larger than the budget is a batch of its own)."""
    batch: List[int] = []
    top = total = 0
    for i in np.argsort(-area, kind="stable").tolist():
        a = int(area[i])
        if a == 0:
            break
        if batch and ((len(batch) + 1) * top > max(slack * (total + a), total + a + small)
                      or (len(batch) + 1) * top > budget):
            yield np.array(batch)
            batch, total = [], 0
        if not batch:
            top = a
        batch.append(i)
        total += a
    if batch:
        yield np.array(batch)


def full_mode_rles(masks: torch.Tensor, bboxes: torch.Tensor, img_h: int, img_w: int, threshold: float,
                    budget: int = BATCH_PIXELS) -> List[np.ndarray]:
    """mmdet's GPU branch (every box pasted over the whole image), computed over each box's support only.

    The boxes go in batches of similar region size; in a batch, box ``i``'s region pixels are laid along one
    axis of the sampling grid (``[b, 1, L, 2]``) in column-major order, padded to the batch's largest region,
    so almost no pixel outside a region is sampled; the runs of True are found on the device and only their
    ends come to the host."""
    n, _, mh, mw = masks.shape
    device = masks.device
    x0, y0, x1, y1 = torch.split(bboxes, 1, dim=1)  # each [n, 1], as _do_paste_mask
    if threshold > 0:
        sx0, sx1 = _support(x0, x1, img_w, mw)
        sy0, sy1 = _support(y0, y1, img_h, mh)
    else:  # 0 >= 0: mmdet's pixels are True everywhere
        sx0, sy0 = (torch.zeros(n, dtype=torch.int64, device=device),) * 2
        sx1 = torch.full((n,), img_w, dtype=torch.int64, device=device)
        sy1 = torch.full((n,), img_h, dtype=torch.int64, device=device)
    region = torch.stack([sx0, sy0, sx1 - sx0, sy1 - sy0], 1)  # x, y, w, h: [n, 4] on the device
    area = (region[:, 2] * region[:, 3]).cpu().numpy()
    masks = masks.to(dtype=torch.float32)
    dets, starts, ends = [], [], []
    for idx in _batches(area, budget):
        sel = torch.from_numpy(idx).to(device)
        rx, ry, rw, rh = (t[:, None] for t in region[sel].unbind(1))  # each [b, 1]
        length = int(area[idx[0]])
        j = torch.arange(length, device=device)[None, :]
        col = torch.div(j, rh, rounding_mode="floor")
        row = j - col * rh
        valid = j < rw * rh
        grid = torch.stack([_grid_coords(x0[sel], x1[sel], rx + col), _grid_coords(y0[sel], y1[sel], ry + row)],
                           dim=2)[:, None]  # [b, 1, L, 2]
        v = F.grid_sample(masks[sel], grid, align_corners=False)[:, 0, 0] >= threshold
        del grid
        v &= valid
        # runs within each column of the region: a start where the pixel above (same column) is False, an
        # end after a pixel whose next one in the column is False
        above = torch.zeros_like(v)
        above[:, 1:] = v[:, :-1]
        above &= row > 0
        below = torch.zeros_like(v)
        below[:, :-1] = v[:, 1:]
        below &= row < rh - 1
        pos = (rx + col) * img_h + ry + row
        b_s, j_s = (v & ~above).nonzero(as_tuple=True)
        b_e, j_e = (v & ~below).nonzero(as_tuple=True)
        s, e = pos[b_s, j_s], pos[b_e, j_e] + 1
        dets.append(idx[b_s.cpu().numpy()])
        starts.append(s.cpu().numpy())
        ends.append(e.cpu().numpy())
    if not dets:
        return counts_from_runs(np.zeros(0), np.zeros(0), np.zeros(0), n, img_h, img_w)
    return counts_from_runs(np.concatenate(dets), np.concatenate(starts), np.concatenate(ends), n, img_h, img_w)

"""AP-pool (Dave et al. 2021): detections matched per category exactly as LVIS does, then one precision/recall
curve per *pool* of categories instead of one per category.

For a pool P (all categories, or the rare, common or frequent ones), at each IoU threshold: every evaluated
detection of a category in P, ranked by score over the whole pool (equal scores: image id, then category id,
then file order; the order the paper's ``LVISPooledEval`` gets from a stable sort of per-(image, category)
blocks concatenated image by image); true / false / ignored as in LVIS's per-category matching (federated
rules, not-exhaustive categories, ignored ground truth); recall over the pool's non-ignored ground truths;
LVIS's interpolated precision at the 101 recall thresholds. AP of the pool is the mean over IoU thresholds and
recall thresholds. The summary's AP / AP50 / AP75 / APs / APm / APl are those of the pool of all categories,
APr / APc / APf the AP of the rare / common / frequent pools. There is no per-category AP.

Two computations: ``pooled_summary`` from the streaming evaluator's per-detection bit masks, and
``pool_problem``, which turns a pool into an ordinary one-category LVIS problem (one pseudo-image per (image,
category) pair) so that the official API computes the same curve unmodified.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from loce_cli.engine.evaluation.accumulate import accumulate, mean_valid, summarize

POOLS = ("all", "r", "c", "f")
POOL_CATEGORY = dict(id=1, name="pool", frequency="f", image_count=1, instance_count=1, synset="pool.n.01",
                     def_="")


def pool_members(freq_groups: Sequence[np.ndarray], num_cats: int) -> Dict[str, np.ndarray]:
    """Category indices of each pool (``freq_groups``: rare, common, frequent indices)."""
    return {"all": np.arange(num_cats), "r": np.asarray(freq_groups[0]), "c": np.asarray(freq_groups[1]),
            "f": np.asarray(freq_groups[2])}


def pooled_summary(cat: np.ndarray, score: np.ndarray, img: np.ndarray, pos: np.ndarray, tp: np.ndarray,
                   fp: np.ndarray, num_gt: np.ndarray, freq_groups: Sequence[np.ndarray]) -> Dict[str, float]:
    """The AP-pool summary from evaluated detections: category / score / image index / file position columns,
    ``tp`` / ``fp`` ``[N, A]`` bit masks over IoU thresholds, ``num_gt`` ``[K, A]``."""
    num_cats = num_gt.shape[0]
    tie = img.astype(np.int64) * num_cats + cat  # equal scores: image, then category, then position
    out: Dict[str, float] = {}
    for name, members in pool_members(freq_groups, num_cats).items():
        inside = np.zeros(num_cats, np.bool_)
        inside[members] = True
        sel = inside[cat]
        precision = accumulate(np.zeros(int(sel.sum()), np.int64), score[sel], tie[sel], pos[sel], tp[sel],
                               fp[sel], num_gt[members].sum(axis=0, keepdims=True))
        if name == "all":
            whole = summarize(precision, [np.arange(1)] * 3)
            out.update({k: whole[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")})
        else:
            out[f"AP{name}"] = mean_valid(precision[:, :, 0, 0])
    return out


def pool_problem(gt_data: dict, results: List[dict], cat_ids: Sequence[int]) -> Tuple[dict, List[dict]]:
    """The pool of categories ``cat_ids`` as a one-category LVIS problem: one pseudo-image per (image,
    category) pair that LVIS evaluates there (the category has annotations in the image or is one of its
    negatives), ids in (image id, category id) order, with the image's size, that category's annotations and
    detections relabelled to the single category, and the negative / not-exhaustive flags carried over.
    LVIS AP of that category is the pool's AP-pool (same matching, same ranking, same tie order)."""
    members = set(int(c) for c in cat_ids)
    images = {im["id"]: im for im in gt_data["images"]}
    pairs = set()
    for a in gt_data["annotations"]:
        if a["category_id"] in members:
            pairs.add((a["image_id"], a["category_id"]))
    for im in gt_data["images"]:
        for c in im.get("neg_category_ids", []):
            if c in members:
                pairs.add((im["id"], c))
    new_id = {pair: n + 1 for n, pair in enumerate(sorted(pairs))}
    new_images = []
    for (img_id, c), nid in new_id.items():
        im = images[img_id]
        new_images.append(dict(id=nid, width=im["width"], height=im["height"],
                               neg_category_ids=[1] if c in set(im.get("neg_category_ids", [])) else [],
                               not_exhaustive_category_ids=[1] if c in set(im.get("not_exhaustive_category_ids",
                                                                                   [])) else []))
    new_anns = []
    for a in gt_data["annotations"]:
        key = (a["image_id"], a["category_id"])
        if key in new_id:
            b = dict(a, image_id=new_id[key], category_id=1, id=len(new_anns) + 1)
            new_anns.append(b)
    new_dets = []
    for d in results:
        key = (d["image_id"], d["category_id"])
        if key in new_id:
            e = {k: v for k, v in d.items() if k not in ("area", "id")}
            e["image_id"], e["category_id"] = new_id[key], 1
            if isinstance(e.get("segmentation"), dict):
                e["segmentation"] = dict(e["segmentation"])
            new_dets.append(e)
    gt = dict(images=new_images, annotations=new_anns, categories=[dict(POOL_CATEGORY)])
    return gt, new_dets

"""LOCE RoI-head training step vs mmdet's StandardRoIHead step on the same inputs (tiny Mask R-CNN, CPU).

    .venv/bin/python bench/bench_roi_head.py [--repeats 20] [--fpn 256]

Both heads get the same backbone/FPN features, proposals and ground truth (2 images with --gts boxes each;
LVIS v1 averages 12.7 per training image; 512 sampled RoIs per image) and the same normed mask head (the
paper's base model has it too); the step is forward_train of the RoI head plus backward of its summed losses.
The LOCE head's memory is filled first, so each step samples 8 x 4 stored features, updates the mean scores
and pushes 16 jittered features per ground truth. A third column times the LOCE head with memory sampling
switched off (EBL and score tracking only), which separates the memory's cost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.mmdet_ext, bench.common
from bench.common import interleaved, ratio_text, write_figures  # noqa: E402
from tests.mmdet_ext import tiny  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--fpn", type=int, default=256, help="FPN / RoI feature channels")
    ap.add_argument("--size", type=int, default=256, help="image side")
    ap.add_argument("--gts", type=int, default=12, help="ground-truth boxes per image")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()
    torch.manual_seed(0)
    tiny.FPN = args.fpn
    cfgs = {}
    for name, loce in (("standard", False), ("loce", True), ("loce_no_memory", True)):
        cfg = tiny.model_cfg(num_classes=40, loce=loce, normed_mask=True)
        cfg["train_cfg"]["rcnn"]["sampler"]["num"] = 512
        if loce:
            cfg["roi_head"]["memory"]["queue_size"] = 80
            cfg["roi_head"]["memory"]["enabled"] = name == "loce"
        cfgs[name] = cfg
    models = {k: tiny.build(c) for k, c in cfgs.items()}
    for name in ("loce", "loce_no_memory"):
        models[name].load_state_dict(models["standard"].state_dict(), strict=False)
    imgs, metas, boxes, labels, masks = tiny.batch(num_classes=40, gts=(args.gts, args.gts), size=args.size)
    base = models["standard"]
    base.eval()
    with torch.no_grad():
        x = base.extract_feat(imgs)
        proposals = base.rpn_head.simple_test_rpn(x, metas)
    for m in models.values():
        m.train()
    # fill the LOCE memory
    for _ in range(3):
        models["loce"].roi_head.push_gt_features(x, boxes, labels, metas)

    def step(model):
        def run():
            losses = model.roi_head.forward_train(x, metas, proposals, boxes, labels, gt_masks=masks)
            total, _ = model._parse_losses(losses)
            total.backward()
        return run

    med = dict(interleaved({k: step(m) for k, m in models.items()}, args.repeats))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, FPN {args.fpn} ch, {args.size} px, "
          f"2 images x {args.gts} gts, 512 RoIs/image")
    print(f"standard RoI head step {med['standard'] * 1e3:.1f} ms | LOCE {med['loce'] * 1e3:.1f} ms "
          f"(LOCE/standard = {med['loce'] / med['standard']:.2f}, goal <= 1.25) | LOCE without memory "
          f"{med['loce_no_memory'] * 1e3:.1f} ms ({med['loce_no_memory'] / med['standard']:.2f})")
    figures = dict(seconds=med, ratio=med["loce"] / med["standard"],
                   ratio_no_memory=med["loce_no_memory"] / med["standard"], repeats=args.repeats, fpn=args.fpn,
                   size=args.size, gts=args.gts)
    write_figures(args.json, figures, rows(figures))


def rows(r: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    return [("LOCE RoI-head training step", "mmdet StandardRoIHead step", ratio_text(r["ratio"]), "<= 1.25"),
            ("LOCE RoI-head step, memory off (EBL + tracking)", "StandardRoIHead step",
             ratio_text(r["ratio_no_memory"]), "-")]


if __name__ == "__main__":
    main()

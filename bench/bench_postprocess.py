"""Mask post-processing at LVIS scale: mmdet 2.28's stock path against loce's (loce_cli.mmdet_ext.mask_rle),
side by side in one run, on the same model and inputs, with a check that every RLE is the same bytes.

Model: configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py (R50-FPN Mask R-CNN, normed mask head, 1203 classes),
randomly initialised (no pretrained backbone). Input: one LVIS-sized image, a 640 x 480 original resized to
1067 x 800 (padded to 1088), 300 detections per image.

Parts, each timed with the two sides alternating (ABBA...), ``--rounds`` rounds; each ratio is the median of the
per-round ratios (loce / stock: below 1 is faster):

- ``postprocess``: the mask head's logits for 300 random boxes are computed once; then mmdet's
  ``get_seg_masks`` + ``encode_mask_results`` vs ``mask_rle.segm_rles`` on them (sigmoid of the 300 x 1203 x
  28 x 28 logits, per-label selection, paste, threshold, RLE);
- ``paste_encode``: the same on the selected class's logits only (a class-agnostic view of the head): the
  paste + threshold + RLE part alone;
- ``model``: what mmdet's ``single_gpu_test`` does per image, ``model(return_loss=False, rescale=True, **data)``
  then ``encode_mask_results``, vs ``mask_rle.detect(model, data)`` (``--model-rounds``; 0 skips it). On CPU
  the forward (R50 at 1088 x 800, the 1203-class mask logits of 300 RoIs) takes tens of seconds, so the
  post-processing saving is a few per cent of it; ``saved s`` is the median of the per-round differences.

    .venv/bin/python bench/bench_postprocess.py                    # CPU, 1 thread, ~5 minutes
    .venv/bin/python bench/bench_postprocess.py --quick            # what `make bench` runs
    .venv/bin/python bench/bench_postprocess.py --device cuda --threads 0 --rounds 10 --model-rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import ROOT as REPO, ratio_text, write_figures  # noqa: E402

CONFIG = REPO / "configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"
ORI = (480, 640, 3)
TEST = (800, 1067, 3)
PAD = (800, 1088, 3)


def build_model(device: str):
    import torch

    import loce_cli.mmdet_ext  # noqa: F401
    from mmdet.models import build_detector

    from loce_cli.engine.config.loading import load_config

    cfg = load_config(CONFIG)
    cfg.model.backbone.init_cfg = None  # no download: random weights are enough for timing
    cfg.model.pretrained = None
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    model.CLASSES = tuple(f"c{i}" for i in range(cfg.model.roi_head.bbox_head.num_classes))
    return model.to(device).eval(), cfg


def scale_factor():
    import numpy as np

    return np.array([TEST[1] / ORI[1], TEST[0] / ORI[0]] * 2, dtype=np.float32)


def random_boxes(n: int, seed: int, device: str):
    """``[n, 5]`` boxes in original-image pixels (clipped to it, as mmdet's bbox head clips them), sizes from a few
    pixels to the whole image; scores."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = ORI[:2]
    ctr = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    size = (torch.rand(n, 2, generator=g) ** 2) * torch.tensor([w, h]) + 4
    b = torch.cat([ctr - size / 2, ctr + size / 2], 1)
    b[:, 0::2] = b[:, 0::2].clamp(0, w)
    b[:, 1::2] = b[:, 1::2].clamp(0, h)
    return torch.cat([b, torch.rand(n, 1, generator=g)], 1).to(device)


def same_rles(a, b) -> bool:
    return len(a) == len(b) and all(len(x) == len(y) and all(p["size"] == q["size"] and p["counts"] == q["counts"]
                                                             for p, q in zip(x, y)) for x, y in zip(a, b))


def alternate(fns: dict, rounds: int, sync) -> dict:
    """``{"wall": {side: [seconds per call]}, "cpu": {...}}`` (wall-clock and this process's CPU time),
    ``rounds`` rounds, the order of the sides reversed every other round."""
    names = list(fns)
    samples = {"wall": {k: [] for k in names}, "cpu": {k: [] for k in names}}
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            sync()
            t, c = time.perf_counter(), time.process_time()
            fns[k]()
            sync()
            samples["wall"][k].append(time.perf_counter() - t)
            samples["cpu"][k].append(time.process_time() - c)
    return samples


def summary(samples: dict, clock: str, a: str = "loce", b: str = "stock") -> dict:
    """Figures on ``clock``'s times; both clocks' raw times."""
    s = samples[clock]
    ratios = [x / y for x, y in zip(s[a], s[b])]
    return {"clock": clock, "stock_s": statistics.median(s[b]), "loce_s": statistics.median(s[a]),
            "ratio": statistics.median(ratios), "speedup": 1 / statistics.median(ratios),
            "saved_s": statistics.median(y - x for x, y in zip(s[a], s[b])),
            "stock_all_s": samples["wall"][b], "loce_all_s": samples["wall"][a],
            "stock_all_cpu_s": samples["cpu"][b], "loce_all_cpu_s": samples["cpu"][a]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument("--rounds", type=int, default=6, help="rounds of the postprocess / paste_encode parts")
    ap.add_argument("--model-rounds", type=int, default=2,
                    help="rounds of the whole-model part, each one forward per side (0: skip it)")
    ap.add_argument("--dets", type=int, default=300)
    ap.add_argument("--quick", action="store_true",
                    help="4 rounds, no whole-model part (make bench; on CPU one forward takes tens of seconds)")
    ap.add_argument("--clock", choices=["cpu", "wall"],
                    help="times compared: this process's CPU time (default on CPU with 1 thread: other processes "
                         "on a shared machine hardly move it) or wall-clock time (default otherwise)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.model_rounds = 4, 0

    import numpy as np
    import torch

    from loce_cli import compat

    compat.apply()
    compat.quiet_known_noise()
    import logging

    from mmcv.utils import get_logger

    get_logger("mmcv", log_level=logging.ERROR)  # init_weights logs every parameter at INFO
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmcv import ConfigDict
    from mmdet.core import encode_mask_results

    from loce_cli.mmdet_ext import mask_rle

    dev = args.device
    clock = args.clock or ("cpu" if dev == "cpu" and torch.get_num_threads() == 1 else "wall")
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    model, cfg = build_model(dev)
    head = model.roi_head.mask_head
    test_cfg = ConfigDict(cfg.model.test_cfg.rcnn)
    sf = scale_factor()
    print(f"{CONFIG.relative_to(REPO)} (random weights), {head.num_classes} classes; image {ORI[1]}x{ORI[0]} "
          f"resized to {TEST[1]}x{TEST[0]}; {args.dets} detections; device {dev}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
          flush=True)
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(1, 3, PAD[0], PAD[1])
    img[..., :TEST[1]] = torch.randn(1, 3, TEST[0], TEST[1], generator=g)
    img = img.to(dev)
    meta = dict(img_shape=TEST, ori_shape=ORI, pad_shape=PAD, scale_factor=sf, flip=False, flip_direction=None,
                filename="random.jpg", ori_filename="random.jpg", batch_input_shape=PAD[:2])
    figures = {"device": dev, "threads": torch.get_num_threads(), "clock": clock, "dets": args.dets,
               "classes": head.num_classes, "ori_shape": list(ORI[:2]), "test_shape": list(TEST[:2]),
               "cpus": os.cpu_count()}

    # -- the mask head's logits for random boxes, once
    with torch.no_grad():
        t = time.perf_counter()
        x = model.extract_feat(img)
        dets = random_boxes(args.dets, 1, dev)
        labels = torch.randint(0, head.num_classes, (args.dets,), generator=g).to(dev)
        boxes = dets[:, :4] * torch.from_numpy(sf).to(dev)  # back to the test scale, as simple_test_mask does
        from mmdet.core import bbox2roi

        logits = model.roi_head._mask_forward(x, bbox2roi([boxes]))["mask_pred"]
        sync()
        print(f"features + mask head forward for {args.dets} boxes: {time.perf_counter() - t:.1f} s "
              f"(logits {tuple(logits.shape)}, {logits.numel() * 4 / 2**30:.2f} GiB)", flush=True)
        sf_t = torch.from_numpy(sf).to(dev)

        def stock_post(lg=logits):
            return encode_mask_results(head.get_seg_masks(lg, boxes, labels, test_cfg, ORI, sf_t, True))

        def loce_post(lg=logits):
            return mask_rle.segm_rles(head, lg, boxes, labels, test_cfg, ORI, sf_t, True)

        identical = same_rles(stock_post(), loce_post())
        samples = alternate({"stock": stock_post, "loce": loce_post}, args.rounds, sync)
        figures["postprocess"] = dict(summary(samples, clock), identical=identical)

        selected = logits[torch.arange(args.dets, device=dev), labels][:, None].contiguous()
        del logits
        head.class_agnostic = True  # the selected channel only: paste + threshold + RLE
        try:
            identical_sel = same_rles(stock_post(selected), loce_post(selected))
            samples = alternate({"stock": lambda: stock_post(selected), "loce": lambda: loce_post(selected)},
                                args.rounds, sync)
        finally:
            head.class_agnostic = False
        figures["paste_encode"] = dict(summary(samples, clock), identical=identical_sel)
        del x

        # -- the whole model, as mmdet's single_gpu_test runs it
        if args.model_rounds:
            data = dict(img=[img], img_metas=[[meta]])

            outputs = {}

            def stock_model():
                outputs["stock"] = [(b, encode_mask_results(s))
                                    for b, s in model(return_loss=False, rescale=True, **data)]

            def loce_model():
                outputs["loce"] = mask_rle.detect(model, data)

            samples = alternate({"stock": stock_model, "loce": loce_model}, args.model_rounds, sync)
            (ref_b, ref_s), = outputs["stock"]
            (got_b, got_s), = outputs["loce"]
            identical_model = same_rles(ref_s, got_s) and all(np.array_equal(a, b) for a, b in zip(ref_b, got_b))
            figures["model"] = dict(summary(samples, clock), identical=identical_model,
                                    detections=sum(len(b) for b in ref_b))

    names = {"postprocess": f"get_seg_masks + encode ({args.dets} dets, all {head.num_classes} classes' logits)",
             "paste_encode": "paste + threshold + RLE (selected class only)",
             "model": "whole model per image (forward + encode)"}
    print(f"\n{'part':58s} {'stock s':>8s} {'loce s':>8s} {'saved s':>8s} {'ratio':>6s} {'speed-up':>8s}  RLEs")
    for key, label in names.items():
        if key in figures:
            f = figures[key]
            extra = f", {f['detections']} dets" if "detections" in f else ""
            print(f"{label:58s} {f['stock_s']:8.3f} {f['loce_s']:8.3f} {f['saved_s']:8.3f} {f['ratio']:6.3f} "
                  f"{f['speedup']:7.2f}x  "
                  f"{'identical' if f['identical'] else 'DIFFERENT'}{extra}")
    print(f"{clock} times (seconds per image, medians); ratio: loce / stock, the median of per-round ratios (the "
          f"sides alternating); saved: the median of per-round differences")
    if args.json:
        write_figures(args.json, figures, rows(figures))
        print(f"figures written to {args.json}")
    if not all(figures[k]["identical"] for k in names if k in figures):
        raise SystemExit("RLEs differ between the stock path and loce's")


def rows(p: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    where = f"{p['device']}, {p['threads']} thread(s), {p.get('clock', 'wall')} time"
    (oh, ow), (th, tw) = p["ori_shape"], p["test_shape"]
    size = f"{p['dets']} dets, {ow}x{oh} image from {tw}x{th}"
    out = []
    for key, fig, against in (
            ("paste_encode", f"mask paste + threshold + RLE ({size}, {where})",
             "mmdet get_seg_masks + encode_mask_results"),
            ("postprocess", f"mask post-processing incl. sigmoid of all {p['classes']} classes' logits ({where})",
             "mmdet get_seg_masks + encode_mask_results"),
            ("model", f"inference per image, R50-FPN {p['classes']} classes, random weights ({where})",
             "mmdet forward + encode_mask_results")):
        if key in p:
            same = "identical RLEs" if p[key]["identical"] else "RLEs DIFFER"
            out.append((f"{fig}: {p[key]['loce_s']:.3f} s vs {p[key]['stock_s']:.3f} s per image "
                        f"({p[key]['saved_s']:.3f} s saved), {same}", against, ratio_text(p[key]["ratio"]), "< 1"))
    return out


if __name__ == "__main__":
    main()

"""`loce inspect scores CKPT --measure CONFIG --data DIR` at LVIS v1 shape on this machine's CPU: seconds per image,
the process's memory after 10, 20, 40, ... images (flat: one image at a time, two floats per class), its peak, and
the time estimate the command prints after its third image against the time per image it then takes.

Data: the engine's LVIS-shaped generator (``loce data synth --like lvis-v1``, 500 training images of COCO sizes,
1203 classes in LVIS v1's groups; then ``loce data prep``), kept in --dir. Checkpoint: the R50 base config
(configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py, 1203 classes), randomly initialised (no ImageNet weights:
the time does not depend on them) and written with mmcv's ``save_checkpoint`` (meta: CLASSES). Measured with the
LOCE config (configs/lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py: its training pipeline, 1333 x 640-800
multi-scale with flips, and its class-balanced list of queue_size // 16 = 5 images per class: at most 6,015
distinct images at LVIS v1, here all 500 as each synthetic image holds ~60 classes) through the engine's
``measure_checkpoint_scores`` (what the command runs), stopped after --images images of the list. A child process
runs it; this one samples its memory (Rss, and the kernel's VmHWM peak).

    .venv/bin/python bench/bench_measure_scores.py [--images 60] [--json FILE] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import ROOT, lvis_like_data, ratio_text, sampled_child, write_figures  # noqa: E402

BASE_CONFIG = ROOT / "configs" / "lvis" / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"
CONFIG = ROOT / "configs" / "lvis" / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"
LVIS_V1_LIST = 5 * 1203  # the most images LVIS v1's class-balanced list of 5 per class can hold
MARKS = (1, 2, 3, 5, 10, 20, 30, 40, 60, 80, 100, 150, 200)


def make_checkpoint(path: Path, data: Path) -> Path:
    """A randomly initialised R50 base model of 1203 classes, written by mmcv's save_checkpoint."""
    if path.is_file():
        return path
    import torch
    from mmcv.runner import save_checkpoint
    from mmcv.utils import get_logger
    from mmdet.models import build_detector

    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from loce_cli.engine.config.loading import load_config

    get_logger("mmcv", log_level=logging.WARNING)  # else init_weights logs every parameter
    cfg = load_config(BASE_CONFIG, ["model.backbone.init_cfg=None"])
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    meta = json.loads((data / "annotations" / "loce_meta.json").read_text())
    model.CLASSES = tuple(meta["classes"])
    tmp = path.with_suffix(".tmp")
    save_checkpoint(model, str(tmp), meta={"config": cfg.pretty_text})
    tmp.rename(path)
    return path


def child(checkpoint: str, data: str, images: int) -> None:
    """Runs in the child: the engine's measurement stopped after ``images`` images; prints its marks as JSON."""
    from loce_cli import compat

    compat.apply()
    compat.quiet_known_noise()
    from loce_cli.engine.inspect.measure import measure_checkpoint_scores

    marks = {}
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done in MARKS or done == total:
            with open("/proc/self/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            marks[done] = (time.perf_counter() - t0, rss / 1024)

    report = measure_checkpoint_scores(Path(checkpoint), CONFIG, data=Path(data), max_images=images,
                                       progress=progress)
    print(json.dumps({"marks": marks, "measured_classes": sum(c.score is not None for c in report.classes)}))


def run_child(checkpoint: Path, data: Path, images: int) -> dict:
    r, stderr, sampler, wall = sampled_child([__file__, "--child", checkpoint, data, images], "the measurement", 0.5)
    r["marks"] = {int(k): v for k, v in r["marks"].items()}
    listed = re.search(r"measuring .*?: ([\d,]+) images", stderr)
    estimate = re.search(r"about (.+?) to go \(([\d.]+) s per image", stderr)
    r.update(list_images=int(listed.group(1).replace(",", "")) if listed else None,
             estimate_s_per_image=float(estimate.group(2)) if estimate else None,
             estimate_line=estimate.group(0) if estimate else None, wall_s=wall,
             tree_rss_peak_mb=max(p.rss for p in sampler.procs.values()) / 1024 if sampler.procs else None,
             hwm_mb=max(p.hwm for p in sampler.procs.values()) / 1024 if sampler.procs else None,
             stderr_tail=stderr[-1500:])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=60, help="images of the list to measure (at least 20)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_measure",
                    help="where the LVIS-shaped data and the checkpoint are kept")
    ap.add_argument("--child", nargs=3, metavar=("CKPT", "DATA", "IMAGES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    args.images = max(args.images, 20)
    args.dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = lvis_like_data(args.dir / "lvis_v1_like")
    checkpoint = make_checkpoint(args.dir / "r50_base_1203_random.pth", data)
    print(f"data {data}, checkpoint {checkpoint} ({time.perf_counter() - t:.0f} s to make or find)", flush=True)
    r = run_child(checkpoint, data, args.images)
    marks = r["marks"]
    first, last = min(m for m in marks if m >= 10), max(marks)
    steady = (marks[last][0] - marks[first][0]) / (last - first)
    figures = dict(images=args.images, list_images=r["list_images"], steady_s_per_image=steady,
                   estimate_s_per_image=r["estimate_s_per_image"], estimate_line=r["estimate_line"],
                   setup_s=marks[1][0], rss_mb={k: v[1] for k, v in marks.items()}, rss_from=first, rss_to=last,
                   rss_growth=marks[last][1] / marks[first][1], tree_rss_peak_mb=r["tree_rss_peak_mb"],
                   hwm_mb=r["hwm_mb"], wall_s=r["wall_s"], measured_classes=r["measured_classes"],
                   full_list_hours=(r["list_images"] or 0) * steady / 3600,
                   lvis_v1_hours=LVIS_V1_LIST * steady / 3600)
    print(f"list: {r['list_images']} images (5 per class); measured the first {args.images}\n"
          f"the command's estimate: {r['estimate_line']}\n"
          f"seconds per image, images {first}..{last}: {steady:.2f} (estimate / measured: "
          f"{ratio_text(figures['estimate_s_per_image'] and figures['estimate_s_per_image'] / steady)}); "
          f"this list: {figures['full_list_hours']:.1f} h on this CPU; LVIS v1's ({LVIS_V1_LIST:,} images at "
          f"most): {figures['lvis_v1_hours']:.1f} h\n"
          f"start-up (data, model, first image): {figures['setup_s']:.0f} s\n"
          f"RSS after " + ", ".join(f"{k} images {v[1] / 1024:.2f} GB" for k, v in sorted(marks.items())) +
          f"\nRSS after {last} / after {first} images: {figures['rss_growth']:.3f}; peak RSS "
          f"{figures['tree_rss_peak_mb'] / 1024:.2f} GB (kernel VmHWM {figures['hwm_mb'] / 1024:.2f} GB)")
    if args.json:
        write_figures(args.json, figures, rows(figures))
        print(f"figures written to {args.json}")


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    est = f.get("estimate_s_per_image")
    return [
        (f"`inspect scores --measure`, LVIS v1 shape (R50, 1203 classes, 1333 x 640-800), CPU: "
         f"{f['steady_s_per_image']:.2f} s/image, peak RSS {f['tree_rss_peak_mb'] / 1024:.2f} GB; its list of "
         f"{LVIS_V1_LIST:,} images at LVIS v1: {f['lvis_v1_hours']:.1f} h", "-", "-", "-"),
        (f"`inspect scores --measure`: RSS after {f['rss_to']} images", f"after {f['rss_from']} images",
         ratio_text(f["rss_growth"], 3), "<= 1.05"),
        ("`inspect scores --measure`: the s/image of its estimate (printed after image 3)", "measured s/image",
         ratio_text(est / f["steady_s_per_image"] if est else None), "0.67 - 1.5"),
    ]


if __name__ == "__main__":
    main()

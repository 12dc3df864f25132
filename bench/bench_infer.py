"""Inference throughput on the CPU of the synthetic Mask R-CNN, through the code path of `loce eval`.

Runs `loce_cli.mmdet_ext.inference.lvis_detections` (dataset, init_detector, the loop, RLE encoding of masks,
the LVIS results list) with the model of --config (default configs/synthetic/mask_rcnn_r18_fpn_normed_synth.py)
over the synthetic val images (`loce data synth` defaults: 40 classes, 200 val images of 128 px, generated once
into --dir), with torch's default number of threads and with 1 thread, alternating, --repeats times each.
Reports images/s over the whole call (setup included) and in the steady state (from the first image done to the
last), detections per image and seconds.

Checkpoint: --checkpoint, else the first that exists of work/quickstart/loce/epoch_2.pth,
work/reproduce/*/loce_seed0/epoch_2.pth, work/reproduce/*/base/epoch_6.pth (trained models: realistic numbers
of detections and masks), else an untrained model written to --dir (its few detections make the mask and
post-processing part unrealistically cheap; the report says which was used).

--nproc-compare also times `evaluate_model` end to end (inference + results file + evaluation) in one process
against `--nproc 2` (two CPU processes through torchrun, OMP_NUM_THREADS=1 each), side by side.

    .venv/bin/python bench/bench_infer.py                      # 200 val images, 2 repeats
    .venv/bin/python bench/bench_infer.py --images 20 --repeats 1
    .venv/bin/python bench/bench_infer.py --nproc-compare --json /tmp/infer.json
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.common
from bench.common import ROOT as REPO, free_port, ratio_text, synthetic_data, write_figures  # noqa: E402

DEFAULT_CONFIG = REPO / "configs/synthetic/mask_rcnn_r18_fpn_normed_synth.py"
CANDIDATES = ("work/quickstart/loce/epoch_2.pth", "work/reproduce/*/loce_seed0/epoch_2.pth",
              "work/reproduce/*/base/epoch_6.pth")


def prepare_data(root: Path, images: int | None) -> tuple:
    """(data dir, val annotation file limited to the first ``images`` images, number of images)."""
    val = synthetic_data(root) / "annotations" / "lvis_v1_val.json"
    data = json.loads(val.read_text())
    n = len(data["images"])
    if images is None or images >= n:
        return val, n
    keep = data["images"][:images]
    ids = {im["id"] for im in keep}
    data["images"] = keep
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    sub = root / "annotations" / f"lvis_v1_val_first{images}.json"
    if not sub.is_file():
        tmp = sub.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.rename(sub)
    return sub, images


def class_names(ann_file: Path) -> tuple:
    return tuple(str(c["name"]) for c in json.loads(ann_file.read_text())["categories"])


def pick_checkpoint(arg: str | None, cfg_path: Path, ann_file: Path, out_dir: Path) -> tuple:
    """(checkpoint path, description). A candidate that torch cannot read (e.g. being written) is skipped."""
    import torch

    if arg:
        return Path(arg), "given by --checkpoint"
    for pattern in CANDIDATES:
        for path in sorted(glob.glob(str(REPO / pattern))):
            try:
                ckpt = torch.load(path, map_location="cpu")
            except Exception as e:  # noqa: BLE001  (a file being written by a training run)
                print(f"skipping {path}: {type(e).__name__}")
                continue
            if tuple((ckpt.get("meta") or {}).get("CLASSES") or ()) != class_names(ann_file):
                print(f"skipping {path}: other classes than the synthetic val set")
                continue
            return Path(path), "trained"
    # an untrained model: no training, only mmdet's initialisation
    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from mmdet.models import build_detector

    from loce_cli.engine.config.loading import load_config

    path = out_dir / "untrained_mask_rcnn_r18_synth.pth"
    if not path.is_file():
        cfg = load_config(cfg_path)
        torch.manual_seed(0)
        model = build_detector(cfg.model)
        model.init_weights()
        meta = {"CLASSES": class_names(ann_file)}
        torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return path, "UNTRAINED (init_weights only: few detections, cheap mask/post-processing)"


def infer_once(cfg_path: Path, ckpt: Path, ann_file: Path, img_prefix: str, threads: int, max_dets: int) -> dict:
    import torch

    from loce_cli.engine.config.loading import load_config
    from loce_cli.mmdet_ext.inference import lvis_detections

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = load_config(cfg_path, [f"data.test.ann_file={ann_file}", f"data.test.img_prefix={img_prefix}"])
        marks = []

        def progress(done, total):
            marks.append((done, time.perf_counter()))

        captured = io.StringIO()  # mmcv prints the checkpoint load (and any key mismatch) on every run
        t = time.perf_counter()
        with contextlib.redirect_stdout(captured):
            dets, has_masks = lvis_detections(cfg, ckpt, "cpu", max_dets, progress, 0, 1)
        seconds = time.perf_counter() - t
    finally:
        torch.set_num_threads(before)
    n = marks[-1][0]
    steady = (n - marks[0][0]) / (marks[-1][1] - marks[0][1]) if n > marks[0][0] else float("nan")
    return {"threads": threads, "images": n, "seconds": seconds, "images_per_s": n / seconds,
            "steady_images_per_s": steady, "setup_s": marks[0][1] - t, "detections": len(dets),
            "dets_per_image": len(dets) / n, "has_masks": has_masks,
            "load_notes": [ln for ln in captured.getvalue().splitlines() if "key" in ln]}


def eval_once(cfg_path: Path, ckpt: Path, ann_file: Path, img_prefix: str, nproc: int, threads: int, out: Path,
              evaluator: str, max_dets: int) -> dict:
    """``evaluate_model`` end to end; ``threads`` applies to this process (nproc 1), torchrun's workers get
    OMP_NUM_THREADS=1 from loce's launcher."""
    import torch

    from loce_cli.engine.evaluation import EvalRequest, evaluate_model
    from loce_cli.engine.runtime.launch import LaunchOptions

    req = EvalRequest(config=str(cfg_path), checkpoint=str(ckpt), out=str(out), force=True, evaluator=evaluator,
                      max_dets=max_dets,
                      cfg_options=[f"data.test.ann_file={ann_file}", f"data.test.img_prefix={img_prefix}"],
                      launch=LaunchOptions(nproc=nproc, master_port=free_port()))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        report = evaluate_model(req)
        seconds = time.perf_counter() - t
    finally:
        torch.set_num_threads(before)
    results = json.loads((out / "results.json").read_text())
    return {"nproc": nproc, "threads": threads, "seconds": seconds, "eval_seconds": report.seconds, "detections": len(results),
            "bbox_AP": report.metrics["bbox"].summary["AP"] if "bbox" in report.metrics else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--checkpoint", help="default: a trained synthetic checkpoint under work/, else an untrained one")
    ap.add_argument("--images", type=int, help="only the first N val images (default: all 200)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per thread setting (best is used)")
    ap.add_argument("--max-dets", type=int, default=300)
    ap.add_argument("--nproc-compare", action="store_true",
                    help="also time evaluate_model end to end: 1 process vs --nproc 2 (OMP_NUM_THREADS=1 each)")
    ap.add_argument("--evaluator", default="lvis", choices=["lvis", "streaming"], help="for --nproc-compare")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_infer",
                    help="where the synthetic data (and an untrained checkpoint) are kept")
    args = ap.parse_args()

    import torch

    from loce_cli import compat

    compat.apply()
    compat.quiet_known_noise()
    import logging

    logging.getLogger("lvis").setLevel(logging.WARNING)
    logging.getLogger("mmdet").setLevel(logging.WARNING)
    args.dir.mkdir(parents=True, exist_ok=True)
    data = args.dir / "synth_default"
    ann_file, n_images = prepare_data(data, args.images)
    img_prefix = f"{data}/"
    ckpt, what = pick_checkpoint(args.checkpoint, args.config, ann_file, args.dir)
    default_threads = torch.get_num_threads()
    print(f"config {args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config}\n"
          f"checkpoint {ckpt} ({what})\n{n_images} val images of {data}; torch {torch.__version__}, default "
          f"{default_threads} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)

    settings = [default_threads] if default_threads == 1 else [default_threads, 1]
    runs = {t: [] for t in settings}
    for rep in range(args.repeats):
        for threads in (settings if rep % 2 == 0 else settings[::-1]):
            r = infer_once(args.config, ckpt, ann_file, img_prefix, threads, args.max_dets)
            runs[threads].append(r)
            if rep == 0 and threads == settings[0] and r["load_notes"]:
                print("  checkpoint load: " + "; ".join(r["load_notes"])[:300])
            print(f"  run {rep + 1}: {threads} thread(s): {r['seconds']:6.1f} s, {r['images_per_s']:5.2f} img/s "
                  f"(steady {r['steady_images_per_s']:5.2f}, setup {r['setup_s']:.1f} s), "
                  f"{r['dets_per_image']:.1f} dets/image", flush=True)
    figures = {"config": str(args.config), "checkpoint": str(ckpt), "checkpoint_kind": what, "images": n_images,
               "default_threads": default_threads, "cpus": os.cpu_count(), "inference": {}}
    print(f"\n{'threads':>8s} {'seconds':>8s} {'img/s':>7s} {'steady img/s':>13s} {'dets/img':>9s}")
    for threads, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        best = dict(best, steady_images_per_s=max(r["steady_images_per_s"] for r in rs),
                    all_seconds=[r["seconds"] for r in rs])
        figures["inference"][str(threads)] = best
        print(f"{threads:8d} {best['seconds']:8.1f} {best['images_per_s']:7.2f} {best['steady_images_per_s']:13.2f} "
              f"{best['dets_per_image']:9.1f}")
    if len(settings) == 2:
        a, b = figures["inference"][str(settings[0])], figures["inference"][str(settings[1])]
        print(f"images/s with {settings[0]} threads / with 1 thread: {b['seconds'] / a['seconds']:.2f}")

    if args.nproc_compare:
        variants = {f"1 proc x {default_threads} threads": (1, default_threads), "1 proc x 1 thread": (1, 1),
                    "2 procs x 1 thread": (2, 1)}
        if default_threads == 1:
            del variants["1 proc x 1 threads"]
        print(f"\nevaluate_model end to end (evaluator {args.evaluator}): 1 process vs --nproc 2 (torchrun, "
              f"OMP_NUM_THREADS=1 each)", flush=True)
        e2e = {k: [] for k in variants}
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            for rep in range(args.repeats):
                for name in (list(variants) if rep % 2 == 0 else list(variants)[::-1]):
                    nproc, threads = variants[name]
                    r = eval_once(args.config, ckpt, ann_file, img_prefix, nproc, threads, Path(tmp) / "out",
                                  args.evaluator, args.max_dets)
                    e2e[name].append(r)
                    print(f"  run {rep + 1}: {name}: {r['seconds']:6.1f} s ({n_images / r['seconds']:.2f} img/s "
                          f"end to end; evaluation {r['eval_seconds']:.1f} s), {r['detections']:,} detections, "
                          f"bbox AP {r['bbox_AP']:.4f}", flush=True)
        figures["end_to_end"] = {}
        print(f"\n{'end to end':22s} {'seconds':>8s} {'img/s':>7s} {'detections':>11s}")
        for name, rs in e2e.items():
            best = min(rs, key=lambda r: r["seconds"])
            figures["end_to_end"][name] = dict(best, images_per_s=n_images / best["seconds"],
                                               all_seconds=[r["seconds"] for r in rs])
            print(f"{name:22s} {best['seconds']:8.1f} {n_images / best['seconds']:7.2f} {best['detections']:11,d}")
        dets = {v["detections"] for v in figures["end_to_end"].values()}
        print("same number of detections in every variant" if len(dets) == 1 else "DIFFERENT numbers of detections")
    if args.json:
        write_figures(args.json, figures, rows(figures))
        print(f"figures written to {args.json}")


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    inf = f.get("inference", {})
    out = [(f"inference, synthetic config, CPU, {threads} thread(s): {r['steady_images_per_s']:.1f} images/s steady, "
            f"{r['dets_per_image']:.0f} dets/image", "-", "-", "-") for threads, r in sorted(inf.items())]
    if len(inf) == 2:
        a, b = (inf[k] for k in sorted(inf, key=int, reverse=True))
        out.append((f"inference with {max(inf, key=int)} threads: speed-up", "1 thread",
                    ratio_text(b["seconds"] / a["seconds"]), "-"))
    return out


if __name__ == "__main__":
    main()

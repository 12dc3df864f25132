"""`loce analyze` against `loce eval` (the streaming evaluator) on the same LVIS-v1-val-like set: the time of
the call and the peak memory of the process tree, per metric, each in its own fresh process.

The set is bench_eval.py's (LVIS v1's 1,203 classes, --images images, exactly --dets-per-image detections each,
RLE masks), generated once by it and kept in --dir (shared with bench_eval.py's default folder, so a set it made is
reused). The issue's goals at full size (19,809 x 300): analyze within 8 GB and at most 3x the time of the eval.

    .venv/bin/python bench/bench_analyze.py --quick            # 500 images x 300 detections
    .venv/bin/python bench/bench_analyze.py --images 19809     # the full LVIS v1 val size (minutes)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.common
from bench.common import ratio_text, sampled_child, write_figures  # noqa: E402

GEN_VERSION = 2  # bench_eval.py's generator version (its cached sets are keyed by it)


def child(job: str, metric: str, ann: str, res: str) -> None:
    """One job in this fresh process; prints one JSON line: seconds of the call and a figure to check."""
    from loce_cli import compat

    compat.apply()
    if job == "analyze":
        from loce_cli.engine.analysis import analyze

        t = time.perf_counter()
        a = analyze(Path(res), Path(ann), metric)
        out = {"seconds": time.perf_counter() - t, "ap50": a.errors["all"]["ap50"], "detections": a.detections}
    else:
        from loce_cli.engine.evaluation import evaluate_results, matching

        matching.warm_up()
        t = time.perf_counter()
        r = evaluate_results(Path(res), Path(ann), metrics=(metric,), evaluator=job)
        out = {"seconds": time.perf_counter() - t, "ap50": r.metrics[metric].summary["AP50"]}
    print(json.dumps(out))


def run_child(job: str, metric: str, ann: Path, res: Path) -> dict:
    r, _stderr, sampler, wall = sampled_child([__file__, "--child", job, metric, ann, res], f"{job} {metric}", 0.1)
    r.update(child_wall_s=wall, peak_mb=sampler.tree_pss_peak / 1024)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets-per-image", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="500 images x 300 detections")
    ap.add_argument("--metrics", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_eval",
                    help="where generated sets are kept (bench_eval.py's)")
    ap.add_argument("--child", nargs=4, metavar=("JOB", "METRIC", "ANN", "RESULTS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.images = 500
    root = args.dir / f"v{GEN_VERSION}_{args.images}x{args.dets_per_image}_s{args.seed}"
    ann, res = root / "lvis_v1_val.json", root / "results.json"
    if not (ann.is_file() and res.is_file() and (root / "counts.json").is_file()):
        print(f"generating {root} (bench_eval.py) ...", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_eval.py")), "--generate", str(root),
                        "--images", str(args.images), "--dets-per-image", str(args.dets_per_image),
                        "--seed", str(args.seed)], check=True, stdout=subprocess.DEVNULL)
    figures = {"images": args.images, "dets_per_image": args.dets_per_image, "metrics": {}}
    print(f"{'metric':8s} {'job':10s} {'seconds':>8s} {'peak MB':>8s} {'AP50':>8s}")
    for metric in args.metrics:
        fig = {job: run_child(job, metric, ann, res) for job in ("streaming", "analyze")}
        fig["time_ratio"] = fig["analyze"]["seconds"] / fig["streaming"]["seconds"]
        figures["metrics"][metric] = fig
        for job in ("streaming", "analyze"):
            r = fig[job]
            print(f"{metric:8s} {job:10s} {r['seconds']:8.1f} {r['peak_mb']:8.0f} {r['ap50']:8.4f}")
        print(f"{metric:8s} analyze / eval time: {fig['time_ratio']:.2f}x", flush=True)
    if args.json:
        write_figures(args.json, figures, rows(figures))
        print(f"figures written to {args.json}")


def rows(e: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md."""
    size = f"{e.get('images', '?'):,} images x {e.get('dets_per_image', '?')} dets"
    out = []
    for metric, m in (e.get("metrics") or {}).items():
        out.append((f"`loce analyze` {metric} ({size}): time", "`loce eval` (streaming)",
                    ratio_text(m.get("time_ratio")), "<= 3"))
        out.append((f"`loce analyze` {metric}: peak memory GB (process tree PSS)", "-",
                    ratio_text(m["analyze"]["peak_mb"] / 1024), "<= 8"))
    return out


if __name__ == "__main__":
    main()

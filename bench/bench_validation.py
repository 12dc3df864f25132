"""What the shared results validation (scores, boxes, exact duplicates: ``engine/evaluation/validation.py``) costs
next to reading the results into columns, side by side in one run, at LVIS v1 val size by default
(19,809 images x 300 detections = 5.94M): columns made in memory as the reader makes them (no file), then

- ``validate``: check_scores + check_boxes + check_duplicates (the hash, its sort, the exact comparison of
  colliding rows; no masks compared),
- ``argsort``: one ``np.argsort`` of 5.94M float64 scores (the order the evaluator's top-k selection needs
  anyway), as the yardstick,

and prints seconds, the ratio validate / argsort and the peak memory the validation adds (tracemalloc of numpy's
allocations). ``--with-duplicates`` makes 1% of the rows exact copies (the refusal path: counting and naming).

    .venv/bin/python bench/bench_validation.py
    .venv/bin/python bench/bench_validation.py --images 2000
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import ratio_text, write_figures  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=19809)
    ap.add_argument("--dets-per-image", type=int, default=300)
    ap.add_argument("--classes", type=int, default=1203)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-duplicates", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    from loce_cli.engine.evaluation import validation
    from loce_cli.errors import DataError

    rng = np.random.default_rng(0)
    n = args.images * args.dets_per_image
    img = np.repeat(np.arange(args.images, dtype=np.int32), args.dets_per_image)
    cat = rng.integers(0, args.classes, n, dtype=np.int32)
    score = rng.random(n)
    box = np.concatenate([rng.uniform(0, 600, (n, 2)), rng.uniform(1, 300, (n, 2))], axis=1)
    if args.with_duplicates:
        k = rng.choice(n - 1, n // 100, replace=False)
        img[k + 1], cat[k + 1], score[k + 1], box[k + 1] = img[k], cat[k], score[k], box[k]
    gt = SimpleNamespace(img_ids=np.arange(args.images) + 1, cat_ids=np.arange(args.classes) + 1)
    path = Path("results.json")
    times, base, peak = [], [], 0
    for _ in range(args.repeats):
        tracemalloc.start()
        t = time.perf_counter()
        try:
            validation.check_scores(path, gt, img, cat, score)
            validation.check_boxes(path, gt, img, cat, box)
            validation.check_duplicates(path, gt, img, cat, score, box, None)
            outcome = "accepted"
        except DataError as e:
            outcome = e.one_line()[:120]
        times.append(time.perf_counter() - t)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        t = time.perf_counter()
        np.argsort(score)
        base.append(time.perf_counter() - t)
    v, b = min(times), min(base)
    print(f"{n:,} detections ({args.images:,} images x {args.dets_per_image}); {outcome}")
    print(f"validate {v:.2f} s   argsort of the scores {b:.2f} s   ratio {v / b:.2f}   "
          f"(best of {args.repeats}; all validate runs: {', '.join(f'{x:.2f}' for x in times)})")
    print(f"peak memory added by the validation: {peak / 1e6:,.0f} MB ({peak / n:.1f} bytes per detection)")
    figures = dict(detections=n, images=args.images, dets_per_image=args.dets_per_image, outcome=outcome,
                   validate_s=v, argsort_s=b, ratio=v / b, all_validate_s=times, peak_bytes=peak)
    write_figures(args.json, figures, rows(figures))


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    return [(f"results validation (scores, boxes, exact duplicates) of {f['detections']:,} detections: time "
             f"({f['peak_bytes'] / f['detections']:.1f} bytes per detection added)",
             "one argsort of the scores", ratio_text(f["ratio"]), "-")]


if __name__ == "__main__":
    main()

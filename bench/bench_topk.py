"""The per-class top-k of AP-fixed (``core.topk.TopKPerGroup``) on uncapped, LVIS-sized streams, side by side with
one sort of the whole stream (what holding every detection costs).

A stream of N detections (long-tailed classes: 1,203 of LVIS v1's r/c/f proportions, weights ~ image count^0.85,
random scores) is fed in blocks of --block detections, as the results reader feeds the first pass; the same
stream in one array is sorted once (``top_k_per_group``) for the reference. Printed per N: seconds of each,
their ratio, the most entries the streaming structure held (its memory is 20 bytes each) against N, and whether
both chose the same detections.

    .venv/bin/python bench/bench_topk.py                        # N = 5.9M, 20M, 60M (300 / 1,000 / 3,000 per image)
    .venv/bin/python bench/bench_topk.py --sizes 2000000 --k 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import lvis_v1_classes, ratio_text, write_figures  # noqa: E402
from loce_cli.core.topk import TopKPerGroup, top_k_per_group  # noqa: E402


def stream(n: int, seed: int):
    """``n`` detections' classes (LVIS v1's, weights ~ training images^0.85, from the engine's generator for
    n / 300 images) and random scores."""
    counts, _ = lvis_v1_classes(max(n // 300, 1), seed)
    p = counts.astype(np.float64) ** 0.85
    p /= p.sum()
    rng = np.random.default_rng(seed)
    cat = rng.choice(len(counts), size=n, p=p).astype(np.int32)
    score = rng.random(n)
    return cat, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_942_700, 19_809_000, 59_427_000])
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--block", type=int, default=200_000)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    results = []
    classes = 1203
    print(f"{'detections':>12s} {'stream s':>9s} {'sort s':>8s} {'sort/stream':>11s} {'peak entries':>13s} "
          f"{'of N':>6s} {'kept':>10s} same")
    for n in args.sizes:
        cat, score = stream(n, 0)
        t = time.perf_counter()
        top = TopKPerGroup(classes, args.k)
        for first in range(0, n, args.block):
            top.add(cat[first:first + args.block], score[first:first + args.block], first)
        got = top.positions()
        stream_s = time.perf_counter() - t
        t = time.perf_counter()
        ref = top_k_per_group(cat, score, args.k)
        sort_s = time.perf_counter() - t
        same = np.array_equal(got, ref)
        print(f"{n:12,d} {stream_s:9.1f} {sort_s:8.1f} {sort_s / stream_s:10.2f}x {top.peak_entries:13,d} "
              f"{top.peak_entries / n:6.2f} {got.size:10,d} {same}", flush=True)
        if not same:
            raise SystemExit("streaming and one-sort selections differ")
        results.append(dict(detections=n, stream_seconds=stream_s, sort_seconds=sort_s, peak_entries=top.peak_entries,
                         kept=int(got.size), same=same))
    figures = dict(k=args.k, classes=classes, block=args.block, sizes=results)
    write_figures(args.json, figures, rows(figures))


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    return [(f"AP-fixed's per-class top {f['k']:,}, {r['detections']:,} detections streamed in blocks of "
             f"{f['block']:,}: time (same choice: {r['same']}; held {r['peak_entries'] / r['detections']:.2f} of the "
             "stream)", "one sort of the whole stream", ratio_text(r["stream_seconds"] / r["sort_seconds"]), "-")
            for r in f["sizes"]]


if __name__ == "__main__":
    main()

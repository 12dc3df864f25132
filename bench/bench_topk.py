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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loce_cli.core.topk import TopKPerGroup, top_k_per_group  # noqa: E402


def stream(n: int, classes: int, seed: int):
    rng = np.random.default_rng(seed)
    counts = np.concatenate([rng.integers(1, 11, round(classes * 337 / 1203)),
                             rng.integers(11, 101, round(classes * 461 / 1203))])
    counts = np.concatenate([counts, np.exp(rng.uniform(np.log(101), np.log(10_000), classes - counts.size))])
    p = counts ** 0.85
    p /= p.sum()
    cat = rng.choice(classes, size=n, p=p).astype(np.int32)
    score = rng.random(n)
    return cat, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_942_700, 19_809_000, 59_427_000])
    ap.add_argument("--classes", type=int, default=1203)
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--block", type=int, default=200_000)
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    rows = []
    print(f"{'detections':>12s} {'stream s':>9s} {'sort s':>8s} {'sort/stream':>11s} {'peak entries':>13s} "
          f"{'of N':>6s} {'kept':>10s} same")
    for n in args.sizes:
        cat, score = stream(n, args.classes, 0)
        t = time.perf_counter()
        top = TopKPerGroup(args.classes, args.k)
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
        rows.append(dict(detections=n, stream_seconds=stream_s, sort_seconds=sort_s, peak_entries=top.peak_entries,
                         kept=int(got.size), same=same))
    if args.json:
        import json

        args.json.write_text(json.dumps(dict(k=args.k, classes=args.classes, block=args.block, rows=rows), indent=2))


if __name__ == "__main__":
    main()

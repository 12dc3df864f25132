"""`loce data prep` against a plain `lvis.LVIS(...)` load of the same LVIS-v1-train-sized file.

Generates (once, cached in --dir) an LVIS v1 train file of --images images and --annotations annotations over
LVIS v1's 1203 classes (defaults: LVIS v1 train, 100k images, 1.27M annotations; 337 rare / 461 common / 405
frequent classes, their image counts drawn by the engine's LVIS-shaped generator; COCO-like image records,
polygons of 12-70 points), then runs, each in its own fresh
process and interleaved --repeats times:

  lvis    lvis.LVIS(path): json.load + the API's index (what every LVIS user pays to open the file)
  prep    loce_cli.engine.data.prep.prep_dataset(root, check_images='none'): parse + every check + meta written

and reports wall time (of the work, imports excluded) and peak memory (ru_maxrss of that process) of each,
and prep / lvis as the figure. --parsers also times a parse-only of the file with json, msgspec (and orjson
when installed).

    python bench/bench_prep.py                 # LVIS v1 train size (about 1 GB file; ~4 min on 2 cores)
    python bench/bench_prep.py --quick         # 10k images / 127k annotations, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import child_json, ratio_text, write_figures  # noqa: E402
from bench.lvis_files import train_file  # noqa: E402

CHILD = r"""
import json, resource, sys, time, logging
kind, path, root = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "lvis":
    from loce_cli import compat
    compat.apply()
    from lvis import LVIS
    logging.getLogger().setLevel(logging.WARNING)
    t = time.perf_counter()
    LVIS(path)
elif kind == "prep":
    from loce_cli.engine.data.prep import prep_dataset
    t = time.perf_counter()
    r = prep_dataset(root, version="v1", check_images="none")
    assert r.ok, [p for _, p in r.all_problems() if p.severity == "error"]
elif kind == "json":
    t = time.perf_counter()
    with open(path, "rb") as f:
        json.load(f)
elif kind == "orjson":
    import orjson
    t = time.perf_counter()
    with open(path, "rb") as f:
        orjson.loads(f.read())
elif kind == "msgspec":
    import msgspec
    t = time.perf_counter()
    with open(path, "rb") as f:
        msgspec.json.decode(f.read())
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--annotations", type=int, default=1_270_000)
    ap.add_argument("--quick", action="store_true", help="10k images, 127k annotations")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of each side (best time is used)")
    ap.add_argument("--parsers", action="store_true",
                    help="also time a parse-only with json, msgspec (and orjson if installed)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_prep",
                    help="where the generated dataset is kept (reused when its size matches)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.annotations = 10_000, 127_000
    root = args.dir / f"lvis_v2_{args.images}_{args.annotations}"
    path = root / "annotations" / "lvis_v1_train.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        (root / "train2017").mkdir(exist_ok=True)
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        train_file(tmp, args.images, args.annotations)
        tmp.rename(path)
        print(f"generated {path} in {time.perf_counter() - t:.0f} s")
    print(f"file: {path} ({path.stat().st_size / 1e9:.2f} GB, {args.images:,} images, "
          f"{args.annotations:,} annotations, 1203 classes)")
    kinds = ["lvis", "prep"]
    if args.parsers:
        import importlib.util

        kinds += ["json", "msgspec"] + (["orjson"] if importlib.util.find_spec("orjson") else [])
    runs = {k: [] for k in kinds}
    for rep in range(args.repeats):
        for k in kinds:
            runs[k].append(child_json(["-c", CHILD, k, path, root], k))
            print(f"  run {rep + 1}: {k:8s} {runs[k][-1]['seconds']:7.2f} s  peak {runs[k][-1]['maxrss_mb']:8.0f} MB",
                  flush=True)
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    peak = {k: max(r["maxrss_mb"] for r in v) for k, v in runs.items()}
    print(f"\n{'':10s}{'time (best)':>14s}{'peak memory':>14s}")
    for k in kinds:
        print(f"{k:10s}{best[k]:12.2f} s{peak[k]:11.0f} MB")
    print(f"\nprep / lvis.LVIS: time {best['prep'] / best['lvis']:.2f}x, peak memory "
          f"{peak['prep'] / peak['lvis']:.2f}x  (goal: <= 1.5x each)")
    figures = dict(images=args.images, annotations=args.annotations, classes=1203, seconds=best, peak_mb=peak,
                   time_ratio=best["prep"] / best["lvis"], memory_ratio=peak["prep"] / peak["lvis"])
    write_figures(args.json, figures, rows(figures))


def rows(p: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    return [(f"`loce data prep` full validation ({p['images']:,} images, {p['annotations']:,} annotations): time",
             "`lvis.LVIS(...)` load", ratio_text(p.get("time_ratio")), "<= 1.5"),
            ("`loce data prep`: peak memory", "`lvis.LVIS(...)` load", ratio_text(p.get("memory_ratio")), "<= 1.5")]


if __name__ == "__main__":
    main()

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import lvis_v1_classes, ratio_text, write_figures  # noqa: E402

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


def generate(path: Path, n_images: int, n_anns: int, seed: int = 0) -> None:
    """An LVIS v1 train-like file: LVIS v1's rare / common / frequent classes (the engine's image counts)."""
    import msgspec

    enc = msgspec.json.Encoder()

    rng = np.random.default_rng(seed)
    img_counts, freq = lvis_v1_classes(n_images, seed)
    n_classes = len(img_counts)
    pair_img, pair_cat = [], []
    for c in range(n_classes):
        pair_img.append(rng.choice(n_images, size=int(img_counts[c]), replace=False))
        pair_cat.append(np.full(int(img_counts[c]), c))
    pair_img = np.concatenate(pair_img)
    pair_cat = np.concatenate(pair_cat)
    n_pairs = len(pair_img)
    per_pair = np.ones(n_pairs, np.int64)
    if n_anns > n_pairs:
        per_pair += np.bincount(rng.integers(0, n_pairs, n_anns - n_pairs), minlength=n_pairs)
    ann_img = np.repeat(pair_img, per_pair)
    ann_cat = np.repeat(pair_cat, per_pair)
    perm = rng.permutation(len(ann_img))
    ann_img, ann_cat = ann_img[perm], ann_cat[perm]
    n_anns = len(ann_img)
    inst_counts = np.bincount(ann_cat, minlength=n_classes)

    image_ids = np.sort(rng.choice(600_000, size=n_images, replace=False)) + 1
    sizes = np.array([(640, 480), (480, 640), (640, 427), (500, 375), (640, 512)])
    wh = sizes[rng.integers(0, len(sizes), n_images)]

    with open(path, "wb") as f:
        f.write(b'{"info":{"description":"LVIS v1 (bench_prep: generated)","version":"1.0","year":2020},'
                b'"licenses":[{"id":1,"name":"Attribution License","url":"http://creativecommons.org/"}],'
                b'"images":[')
        for start in range(0, n_images, 20_000):
            chunk = []
            for i in range(start, min(n_images, start + 20_000)):
                iid = int(image_ids[i])
                chunk.append({
                    "id": iid, "license": 1, "height": int(wh[i, 1]), "width": int(wh[i, 0]),
                    "flickr_url": f"http://farm{iid % 9}.staticflickr.com/{iid % 8000}/{iid * 7919}_abcdef.jpg",
                    "coco_url": f"http://images.cocodataset.org/train2017/{iid:012d}.jpg",
                    "date_captured": "2013-11-14 16:28:13",
                    "neg_category_ids": sorted(int(c) + 1 for c in rng.choice(n_classes, rng.integers(0, 12), False)),
                    "not_exhaustive_category_ids": sorted(
                        int(c) + 1 for c in rng.choice(n_classes, rng.integers(0, 3), False)),
                })
            f.write((b"," if start else b"") + enc.encode(chunk)[1:-1])
        f.write(b'],"annotations":[')
        for start in range(0, n_anns, 50_000):
            stop = min(n_anns, start + 50_000)
            m = stop - start
            W = wh[ann_img[start:stop], 0].astype(np.float64)
            H = wh[ann_img[start:stop], 1].astype(np.float64)
            bw = np.round(W * rng.uniform(0.02, 0.6, m), 2)
            bh = np.round(H * rng.uniform(0.02, 0.6, m), 2)
            bx = np.round(rng.uniform(0, 1, m) * (W - bw), 2)
            by = np.round(rng.uniform(0, 1, m) * (H - bh), 2)
            npts = rng.integers(12, 71, m)
            offsets = np.concatenate([[0], np.cumsum(npts)])
            k = np.arange(offsets[-1]) - np.repeat(offsets[:-1], npts)
            ang = 2 * np.pi * k / np.repeat(npts, npts)
            r = rng.uniform(0.8, 1.0, offsets[-1])
            px = np.round(np.repeat(bx, npts) + np.repeat(bw, npts) * (0.5 + 0.5 * r * np.cos(ang)), 2)
            py = np.round(np.repeat(by, npts) + np.repeat(bh, npts) * (0.5 + 0.5 * r * np.sin(ang)), 2)
            coords = np.stack([px, py], 1).reshape(-1).tolist()
            chunk = []
            for j in range(m):
                a, b = 2 * offsets[j], 2 * offsets[j + 1]
                chunk.append({
                    "area": round(float(bw[j] * bh[j] * 0.75), 2), "id": start + j + 1,
                    "segmentation": [coords[a:b]], "image_id": int(image_ids[ann_img[start + j]]),
                    "bbox": [float(bx[j]), float(by[j]), float(bw[j]), float(bh[j])],
                    "category_id": int(ann_cat[start + j]) + 1,
                })
            f.write((b"," if start else b"") + enc.encode(chunk)[1:-1])
        cats = [{"id": c + 1, "name": f"class_{c:04d}", "synset": f"class_{c:04d}.n.01",
                 "synonyms": [f"class_{c:04d}"], "def": "a generated category for bench_prep",
                 "frequency": str(freq[c]), "image_count": int(img_counts[c]), "instance_count": int(inst_counts[c])}
                for c in range(n_classes)]
        f.write(b'],"categories":' + enc.encode(cats) + b"}")


def run_child(kind: str, path: Path, root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(root)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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
        generate(tmp, args.images, args.annotations)
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
            runs[k].append(run_child(k, path, root))
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

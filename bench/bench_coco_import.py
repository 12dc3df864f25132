"""`loce data import coco` against a plain `json.load` of the same LVIS-train-sized COCO file.

Generates (once, cached in --dir) a box-only COCO train file of --images images and --annotations annotations
(defaults: LVIS v1 train's size, 100k images, 1.2M annotations) over --classes classes with long-tailed image
counts, about 1% crowd regions, COCO-like image records; a val file of --val-images images (10 annotations
each); every image file a hard link to one PNG of the annotated size. Then runs, each in its own fresh process
and interleaved --repeats times:

  json    json.load(train file)   (what any tool pays to open the file)
  import  loce_cli.engine.data.coco_import.import_coco(...): both files read and checked, every image file's
          presence checked, LVIS fields added, both files written, then `loce data prep`'s validation (200
          sampled images opened) and meta on the result, moved into place

and reports wall time and peak memory of the work (the process's peak resident memory from the moment the
work starts, over its resident memory then: Python's and loce's imports excluded) of each, and import / json as
the figure (goal: <= 2x each); the whole process's peak (ru_maxrss) is printed too. ``--classes`` takes several
counts (e.g. ``80 1203``: COCO's and LVIS's), each measured on its own generated input, all in one run. COCO
annotates every category in every image: the val file the import writes lists each image's
``neg_category_ids`` (images x classes ids, written as text), the train file says it once in its info.

    python bench/bench_coco_import.py --classes 80 1203   # 100k images / 1.2M annotations (minutes on 2 cores)
    python bench/bench_coco_import.py --quick --classes 80 1203   # 10k images / 120k annotations
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import child_json, ratio_text, write_figures  # noqa: E402

W, H = 640, 480

CHILD = r"""
import json, resource, shutil, sys, time
kind, train, images, val, val_images, out = sys.argv[1:7]


def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


if kind != "json":
    from loce_cli.engine.data.coco_import import import_coco
    shutil.rmtree(out, ignore_errors=True)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts here: the work's memory, not the imports'
base = rss("VmRSS")
t = time.perf_counter()
if kind == "json":
    with open(train, "rb") as f:
        json.load(f)
else:
    import_coco(out, train, images, val, val_images)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "work_mb": rss("VmHWM") - base,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _coco_file(path: Path, img_dir: Path, n_images: int, n_anns: int, n_classes: int, first_id: int, seed: int):
    """A box-only COCO file with long-tailed classes (class k drawn with weight 1 / (k + 1))."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    img_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (W, H)).save(buf, format="PNG")
    images = []
    for i in range(n_images):
        proto = img_dir / f".proto{i // 50_000}.png"  # a file takes at most 65,000 hard links (ext4)
        if not proto.exists():
            proto.write_bytes(buf.getvalue())
        name = f"{first_id + i:012d}.jpg"
        if not (img_dir / name).exists():
            os.link(proto, img_dir / name)
        images.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/x/{name}",
                       "height": H, "width": W, "date_captured": "2013-11-14 11:18:45", "id": first_id + i})
    weights = 1.0 / np.arange(1, n_classes + 1)
    cat = rng.choice(n_classes, size=n_anns, p=weights / weights.sum()) + 1
    img = rng.integers(0, n_images, size=n_anns) + first_id
    wh = rng.uniform(4, 200, size=(n_anns, 2)).round(2)
    xy = (rng.uniform(0, 1, size=(n_anns, 2)) * ([W, H] - wh)).round(2)
    crowd = rng.random(n_anns) < 0.01
    anns = [{"segmentation": [], "area": float(wh[k, 0] * wh[k, 1]), "iscrowd": int(crowd[k]),
             "image_id": int(img[k]), "bbox": [float(xy[k, 0]), float(xy[k, 1]), float(wh[k, 0]), float(wh[k, 1])],
             "category_id": int(cat[k]), "id": k + 1 + first_id * 10} for k in range(n_anns)]
    cats = [{"supercategory": "thing", "id": k + 1, "name": f"class_{k + 1:04d}"} for k in range(n_classes)]
    import msgspec

    path.write_bytes(msgspec.json.encode({"info": {"description": "bench", "version": "1.0"}, "licenses": [],
                                          "images": images, "annotations": anns, "categories": cats}))


def _measure(args, n_classes: int) -> dict:
    """Generate (or reuse) the input with ``n_classes`` classes; json.load and the import on it, interleaved."""
    root = args.dir / f"coco_{args.images}_{args.annotations}_{n_classes}_{args.val_images}"
    train, val = root / "train.json", root / "val.json"
    if not (train.is_file() and val.is_file()):
        t = time.perf_counter()
        _coco_file(val, root / "val_images", args.val_images, args.val_images * 10, n_classes, 10_000_000, 1)
        _coco_file(train, root / "train_images", args.images, args.annotations, n_classes, 1, 0)
        print(f"generated {root} in {time.perf_counter() - t:.0f} s")
    print(f"train file: {train} ({train.stat().st_size / 1e6:.0f} MB, {args.images:,} images, "
          f"{args.annotations:,} annotations, {n_classes} classes); val: {args.val_images:,} images")
    argv = [train, root / "train_images", val, root / "val_images", root / "out"]
    runs = {k: [] for k in ("json", "import")}
    for rep in range(args.repeats):
        for k in runs:
            runs[k].append(child_json(["-c", CHILD, k, *argv], k))
            r = runs[k][-1]
            print(f"  run {rep + 1}: {k:7s} {r['seconds']:7.2f} s  work peak {r['work_mb']:8.0f} MB  (process "
                  f"{r['maxrss_mb']:.0f} MB)", flush=True)
    out = {f: (root / "out" / "annotations" / f"{f}.json").stat().st_size for f in ("train", "val")}
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    peak = {k: max(r["work_mb"] for r in v) for k, v in runs.items()}
    print(f"  {n_classes} classes: import / json.load: time {best['import'] / best['json']:.2f}x, peak memory "
          f"{peak['import'] / peak['json']:.2f}x  (goal: <= 2x each); written train {out['train'] / 1e6:.0f} MB, "
          f"val {out['val'] / 1e6:.0f} MB\n", flush=True)
    return dict(images=args.images, annotations=args.annotations, classes=n_classes, val_images=args.val_images,
                input_mb=train.stat().st_size / 1e6, written_mb={f: b / 1e6 for f, b in out.items()},
                seconds=best, peak_mb=peak, time_ratio=best["import"] / best["json"],
                memory_ratio=peak["import"] / peak["json"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--annotations", type=int, default=1_200_000)
    ap.add_argument("--classes", type=int, nargs="+", default=[80, 1203])
    ap.add_argument("--val-images", type=int, default=5_000)
    ap.add_argument("--quick", action="store_true", help="10k images, 120k annotations, 1k val images")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved runs of each side (best time is used)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_coco_import",
                    help="where the generated data is kept (reused when its size matches)")
    args = ap.parse_args()
    if args.quick:
        args.images, args.annotations, args.val_images = 10_000, 120_000, 1_000
    measured = [_measure(args, n) for n in args.classes]
    print("classes  json.load s  import s  time  json MB  import MB  memory  (goal: <= 2x each)")
    for m in measured:
        print(f"{m['classes']:7d}  {m['seconds']['json']:11.2f}  {m['seconds']['import']:8.2f}  "
              f"{m['time_ratio']:4.2f}x  {m['peak_mb']['json']:7.0f}  {m['peak_mb']['import']:9.0f}  "
              f"{m['memory_ratio']:5.2f}x")
    figures = {"runs": measured}
    write_figures(args.json, figures, rows(figures))
    print(json.dumps(figures))


def rows(p: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    out = []
    for m in p.get("runs", []):
        what = f"{m['images']:,} images, {m['annotations']:,} annotations, {m['classes']} classes"
        out += [(f"`loce data import coco` ({what}): time", "`json.load` of the train file",
                 ratio_text(m.get("time_ratio")), "<= 2"),
                (f"`loce data import coco` ({m['classes']} classes): peak memory", "`json.load` of the train file",
                 ratio_text(m.get("memory_ratio")), "<= 2")]
    return out


if __name__ == "__main__":
    main()

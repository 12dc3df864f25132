"""``loce eval --nproc 2`` against one process, side by side: rank 0's peak memory (issue 14: "at 2,000 images,
rank 0's peak memory no higher than one process's"), wall time, detections written and the metrics.

Each rank streams its detections to its own results shard and rank 0 merges the shards into results.json by
streaming, then evaluates it with the streaming evaluator; before, rank 0 gathered every rank's detections in
memory. This benchmark runs, each in a fresh process tree, alternating the order over --repeats:

    (a) ``loce eval CONFIG CKPT --out D --cfg-options ...``            one process
    (b) the same with ``--nproc 2``                                    torchrun + 2 workers (gloo)

on a synthetic dataset of --images val images (``loce data synth``, cached in --dir keyed by the options) with a
randomly initialised (seeded) synthetic Mask R-CNN (configs/synthetic/mask_rcnn_r18_fpn_normed_synth.py) saved
by mmcv's save_checkpoint with meta CLASSES, tested with score_thr 0 so that every image gives --max-dets (300,
LVIS's protocol) detections with masks. While each command runs, every 0.2 s, the Rss and Pss of each process
of its tree (from /proc/PID/smaps_rollup; the tree found by walking the parent pids of /proc/*/stat from the
`loce` process) are sampled, and each process's VmHWM (the kernel's own peak RSS, exact) is read. Rank 0 is the
``python -m loce_cli.engine.worker`` process whose environment holds RANK=0 (for (a): the `loce` process
itself). Reported per run: wall seconds, rank 0's peak RSS (VmHWM), peak sampled RSS and PSS, the same for rank
0 with its descendants (the streaming evaluator's worker processes) and the whole tree's peak PSS; detections
written (counted in results.json, per image min / max), whether results.json is byte-identical and the
metrics.json summaries equal; and the ratios (b) rank 0 / (a) process. OMP_NUM_THREADS=1 in the children.

    .venv/bin/python bench/bench_eval_ranks.py                      # 2,000 images x 300 detections
    .venv/bin/python bench/bench_eval_ranks.py --image-size 64      # the same, cheaper mask pasting
    .venv/bin/python bench/bench_eval_ranks.py --quick              # 200 images (~6 min on 2 loaded cores)

On 2 cores (shared) one process infers about 1 to 1.5 images/s at 300 detections with masks, so the 2,000-image
run takes 30-45 minutes. The peaks are dominated by the ~1 GB every process has before its first detection (torch,
mmcv, mmdet, the model); between runs they vary by up to ~10 %: use --repeats 2 or more to compare closely.
    .venv/bin/python bench/bench_eval_ranks.py --images 500 --repeats 2 --json /tmp/ranks.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.common
from bench.common import (ROOT, WORKER, TreeSampler, descendants, free_port, loce_binary,  # noqa: E402
                          ratio_text, write_figures)

CONFIG = ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
LOCE = loce_binary()
GEN_VERSION = 1  # bump when the dataset or checkpoint recipe changes, so cached ones are rebuilt
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


# ---------------------------------------------------------------------------------------------- set-up


def _options(data: Path, classes: int, score_thr: float) -> list:
    ann = data / "annotations" / "lvis_v1_val.json"
    return [f"data.test.ann_file={ann}", f"data.test.img_prefix={data}/",
            f"data.train.ann_file={data / 'annotations' / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/",
            f"model.roi_head.bbox_head.num_classes={classes}", f"model.roi_head.mask_head.num_classes={classes}",
            f"model.test_cfg.rcnn.score_thr={score_thr}", "model.test_cfg.rcnn.max_per_img=300",
            "data.workers_per_gpu=0"]


def make_checkpoint(data: Path, classes: int, ckpt: Path, seed: int) -> None:
    """(In a child process.) The synthetic config's model, randomly initialised with ``seed``, saved with meta
    CLASSES equal to the test set's classes."""
    import numpy as np
    import torch

    import loce_cli.mmdet_ext  # noqa: F401
    from loce_cli.engine.config.loading import load_config
    from mmcv.runner import save_checkpoint
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    cfg = load_config(CONFIG, _options(data, classes, 0.0))
    cfg.data.test.test_mode = True
    names = tuple(build_dataset(cfg.data.test).CLASSES)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    model.CLASSES = names
    tmp = ckpt.with_suffix(".tmp")
    save_checkpoint(model, str(tmp), meta=dict(CLASSES=names))
    tmp.replace(ckpt)


def prepare(args) -> tuple:
    """The dataset and the checkpoint, cached in ``args.dir`` keyed by the options."""
    key = (f"v{GEN_VERSION}_val{args.images}_train{args.train_images}_{args.image_size}px_{args.classes}c_"
           f"obj{args.max_objects}_s{args.seed}")
    root = args.dir / key
    data, ckpt = root / "data", root / "random_init.pth"
    if not (data / "annotations" / "lvis_v1_val.json").is_file():
        tmp = root / "data.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"generating {data} ...", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([str(LOCE), "data", "synth", "--out", str(tmp), "--val-images", str(args.images),
                               "--train-images", str(args.train_images), "--image-size", str(args.image_size),
                               "--num-classes", str(args.classes), "--max-objects", str(args.max_objects),
                               "--seed", str(args.seed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode != 0:
            raise SystemExit(f"loce data synth failed: {proc.stderr.strip()[-2000:]}")
        shutil.rmtree(data, ignore_errors=True)
        tmp.rename(data)
        print(f"  generated in {time.perf_counter() - t:.0f} s", flush=True)
    if not ckpt.is_file():
        proc = subprocess.run([sys.executable, __file__, "--make-checkpoint", str(data), str(args.classes),
                               str(ckpt), str(args.seed)], capture_output=True, text=True, env=_child_env())
        if proc.returncode != 0:
            raise SystemExit(f"making the checkpoint failed:\n{proc.stderr[-3000:]}")
    return data, ckpt


def _child_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


# ---------------------------------------------------------------------------------------------- sampling


class RankSampler(TreeSampler):
    """The tree's memory (``TreeSampler``) and rank 0's: its own timeline ((seconds, Rss kB, Pss kB)), the peak
    of rank 0 with its descendants, and when ``out/results.json`` appeared (the merge's end)."""

    def __init__(self, root_pid: int, interval: float = 0.2, out: Path = None):
        super().__init__(root_pid, interval)
        self.out = out
        self.results_at = None
        self.rank0_timeline = []
        self.rank0_tree_pss_peak = 0
        self.rank0_tree_rss_peak = 0

    def observe(self, t, now, parent):
        if self.results_at is None and self.out is not None and (self.out / "results.json").exists():
            self.results_at = t
        r0 = self.rank0_pid()
        if r0 is not None and r0 in now:
            self.rank0_timeline.append((round(t, 2), now[r0][0], now[r0][1]))
            sub = [p for p in descendants(r0, {c: pp for c, pp in parent.items() if c in now}) if p in now]
            self.rank0_tree_pss_peak = max(self.rank0_tree_pss_peak, sum(now[p][1] for p in sub))
            self.rank0_tree_rss_peak = max(self.rank0_tree_rss_peak, sum(now[p][0] for p in sub))

    def workers(self) -> dict:
        return {pid: p for pid, p in self.procs.items() if WORKER in p.cmd}

    def rank0_pid(self):
        workers = self.workers()
        if not workers:
            return self.root  # one process: the `loce` process itself
        for pid, p in workers.items():
            if p.rank == 0:
                return pid
        return min(workers, key=lambda pid: (workers[pid].start, pid))  # the first worker started


# ---------------------------------------------------------------------------------------------- one run


_IMG_RE = re.compile(rb'"image_id": ?(\d+)')


def _count_results(path: Path) -> dict:
    """Detections in results.json per image (min / max / mean), counted by reading it in blocks; its sha256."""
    per_image = {}
    digest = hashlib.sha256()
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 22)
            if not block:
                break
            digest.update(block)
            buf = tail + block
            cut = max(buf.rfind(b'"image_id"'), 0)  # an id may be split at the block's end: count it next time
            for m in _IMG_RE.finditer(buf, 0, cut):
                per_image[int(m.group(1))] = per_image.get(int(m.group(1)), 0) + 1
            tail = buf[cut:]
    for m in _IMG_RE.finditer(tail):
        per_image[int(m.group(1))] = per_image.get(int(m.group(1)), 0) + 1
    counts = list(per_image.values())
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return dict(detections=sum(counts), images=len(counts), min_per_image=min(counts, default=0),
                max_per_image=max(counts, default=0), mean_per_image=sum(counts) / max(len(counts), 1),
                has_masks=b'"segmentation"' in head, bytes=path.stat().st_size, sha256=digest.hexdigest())


def run_eval(name: str, nproc: int, data: Path, ckpt: Path, out: Path, args) -> dict:
    """One ``loce eval`` in a fresh process tree, sampled while it runs."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [LOCE, "eval", str(CONFIG), str(ckpt), "--out", str(out)]
    for o in _options(data, args.classes, args.score_thr):
        cmd += ["--cfg-options", o]
    if args.eval_workers:
        cmd += ["--workers", str(args.eval_workers)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc), "--master-port", str(free_port())]
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT, env=_child_env())
        sampler = RankSampler(proc.pid, args.interval, out).start()
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        finally:
            sampler.stop()
    wall = time.perf_counter() - t
    if rc != 0:
        text = log.read_text(errors="replace")
        raise SystemExit(f"{name} failed ({rc}) after {wall:.0f} s: {' '.join(cmd)}\n{text[-4000:]}")
    r0 = sampler.rank0_pid()
    p0 = sampler.procs.get(r0)
    results = _count_results(out / "results.json")
    metrics = json.loads((out / "metrics.json").read_text())
    summaries = {m: v["summary"] for m, v in metrics["metrics"].items()}
    procs = [dict(pid=pid, parent=p.parent, rank=p.rank, cmd=p.cmd[:160], peak_rss_mb=p.rss / 1024,
                  peak_pss_mb=p.pss / 1024, hwm_mb=p.hwm / 1024) for pid, p in sampler.procs.items()]
    if not args.keep:
        (out / "results.json").unlink(missing_ok=True)
    split = sampler.results_at if sampler.results_at is not None else float("inf")
    before = [x for x in sampler.rank0_timeline if x[0] < split]
    after = [x for x in sampler.rank0_timeline if x[0] >= split]
    phases = dict(results_json_at_s=sampler.results_at,
                  rank0_pss_mb_inference_merge=max((x[2] for x in before), default=0) / 1024,
                  rank0_pss_mb_evaluation=max((x[2] for x in after), default=0) / 1024,
                  rank0_rss_mb_inference_merge=max((x[1] for x in before), default=0) / 1024,
                  rank0_rss_mb_evaluation=max((x[1] for x in after), default=0) / 1024)
    return dict(name=name, nproc=nproc, wall_s=wall, rank0_pid=r0, rank0_cmd=p0.cmd[:160] if p0 else "",
                rank0_env_rank=p0.rank if p0 else None, rank0_hwm_mb=p0.hwm / 1024 if p0 else 0,
                rank0_peak_rss_mb=p0.rss / 1024 if p0 else 0, rank0_peak_pss_mb=p0.pss / 1024 if p0 else 0,
                rank0_tree_peak_rss_mb=sampler.rank0_tree_rss_peak / 1024,
                rank0_tree_peak_pss_mb=sampler.rank0_tree_pss_peak / 1024, tree_peak_pss_mb=sampler.tree_pss_peak / 1024,
                samples=sampler.samples, phases=phases, timeline=sampler.rank0_timeline, processes=procs, results=results, summaries=summaries,
                evaluator=metrics.get("evaluator"), eval_seconds=metrics.get("seconds"), command=cmd)


# ---------------------------------------------------------------------------------------------- main


COLUMNS = (("wall_s", "wall s"), ("rank0_hwm_mb", "rank0 VmHWM MB"), ("rank0_peak_rss_mb", "rank0 RSS MB"),
           ("rank0_peak_pss_mb", "rank0 PSS MB"), ("rank0_tree_peak_pss_mb", "rank0+kids PSS"),
           ("tree_peak_pss_mb", "tree PSS MB"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="val images")
    ap.add_argument("--quick", action="store_true", help="200 images")
    ap.add_argument("--train-images", type=int, default=120)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--max-objects", type=int, default=6)
    ap.add_argument("--score-thr", type=float, default=0.0, help="the test score threshold (0: every candidate)")
    ap.add_argument("--eval-workers", type=int, default=0, help="--workers of the streaming evaluator (0: default)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of (a) and (b), the order alternating")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before a run is given up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the results.json files")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_eval_ranks",
                    help="where the dataset and the checkpoint are kept (reused when the options match)")
    ap.add_argument("--make-checkpoint", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_checkpoint:
        data, classes, ckpt, seed = args.make_checkpoint
        make_checkpoint(Path(data), int(classes), Path(ckpt), int(seed))
        return
    if args.quick:
        args.images = 200

    data, ckpt = prepare(args)
    print(f"set: {data} ({args.images:,} val images of {args.image_size} px, {args.classes} classes); "
          f"checkpoint {ckpt.name} (random init, seed {args.seed})")
    print(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the runs", flush=True)
    runs_dir = args.dir / "runs"
    plans = (("single", 1), ("nproc2", 2))
    runs = {name: [] for name, _ in plans}
    for rep in range(args.repeats):
        for name, nproc in (plans if rep % 2 == 0 else plans[::-1]):
            r = run_eval(name, nproc, data, ckpt, runs_dir / f"{name}_{rep}", args)
            runs[name].append(r)
            res = r["results"]
            ap_ = {m: s["AP"] for m, s in r["summaries"].items()}
            print(f"  run {rep + 1}: {name:7s} {r['wall_s']:7.1f} s  rank 0 (pid {r['rank0_pid']}, RANK="
                  f"{r['rank0_env_rank']}) VmHWM {r['rank0_hwm_mb']:.0f} MB, RSS {r['rank0_peak_rss_mb']:.0f}, PSS "
                  f"{r['rank0_peak_pss_mb']:.0f}; tree PSS {r['tree_peak_pss_mb']:.0f}  {res['detections']:,} dets "
                  f"({res['min_per_image']}-{res['max_per_image']}/image, masks: {res['has_masks']})  AP "
                  + ", ".join(f"{m} {v:.4f}" for m, v in ap_.items()), flush=True)
            ph = r["phases"]
            print(f"           rank 0 peak PSS / RSS MB: inference + merge {ph['rank0_pss_mb_inference_merge']:.0f} / "
                  f"{ph['rank0_rss_mb_inference_merge']:.0f}, evaluation {ph['rank0_pss_mb_evaluation']:.0f} / "
                  f"{ph['rank0_rss_mb_evaluation']:.0f} (results.json at {ph['results_json_at_s'] or 0:.0f} s)",
                  flush=True)

    single, multi = runs["single"], runs["nproc2"]
    ref = single[0]
    all_runs = single + multi
    same_results = len({r["results"]["sha256"] for r in all_runs}) == 1
    same_metrics = all(r["summaries"] == ref["summaries"] for r in all_runs)
    max_diff = max((abs(r["summaries"][m][k] - ref["summaries"][m][k]) for r in all_runs for m in ref["summaries"]
                    for k in SUMMARY_KEYS if m in r["summaries"]), default=0.0)
    best = {name: {k: min(r[k] for r in rs) for k, _ in COLUMNS} for name, rs in runs.items()}
    peak = {name: {k: max(r[k] for r in rs) for k, _ in COLUMNS} for name, rs in runs.items()}
    ratios = {k: peak["nproc2"][k] / peak["single"][k] for k, _ in COLUMNS if k != "wall_s" and peak["single"][k]}
    ratios["wall_s"] = best["nproc2"]["wall_s"] / best["single"]["wall_s"]

    print()
    print(f"{args.images:,} images x {ref['results']['mean_per_image']:.0f} detections/image "
          f"({ref['results']['detections']:,} detections, masks: {ref['results']['has_masks']}, results.json "
          f"{ref['results']['bytes'] / 1e6:.0f} MB); memory: peaks over the runs, wall: the best")
    print(f"{'run':10s} " + " ".join(f"{h:>15s}" for _, h in COLUMNS))
    for name in runs:
        vals = [best[name]["wall_s"]] + [peak[name][k] for k, _ in COLUMNS[1:]]
        print(f"{name:10s} " + " ".join(f"{v:15.1f}" if i == 0 else f"{v:15.0f}" for i, v in enumerate(vals)))
    print(f"{'ratio b/a':10s} " + " ".join(f"{ratios.get(k, float('nan')):15.2f}" for k, _ in COLUMNS))
    print(f"results.json byte-identical across runs: {same_results}; metrics.json summaries equal: {same_metrics} "
          f"(largest difference {max_diff:.1e})")
    print(f"rank 0 of nproc2: {multi[0]['rank0_cmd']} (RANK={multi[0]['rank0_env_rank']})")
    goal = ratios.get("rank0_hwm_mb", float("inf")) <= 1.0 and ratios.get("rank0_peak_pss_mb", float("inf")) <= 1.0
    print(f"issue 14 (rank 0's peak no higher than one process's): {'met' if goal else 'NOT met'}")

    if args.json:
        figures = dict(images=args.images, image_size=args.image_size, classes=args.classes,
                       score_thr=args.score_thr, repeats=args.repeats, cpus=os.cpu_count(), data=str(data),
                       checkpoint=str(ckpt), dets_per_image=ref["results"]["mean_per_image"],
                       detections=ref["results"]["detections"], best=best, peak=peak, ratios=ratios,
                       ratio=ratios.get("rank0_hwm_mb"), same_results=same_results, same_metrics=same_metrics,
                       max_abs_diff=max_diff, goal_met=goal, runs=runs)
        write_figures(args.json, figures, rows(figures))


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    r = f.get("ratios") or {}
    size = f"{f.get('images', '?'):,} images x {f.get('dets_per_image', 0):.0f} dets"
    return [(f"`loce eval --nproc 2` ({size}): rank 0's peak RSS (VmHWM)", "one process",
             ratio_text(r.get("rank0_hwm_mb")), "<= 1"),
            ("`loce eval --nproc 2`: rank 0's peak PSS", "one process", ratio_text(r.get("rank0_peak_pss_mb")), "<= 1"),
            ("`loce eval --nproc 2`: wall time" + ("" if f.get("same_results") else " (results.json DIFFER)"),
             "one process", ratio_text(r.get("wall_s")), "-")]


if __name__ == "__main__":
    main()

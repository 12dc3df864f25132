"""loce's streaming evaluator (the default: bounded memory) against the official `lvis` API, side by side, with
1 and 2 workers. (faster-coco-eval's and hotcoco's LVIS modes were measured here too, before issue 30 removed them:
docs/EVALUATION.md has the figures and the commit that reproduces them.)

Generates (once, cached in --dir, keyed by the sizes) an LVIS-v1-val-like set: LVIS v1's 1203 categories (337 rare /
461 common / 405 frequent, their image counts drawn by the engine's LVIS-shaped generator; with names, frequency,
image_count, instance_count), --images images of
COCO-like sizes with neg_category_ids and not_exhaustive_category_ids, a long-tailed ground truth (a few classes
and several instances per image; bbox, polygon, area) and a results file of exactly --dets-per-image detections
per image: jittered copies of the ground truth (some relabelled) plus false positives on the image's positive,
negative and random classes, each with a bbox, a random score and a compressed RLE mask.

Then, for each metric, runs `loce_cli.engine.evaluation.evaluate_results(..., evaluator=E)` for each E of
--evaluators, alternating, each in its own fresh process, and reports the time of that call (it includes reading
both JSON files, as `loce eval` does; imports are outside), the child's total wall time, its peak memory, the
speed-up lvis / E and the largest difference of AP, APr, APc, APf (and of every summary key and of the per-class
APs) against lvis. Peak memory is the peak of the whole process tree (the child and its worker processes),
sampled every 0.1 s as the sum of each process's proportional set size (PSS: shared pages counted once), next to
the child's own ru_maxrss. The official API (in memory) runs under --cap-gb of address space, so at sizes it
cannot handle it fails instead of pushing the machine into its out-of-memory killer.

    .venv/bin/python bench/bench_eval.py                  # 5,000 images x 300 detections x 1,203 classes
    .venv/bin/python bench/bench_eval.py --quick          # 500 images x 300 detections
    .venv/bin/python bench/bench_eval.py --images 19809 --evaluators streaming   # the full LVIS v1 val size
    .venv/bin/python bench/bench_eval.py --metrics bbox --json /tmp/eval.json
    .venv/bin/python bench/bench_eval.py --images 19809 --evaluators streaming --protocols standard fixed
    .venv/bin/python bench/bench_eval.py --images 19809 --evaluators streaming:1 streaming:2 lvis --cap-gb 8

``streaming:N`` runs the streaming evaluator with N workers (``--workers N``; plain ``streaming``: every core), so
1 and 2 workers can be compared in one run. A child that fails another way than running out of memory is
reported as failed (with the last line of its error) and the other runs go on.

With --protocols each evaluator also runs AP-fixed / AP-pool (``--protocol fixed|pooled``: top 10,000 per class,
no per-image cap) on the same file, side by side with the standard protocol (rows ``bbox/fixed``, ...). The
generated file has exactly --dets-per-image per image, so AP-fixed there is a cost figure (loce warns that the
file looks capped); raise --dets-per-image for an uncapped-like file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: bench.common
from bench.common import TreeSampler, ratio_text, write_figures  # noqa: E402

GEN_VERSION = 2  # bump when the generator changes, so cached sets are rebuilt
MAIN_KEYS = ("AP", "APr", "APc", "APf")


# ---------------------------------------------------------------------------------------------- child


def spec(evaluator: str) -> tuple:
    """(--evaluator name, workers or None) of an --evaluators entry: ``streaming`` (every core) or ``streaming:2``."""
    name, _, workers = evaluator.partition(":")
    return name, (int(workers) if workers else None)


def evaluator_arg(text: str) -> str:
    """An --evaluators entry, checked."""
    name, _, workers = text.partition(":")
    if name not in ("lvis", "streaming") or (workers and (name != "streaming" or not workers.isdigit())):
        raise argparse.ArgumentTypeError(f"{text!r}: expected lvis, streaming or streaming:N")
    return text


def child(evaluator: str, metric: str, ann: str, res: str, protocol: str = "standard") -> None:
    """One evaluation in this (fresh) process; prints one JSON line: seconds of the call, peak MB, the numbers."""
    from loce_cli import compat

    evaluator, workers = spec(evaluator)

    compat.apply()
    if evaluator == "lvis":
        from lvis import LVIS, LVISEval, LVISResults  # noqa: F401  (imports outside the timed call)
    else:
        from loce_cli.engine.evaluation import matching

        matching.warm_up()  # numba's compile (or cache load) is outside the timed call, like the imports
    from loce_cli.engine.evaluation import evaluate_results

    marks = []  # (step message, seconds since the call started): where the time goes
    t = time.perf_counter()
    report = evaluate_results(Path(res), Path(ann), metrics=(metric,), evaluator=evaluator, workers=workers,
                              say=lambda msg: marks.append((msg, time.perf_counter() - t)), protocols=[protocol])
    seconds = time.perf_counter() - t
    r = report.metrics[metric] if protocol == "standard" else report.protocols[protocol].metrics[metric]
    print(json.dumps({
        "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "steps": marks,
        "summary": r.summary, "per_class": {str(c.id): c.ap for c in r.per_class}}))


def run_child(evaluator: str, metric: str, ann: Path, res: Path, timeout: float, cap_gb: float = 0.0,
              protocol: str = "standard") -> dict:
    """Run one evaluation in a fresh process; sample its process tree's memory while it runs."""
    t = time.perf_counter()

    def limit():  # the in-memory evaluator fails with MemoryError instead of meeting the OOM killer
        if cap_gb > 0 and spec(evaluator)[0] == "lvis":
            cap = int(cap_gb * 2 ** 30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    proc = subprocess.Popen([sys.executable, __file__, "--child", evaluator, metric, str(ann), str(res), protocol],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    sampler = TreeSampler(proc.pid, 0.1).start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"timeout": True, "child_wall_s": time.perf_counter() - t}
    finally:
        sampler.stop()
    if proc.returncode != 0:
        if "MemoryError" in stderr or proc.returncode in (-9, 137):
            return {"out_of_memory": True, "child_wall_s": time.perf_counter() - t,
                    "tree_pss_mb": sampler.tree_pss_peak / 1024}
        print(f"{evaluator} {metric} failed:\n{stderr[-3000:]}", file=sys.stderr)  # the other runs go on
        return {"error": (stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:60],
                "child_wall_s": time.perf_counter() - t, "tree_pss_mb": sampler.tree_pss_peak / 1024}
    r = json.loads(stdout.strip().splitlines()[-1])
    r["child_wall_s"] = time.perf_counter() - t
    r["tree_pss_mb"] = sampler.tree_pss_peak / 1024
    return r


def _steps(r: dict) -> str:
    """'read+check 3.1 | loading 1.0 | evaluating 8.2' from the step messages of evaluate_results."""
    steps, prev, parts = r.get("steps") or [], 0.0, []
    names = ["read+check"] + [msg.split(" ")[0] for msg, _ in steps]
    for name, (_, at) in zip(names, steps):
        parts.append(f"{name} {at - prev:.1f}")
        prev = at
    parts.append(f"{names[-1]} {r['seconds'] - prev:.1f}")
    return " | ".join(parts)


def _max_diff(a: dict, b: dict, keys) -> float:
    return max(abs(a[k] - b[k]) for k in keys)


def _per_class_diff(a: dict, b: dict) -> tuple:
    """(max |delta| over classes with an AP in both, number of classes where only one has an AP)."""
    both = [k for k in a if a[k] is not None and b.get(k) is not None]
    mismatched = sum(1 for k in a if (a[k] is None) != (b.get(k) is None))
    return (max((abs(a[k] - b[k]) for k in both), default=0.0), mismatched)


def _fails(r: dict) -> str:
    return ("timed out" if r.get("timeout") else "out of memory" if r.get("out_of_memory")
            else f"failed ({r['error']})" if r.get("error") else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets-per-image", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="500 images x 300 detections")
    ap.add_argument("--metrics", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    ap.add_argument("--evaluators", nargs="+", default=["lvis", "streaming"], type=evaluator_arg,
                    help="lvis, streaming; streaming:N runs it with N workers (--workers N); lvis is the reference "
                         "the others are compared to")
    ap.add_argument("--repeats", type=int, default=1, help="alternating runs of each evaluator (best time is used)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a child is given up")
    ap.add_argument("--cap-gb", type=float, default=20.0,
                    help="address-space cap of the lvis children (0: none)")
    ap.add_argument("--per-det-reference", type=Path,
                    help="a --json of an earlier run whose lvis figures give seconds per detection, for sizes where "
                         "lvis cannot run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "loce_bench_eval",
                    help="where generated sets are kept (reused when the sizes match)")
    ap.add_argument("--protocols", nargs="+", default=["standard"], choices=["standard", "fixed", "pooled"],
                    help="evaluation protocols, each run by every evaluator")
    ap.add_argument("--child", nargs=5, metavar=("EVALUATOR", "METRIC", "ANN", "RESULTS", "PROTOCOL"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.images = 500
    if args.generate:
        from bench.lvis_files import val_set  # here: the evaluation children need none of it

        print(json.dumps(val_set(args.generate, args.images, args.dets_per_image, args.seed)))
        return

    root = args.dir / f"v{GEN_VERSION}_{args.images}x{args.dets_per_image}_s{args.seed}"
    ann, res = root / "lvis_v1_val.json", root / "results.json"
    gen_seconds = None
    if not (ann.is_file() and res.is_file() and (root / "counts.json").is_file()):
        # generated in a child too: this process stays small, so the children's ru_maxrss is theirs alone
        print(f"generating {root} ...", flush=True)
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--generate", str(root), "--images", str(args.images),
               "--dets-per-image", str(args.dets_per_image), "--seed", str(args.seed)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        gen_seconds = time.perf_counter() - t
        print(f"generated in {gen_seconds:.0f} s")
    counts = json.loads((root / "counts.json").read_text())
    print(f"set: {root}\n  {counts['images']:,} images, {counts['classes']} classes, {counts['gt_annotations']:,} "
          f"ground truths (classes with gt r/c/f: {counts['classes_with_gt']}), {counts['detections']:,} detections "
          f"({args.dets_per_image}/image); files {ann.stat().st_size / 1e6:.0f} MB + {res.stat().st_size / 1e6:.0f} MB")
    print(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the runs", flush=True)

    evaluators = tuple(args.evaluators)
    plan = [(m, p) for p in args.protocols for m in args.metrics]  # (metric, protocol)
    label = {(m, p): m if p == "standard" else f"{m}/{p}" for m, p in plan}
    runs = {label[k]: {e: [] for e in evaluators} for k in plan}
    for rep in range(args.repeats):
        for metric, protocol in plan:
            for e in (evaluators if rep % 2 == 0 else evaluators[::-1]):
                r = run_child(e, metric, ann, res, args.timeout, args.cap_gb, protocol)
                key = label[(metric, protocol)]
                runs[key][e].append(r)
                if _fails(r):
                    print(f"  run {rep + 1}: {key} {e:11s} {_fails(r)} after {r['child_wall_s']:.0f} s", flush=True)
                else:
                    print(f"  run {rep + 1}: {key} {e:11s} {r['seconds']:8.1f} s (child {r['child_wall_s']:.1f} s)"
                          f"  peak tree {r['tree_pss_mb']:7.0f} MB (PSS; own RSS {r['peak_mb']:.0f}, largest worker "
                          f"{r['worker_peak_mb']:.0f})  AP {r['summary']['AP']:.4f}  [{_steps(r)} s]", flush=True)

    reference = json.loads(args.per_det_reference.read_text()) if args.per_det_reference else None
    figures = {"images": args.images, "dets_per_image": args.dets_per_image, "classes": counts["classes"],
               "counts": counts, "generation_seconds": gen_seconds, "cpus": os.cpu_count(), "metrics": {}}
    header = (f"{'metric':12s} {'evaluator':11s} {'seconds':>8s} {'vs lvis':>8s} {'peak MB':>8s} "
              f"{'max|dAP|':>9s} {'all keys':>9s} {'per class':>9s}")
    lines = []
    for metric in runs:
        ok = {e: [r for r in runs[metric][e] if not _fails(r)] for e in evaluators}
        fig = {}
        for e in evaluators:
            if ok[e]:
                best = min(ok[e], key=lambda r: r["seconds"])
                fig[e] = {"seconds": best["seconds"], "child_wall_s": best["child_wall_s"],
                          "peak_mb": max(r["tree_pss_mb"] for r in ok[e]),
                          "own_rss_mb": max(r["peak_mb"] for r in ok[e]), "summary": best["summary"],
                          "all_seconds": [r["seconds"] for r in ok[e]], "steps": best["steps"],
                          "per_det_us": 1e6 * best["seconds"] / counts["detections"]}
            else:
                r = runs[metric][e][0]
                fig[e] = {"failed": _fails(r), "child_wall_s": r["child_wall_s"], "peak_mb": r.get("tree_pss_mb")}
        for e in evaluators:
            row = fig[e]
            if row.get("failed"):
                lines.append(f"{metric:12s} {e:11s} {row['failed']:>8s} after {row['child_wall_s']:.0f} s"
                             + (f", peak {row['peak_mb']:.0f} MB" if row.get("peak_mb") else ""))
                continue
            cmp = ""
            if e != "lvis" and "lvis" in evaluators and ok["lvis"]:
                a, b = ok["lvis"][0], ok[e][0]
                pc, mismatched = _per_class_diff(a["per_class"], b["per_class"])
                row.update(speedup=fig["lvis"]["seconds"] / row["seconds"],
                           max_abs_diff_main=_max_diff(a["summary"], b["summary"], MAIN_KEYS),
                           max_abs_diff_all_keys=_max_diff(a["summary"], b["summary"], a["summary"].keys()),
                           max_abs_diff_per_class=pc, per_class_defined_mismatch=mismatched)
                cmp = (f"{row['speedup']:7.2f}x {row['peak_mb']:8.0f} {row['max_abs_diff_main']:9.1e} "
                       f"{row['max_abs_diff_all_keys']:9.1e} {pc:9.1e}"
                       + (f"  ({mismatched} classes with AP on one side only)" if mismatched else ""))
            elif e != "lvis" and reference and (reference["metrics"].get(metric, {}).get("lvis") or {}).get("seconds"):
                ref = reference["metrics"][metric]["lvis"]
                ref_us = 1e6 * ref["seconds"] / reference["counts"]["detections"]
                row.update(speedup_per_det=ref_us / row["per_det_us"], reference_images=reference["images"])
                cmp = (f"{row['speedup_per_det']:7.2f}x {row['peak_mb']:8.0f}  (per detection, against lvis at "
                       f"{reference['images']:,} images: {ref_us:.0f} us/det vs {row['per_det_us']:.1f})")
            else:
                cmp = f"{'':8s} {row['peak_mb']:8.0f}"
            lines.append(f"{metric:12s} {e:11s} {row['seconds']:8.1f} {cmp}")
        figures["metrics"][metric] = fig
    print(f"\n{header}\n" + "\n".join(lines))
    print("\nseconds: the evaluate_results call (reads both JSON files, evaluates; best of the runs); peak MB: the "
          "process tree's peak PSS;\nmax|dAP|: over AP, APr, APc, APf against lvis; all keys: every summary key; "
          "per class: every class's AP.")
    if args.json:
        write_figures(args.json, figures, rows(figures))
        print(f"figures written to {args.json}")


def rows(e: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    out = []
    size = f"{e.get('images', '?'):,} images x {e.get('dets_per_image', '?')} dets"
    for metric, m in (e.get("metrics") or {}).items():
        lvis_mb = (m.get("lvis") or {}).get("peak_mb")
        for name, goal in (("streaming", ">= 5"),):
            row = m.get(name) or {}
            if row.get("failed") or "seconds" not in row:
                continue
            out.append((f"`--evaluator {name}` {metric} ({size}): speed-up", "official lvis API",
                        ratio_text(row.get("speedup")), goal))
            out.append((f"`--evaluator {name}` {metric}: peak memory (process tree PSS)", "official lvis API",
                        ratio_text(row["peak_mb"] / lvis_mb) if lvis_mb else "-", "-"))
            if row.get("max_abs_diff_all_keys") is not None:
                out.append((f"`--evaluator {name}` {metric}: largest difference, every summary key / class",
                            "official lvis API", f"{row['max_abs_diff_all_keys']:.1e} / "
                            f"{row['max_abs_diff_per_class']:.1e}", "<= 1e-4"))
    return out


if __name__ == "__main__":
    main()

"""Every loce benchmark in one run (``make bench``): each figure a ratio against its comparison, measured side by
side in the same run, written as markdown tables to docs/BENCHMARKS.md with the machine described.

    .venv/bin/python bench/run_all.py [--out docs/BENCHMARKS.md] [--full] [--only core roi_head ...]

Default sizes fit a few minutes on 2 cores; ``--full`` uses each script's full-size defaults (LVIS-v1-train-sized
prep file, 5,000 x 300 evaluator set: tens of minutes). Run it on an otherwise idle machine: other load makes
the absolute times (not so much the ratios) meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

BASELINE_VARIANTS = ("plain", "loce", "seesaw", "eqlv2", "fed", "crt")
BASELINE_LABELS = {"loce": "LOCE", "seesaw": "Seesaw", "eqlv2": "EQLv2", "fed": "federated loss", "crt": "cRT"}
# name -> (script, quick args, full args)
SCRIPTS = {
    "core": ("bench_core.py", ["--repeats", "30"], []),
    "roi_head": ("bench_roi_head.py", ["--repeats", "10"], []),
    "finetune": ("bench_finetune.py", ["--iters", "12"], ["--iters", "40"]),
    "baselines": ("bench_finetune.py", ["--iters", "12", "--variants", *BASELINE_VARIANTS],
                  ["--iters", "40", "--variants", *BASELINE_VARIANTS]),
    "memory_peak": ("bench_memory_peak.py", [], []),
    "prep": ("bench_prep.py", ["--quick", "--repeats", "1"], []),
    "eval": ("bench_eval.py", ["--quick"], []),
    "infer": ("bench_infer.py", ["--images", "40", "--repeats", "1"], []),
    "postprocess": ("bench_postprocess.py", ["--quick"], []),
    "eval_ranks": ("bench_eval_ranks.py", ["--quick"], []),
    "topk": ("bench_topk.py", ["--sizes", "2000000"], []),
}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    import torch

    return dict(cpu=cpu, cores=len(os.sched_getaffinity(0)), memory_gb=mem_gb, python=platform.python_version(),
                torch=torch.__version__, torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available(),
                omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                load_average=os.getloadavg(), date=time.strftime("%Y-%m-%d %H:%M %Z"))


def run(name: str, full: bool, workdir: Path) -> dict:
    script, quick_args, full_args = SCRIPTS[name]
    out = workdir / f"{name}.json"
    cmd = [sys.executable, str(BENCH / script), *(full_args if full else quick_args), "--json", str(out)]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    text = proc.stdout.strip().splitlines()
    for line in text[-12:]:
        print("   " + line)
    if proc.returncode != 0 or not out.is_file():
        print(f"   FAILED (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:] or ''}", flush=True)
        return dict(failed=True, seconds=seconds, args=cmd[2:])
    data = json.loads(out.read_text())
    data["_seconds"], data["_args"] = seconds, cmd[2:-2]
    return data


def _r(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def headline_rows(res: dict) -> list:
    """(figure, comparison, ratio, goal) rows from whichever benchmarks ran."""
    rows = []
    if "core" in res and not res["core"].get("failed"):
        c = res["core"]
        rows.append(("EBL forward+backward, [1056, 1204] logits", "softmax CE", _r(c["loss"]["ratio"]), "<= 1.15"))
        for dt in ("float32", "float16"):
            m = c.get(f"memory_{dt}")
            if m:
                rows.append((f"feature memory push 640 + sample 32 ({dt}, LVIS v1 scale, random classes)",
                             "one plain copy of the 640 features", _r(m["ratio"]), "<= 1.5"))
                if m.get("cold_ratio") is not None:
                    rows.append((f"feature memory push 640 + sample 32 ({dt})", "one copy of the 640 features into "
                                 "uncached memory", _r(m["cold_ratio"]), "-"))
                if m.get("ops_ratio") is not None:
                    ops = c.get(f"ops_per_step_{dt}")
                    n = sum(ops.values()) - 1 if ops else "the other"
                    rows.append((f"feature memory push 640 + sample 32 ({dt})", f"the plain copy + {n} trivial tensor "
                                 "ops (as many ops as the step)", _r(m["ops_ratio"]), "-"))
                rows.append((f"per-label Python loop memory ({dt}, the authors' design)", "loce's FeatureMemory",
                             _r(m["loop_ratio"]), "-"))
    if "roi_head" in res and not res["roi_head"].get("failed"):
        r = res["roi_head"]
        rows.append(("LOCE RoI-head training step", "mmdet StandardRoIHead step", _r(r["ratio"]), "<= 1.25"))
        rows.append(("LOCE RoI-head step, memory off (EBL + tracking)", "StandardRoIHead step",
                     _r(r["ratio_no_memory"]), "-"))
    if "finetune" in res and not res["finetune"].get("failed"):
        f = res["finetune"]
        rows.append(("LOCE fine-tune iteration, whole model, synthetic config, CPU", "plain fine-tune iteration",
                     _r(f["ratio"]), "-"))
    if "baselines" in res and not res["baselines"].get("failed"):
        b = res["baselines"]
        for name in BASELINE_VARIANTS[1:]:
            if f"{name}_s" in b:
                rows.append((f"{BASELINE_LABELS[name]} fine-tune iteration, whole model, synthetic config, CPU",
                             "plain fine-tune iteration (same batches, interleaved)",
                             _r(b[f"{name}_s"] / b["plain_s"]), "-"))
    if "memory_peak" in res and not res["memory_peak"].get("failed"):
        for row in res["memory_peak"]["rows"]:
            rows.append((f"peak host memory added by the LVIS v1 feature memory ({row['dtype']}): "
                         f"{row['added_mb'] / 1024:.2f} GB", "its nbytes()", _r(row["added_mb"] / row["nbytes_mb"]),
                         "-"))
    if "prep" in res and not res["prep"].get("failed"):
        p = res["prep"]
        rows.append((f"`loce data prep` full validation ({p.get('images', '?'):,} images, "
                     f"{p.get('annotations', '?'):,} annotations): time", "`lvis.LVIS(...)` load",
                     _r(p.get("time_ratio")), "<= 1.5"))
        rows.append(("`loce data prep`: peak memory", "`lvis.LVIS(...)` load", _r(p.get("memory_ratio")), "<= 1.5"))
    if "eval" in res and not res["eval"].get("failed"):
        e = res["eval"]
        size = f"{e.get('images', '?'):,} images x {e.get('dets_per_image', '?')} dets"
        for metric, m in (e.get("metrics") or {}).items():
            lvis_mb = (m.get("lvis") or {}).get("peak_mb")
            for name, goal in (("streaming", ">= 5"), ("fast", ">= 3")):
                row = m.get(name) or {}
                if row.get("failed") or "seconds" not in row:
                    continue
                rows.append((f"`--evaluator {name}` {metric} ({size}): speed-up", "official lvis API",
                             _r(row.get("speedup")), goal))
                rows.append((f"`--evaluator {name}` {metric}: peak memory (process tree PSS)", "official lvis API",
                             _r(row["peak_mb"] / lvis_mb) if lvis_mb else "-", "-"))
                if row.get("max_abs_diff_all_keys") is not None:
                    rows.append((f"`--evaluator {name}` {metric}: largest difference, every summary key / class",
                                 "official lvis API", f"{row['max_abs_diff_all_keys']:.1e} / "
                                 f"{row['max_abs_diff_per_class']:.1e}", "<= 1e-4"))
    if "infer" in res and not res["infer"].get("failed"):
        inf = res["infer"].get("inference", {})
        for threads, r in sorted(inf.items()):
            rows.append((f"inference, synthetic config, CPU, {threads} thread(s): "
                         f"{r['steady_images_per_s']:.1f} images/s steady, {r['dets_per_image']:.0f} dets/image",
                         "-", "-", "-"))
        if len(inf) == 2:
            a, b = (inf[k] for k in sorted(inf, key=int, reverse=True))
            rows.append((f"inference with {max(inf, key=int)} threads: speed-up", "1 thread",
                         _r(b["seconds"] / a["seconds"]), "-"))
    if "postprocess" in res and not res["postprocess"].get("failed"):
        p = res["postprocess"]
        where = f"{p['device']}, {p['threads']} thread(s), {p.get('clock', 'wall')} time"
        (oh, ow), (th, tw) = p["ori_shape"], p["test_shape"]
        size = f"{p['dets']} dets, {ow}x{oh} image from {tw}x{th}"
        for key, fig, against in (
                ("paste_encode", f"mask paste + threshold + RLE ({size}, {where})",
                 "mmdet get_seg_masks + encode_mask_results"),
                ("postprocess", f"mask post-processing incl. sigmoid of all {p['classes']} classes' logits ({where})",
                 "mmdet get_seg_masks + encode_mask_results"),
                ("model", f"inference per image, R50-FPN {p['classes']} classes, random weights ({where})",
                 "mmdet forward + encode_mask_results")):
            if key in p:
                same = "identical RLEs" if p[key]["identical"] else "RLEs DIFFER"
                rows.append((f"{fig}: {p[key]['loce_s']:.3f} s vs {p[key]['stock_s']:.3f} s per image "
                             f"({p[key]['saved_s']:.3f} s saved), {same}", against, _r(p[key]["ratio"]), "< 1"))
    return rows


def render(res: dict, info: dict, full: bool) -> str:
    lines = ["# Benchmarks", "",
             "Produced by `make bench` (`bench/run_all.py`" + (" --full" if full else "") + "). Every ratio is measured "
             "side by side in the same run (the two sides alternating or in sibling child processes), so machine "
             "noise hits both; absolute times on these shared machines drift, ratios much less.", "",
             "## Machine", "",
             f"- CPU: {info['cpu']}, {info['cores']} cores usable, {_r(info['memory_gb'], 0)} GiB memory; "
             f"CUDA: {'yes' if info['cuda'] else 'no'}",
             f"- Python {info['python']}, torch {info['torch']} ({info['torch_threads']} thread(s)"
             + (f", OMP_NUM_THREADS={info['omp_num_threads']}" if info.get("omp_num_threads") else "") + ")",
             f"- load average at start: {', '.join(f'{x:.2f}' for x in info['load_average'])}; {info['date']}", "",
             "## Figures", "", "| figure | against | ratio | goal |", "|---|---|---:|---|"]
    for fig, against, ratio, goal in headline_rows(res):
        lines.append(f"| {fig} | {against} | {ratio} | {goal} |")
    lines += ["", "## Runs", "", "| benchmark | arguments | seconds | status |", "|---|---|---:|---|"]
    for name, data in res.items():
        args = " ".join(str(a) for a in data.get("_args", data.get("args", [])))
        lines.append(f"| {SCRIPTS[name][0]} | `{args}` | {data.get('_seconds', data.get('seconds', 0)):.0f} | "
                     f"{'FAILED' if data.get('failed') else 'ok'} |")
    lines += ["", "Raw figures (JSON per benchmark) are printed by each script with `--json FILE`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    ap.add_argument("--full", action="store_true", help="full-size runs (tens of minutes)")
    ap.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    args = ap.parse_args()
    info = machine()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            results[name] = run(name, args.full, Path(tmp))
    text = render(results, info, args.full)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(text)
    tmp_out.replace(args.out)
    print(f"\nwrote {args.out}")
    if any(r.get("failed") for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()

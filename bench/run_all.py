"""Every loce benchmark in one run (``make bench``): each figure a ratio against its comparison, measured side by
side in the same run, written as markdown tables to docs/BENCHMARKS.md with the machine described.

    .venv/bin/python bench/run_all.py [--out docs/BENCHMARKS.md] [--full] [--only core roi_head ...]

It runs every ``bench_*.py`` of this folder (``BENCHES``; it refuses to start when one is missing there) and
puts the rows each writes with ``--json`` into the table. Default sizes fit a few minutes on 2 cores; ``--full``
uses each script's full-size defaults (LVIS-v1-train-sized prep file, 5,000 x 300 evaluator set: tens of
minutes). Run it on an otherwise idle machine: other load makes the absolute times (not so much the ratios)
meaningless.
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

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

VARIANTS = ("plain", "loce", "seesaw", "eqlv2", "fed", "crt")
# Every bench_*.py of this folder, with its arguments for the default (quick) run and for --full. Each writes its
# figures and its rows of the table ((figure, against, ratio, goal), key "rows") with --json FILE.
BENCHES = (
    ("bench_core.py", ["--repeats", "30"], []),
    ("bench_roi_head.py", ["--repeats", "10"], []),
    ("bench_finetune.py", ["--iters", "12", "--variants", *VARIANTS], ["--iters", "40", "--variants", *VARIANTS]),
    ("bench_memory_peak.py", [], []),
    ("bench_amp.py", ["--configs", "synth", "--iters", "3"], []),
    ("bench_prep.py", ["--quick", "--repeats", "1"], []),
    ("bench_coco_import.py", ["--quick"], []),
    ("bench_eval.py", ["--quick"], []),
    ("bench_analyze.py", ["--quick"], []),
    ("bench_validation.py", ["--images", "2000", "--repeats", "1"], []),
    ("bench_topk.py", ["--sizes", "2000000"], []),
    ("bench_infer.py", ["--images", "40", "--repeats", "1"], []),
    ("bench_postprocess.py", ["--quick"], []),
    ("bench_eval_ranks.py", ["--quick"], []),
    ("bench_measure_scores.py", ["--images", "20"], ["--images", "60"]),
)
NAMES = {script[len("bench_"):-len(".py")]: (script, quick, full) for script, quick, full in BENCHES}


def unlisted() -> list:
    """bench_*.py files of this folder that BENCHES leaves out (none: `make bench` runs every bench)."""
    return sorted(p.name for p in BENCH.glob("bench_*.py") if p.name not in {s for s, _, _ in BENCHES})


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
    script, quick_args, full_args = NAMES[name]
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
    for fig, against, ratio, goal in (row for data in res.values() if not data.get("failed")
                                      for row in data.get("rows", [])):
        lines.append(f"| {fig} | {against} | {ratio} | {goal} |")
    lines += ["", "## Runs", "", "| benchmark | arguments | seconds | status |", "|---|---|---:|---|"]
    for name, data in res.items():
        args = " ".join(str(a) for a in data.get("_args", data.get("args", [])))
        lines.append(f"| {NAMES[name][0]} | `{args}` | {data.get('_seconds', data.get('seconds', 0)):.0f} | "
                     f"{'FAILED' if data.get('failed') else 'ok'} |")
    lines += ["", "Each benchmark writes its raw figures and its rows of this table with `--json FILE`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    ap.add_argument("--full", action="store_true", help="full-size runs (tens of minutes)")
    ap.add_argument("--only", nargs="+", choices=list(NAMES), default=list(NAMES))
    args = ap.parse_args()
    if unlisted():
        sys.exit(f"run_all.py: {', '.join(unlisted())} missing from BENCHES (every bench runs in make bench)")
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

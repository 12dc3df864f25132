#!/usr/bin/env python
"""Dress rehearsal of the LVIS v1 R50 recipe at full shape on a CPU machine (issue 22, point 3).

Runs, as real ``loce`` subprocesses (the commands a user types; each is printed):

  data     ``loce data synth --like lvis-v1`` (500 train images, the least it writes; K val images), then
           ``loce data prep --root``, then two ``loce data prep --subset`` train files holding exactly the images
           N iterations need (2 per process per iteration: the configs' ``samples_per_gpu=2``; the runner is
           epoch-based, so one epoch over 2N images is N iterations)
  base     ``loce train base configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py``   N iterations, 1 process
  ft-fp32  ``loce finetune configs/lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py``  N iterations, full
           1203 x 80 memory stored in float32 (4.83 GB), memory init capped at --init-images images (and, as
           the hook draws its class-balanced list from the training set, at the stage's 2N x processes images)
  ft-fp16  the same with ``model.roi_head.memory.dtype=float16`` (2.41 GB)
  ft-2proc the same with ``--nproc 2`` (gloo, OMP_NUM_THREADS=1), each rank holding its own memory; float32
           when the machine's available memory allows two of them, else float16 (said so)
  eval     ``loce eval`` of the ft-fp32 checkpoint on the K val images

The configs run as shipped: each command runs from a folder whose ``data/lvis_v1`` is the rehearsal's data,
with only ``--cfg-options`` for what a rehearsal must change (no ImageNet download: init_cfg=None; one epoch;
a log line per iteration; the memory-init cap; the memory dtype).

Measured per stage: seconds per iteration from the runner's JSON log (mmcv's ``time``; the first iteration,
which includes the loader start-up, apart from the median of the others), peak memory per process (PSS and RSS
of every process of the command's tree, sampled from /proc every 0.2 s, and the kernel's VmHWM), memory-init
seconds per image (the hook's log line), eval seconds per image (inference, from the time-stamped output).
Peak memory is given up to the last iteration ("iters") and for the whole command ("all": with the checkpoint
save, which mmcv serialises into an in-memory buffer first). mmdet's group sampler pads each aspect-ratio group
to a multiple of 2 x processes, so a stage may run an iteration more than N; the figures say what ran.

    .venv/bin/python scripts/experiments/rehearse.py [--iterations 4] [--init-images 20] [--eval-images 4] [--json FILE]
    make rehearsal
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench.common: the process-tree sampler the benchmarks use
from bench.common import WORKER, TreeSampler, free_port, loce_binary, meminfo_kb  # noqa: E402

BASE_CONFIG = ROOT / "configs" / "lvis" / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"
LOCE_CONFIG = ROOT / "configs" / "lvis" / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"
SAMPLES_PER_GPU = 2  # both configs' data.samples_per_gpu
MIN_SYNTH_TRAIN = 500  # the least `loce data synth --like lvis-v1` writes
STAGES = ("data", "base", "ft-fp32", "ft-fp16", "ft-2proc", "eval")

# LVIS v1 at full shape (facts, for the estimate lines)
NUM_CLASSES, QUEUE, FEAT = 1203, 80, 256 * 7 * 7
LVIS_V1_TRAIN_IMAGES = 100_170
GPUS, IMAGES_PER_GPU = 8, 2
INIT_PER_CLASS = QUEUE // 16
GB = 1e9

# only what a rehearsal must change; the rest is the shipped config
COMMON_OPTIONS = ["model.backbone.init_cfg=None", "runner.max_epochs=1", "log_config.interval=1"]
ITER_LINE = re.compile(r"Epoch \[\d+\]\[\d+/\d+\]")
INIT_LINE = re.compile(r"LOCE memory init: (\d+) images, (\d+) features pushed in ([\d.]+) s; "
                       r"queues full (\d+), partial (\d+), empty (\d+)")


def cfg_options(*options: str) -> List[str]:
    """``--cfg-options`` once per KEY=VALUE (the option is repeatable, one value each)."""
    return [arg for opt in options for arg in ("--cfg-options", opt)]


def memory_init_hook(max_images: int) -> str:
    """``custom_hooks`` of the LOCE config with the image cap (the list is replaced: the hook's dict has no
    ``max_images`` key for ``custom_hooks.0.max_images`` to override)."""
    return ('custom_hooks=[{"type": "LoceMemoryInitHook", "priority": "HIGHEST", "warm_scores": True, '
            f'"max_images": {int(max_images)}}}]')


# ------------------------------------------------------------------------------------------- process sampling

def classify(sampler: TreeSampler) -> List[dict]:
    """Each process the sampler saw, its peaks in bytes and its role: main (the loce process), torchrun, rank R,
    child of ..."""
    roles: dict = {}

    def role(pid: int) -> str:
        if pid in roles:
            return roles[pid]
        p = sampler.procs[pid]
        parent = p.parent if p.parent in sampler.procs else None
        if "torch.distributed.run" in p.cmd:
            roles[pid] = "torchrun"
        elif WORKER in p.cmd and parent is not None and role(parent) == "torchrun":
            roles[pid] = f"rank {p.rank}"
        elif pid == sampler.root:
            roles[pid] = "main"
        elif parent is not None:
            roles[pid] = f"child of {role(parent)}"
        else:
            roles[pid] = "other"
        return roles[pid]

    return [dict(pid=p.pid, ppid=p.parent, cmdline=p.cmd[:200], rank=p.rank, rss=p.rss * 1024, pss=p.pss * 1024,
                 hwm=p.hwm * 1024, role=role(p.pid)) for p in sorted(sampler.procs.values(), key=lambda q: q.pid)]


# ------------------------------------------------------------------------------------------------- running

class StageFailed(Exception):
    pass


@dataclass
class Run:
    name: str
    command: List[str]
    cwd: str
    returncode: int
    seconds: float
    log_file: str
    lines: List[tuple] = field(default_factory=list)  # (seconds since start, text)
    stdout: str = ""
    processes: List[dict] = field(default_factory=list)
    tree_pss: int = 0
    timeline: List[tuple] = field(default_factory=list)  # the sampler's, on the same clock as ``lines``


def run_stage(name: str, args: List[str], cwd: Path, log_dir: Path, threads_one: bool = False) -> Run:
    """Run ``loce ARGS`` in ``cwd``, time-stamping its output lines into ``log_dir/NAME.log`` and sampling its
    process tree's memory; raise StageFailed (with the last lines) when it fails."""
    cmd = [loce_binary(), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads_one:
        env["OMP_NUM_THREADS"] = "1"
    else:
        env.pop("OMP_NUM_THREADS", None)
    shown = ("OMP_NUM_THREADS=1 " if threads_one else "") + shlex.join(["loce", *args])
    print(f"\n[{name}] (cd {cwd} && {shown})", flush=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{name}.log"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1)
    sampler = TreeSampler(proc.pid)
    sampler.t0 = start  # the output lines' clock
    sampler.start()
    lines: List[tuple] = []
    out_chunks: List[str] = []
    lock = threading.Lock()

    with open(log_file, "w") as log:
        log.write(f"# (cd {cwd} && {shown})\n")

        def pump(stream, is_stdout: bool):
            for line in stream:
                t = time.perf_counter() - start
                with lock:
                    lines.append((t, line.rstrip("\n")))
                    log.write(f"[{t:8.1f}s] {line}")
                    log.flush()
                    if is_stdout:
                        out_chunks.append(line)

        readers = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
        for r in readers:
            r.start()
        last_note = start
        while proc.poll() is None:
            time.sleep(0.5)
            if time.perf_counter() - last_note > 60:  # a sign of life on long stages
                last_note = time.perf_counter()
                tail = lines[-1][1][:110] if lines else ""
                print(f"  ... {last_note - start:.0f} s  {tail}", flush=True)
        for r in readers:
            r.join()
    sampler.stop()
    seconds = time.perf_counter() - start
    timeline = [(t, {pid: (rss * 1024, pss * 1024) for pid, (rss, pss) in now.items()}) for t, now in sampler.timeline]
    run = Run(name, cmd, str(cwd), proc.returncode, seconds, str(log_file), lines, "".join(out_chunks),
              classify(sampler), sampler.tree_pss_peak * 1024, timeline)
    print(f"[{name}] exit {proc.returncode} after {seconds:.1f} s (output: {log_file})", flush=True)
    if proc.returncode != 0:
        tail = "\n".join(f"    {text}" for _, text in lines[-40:])
        raise StageFailed(f"stage {name} failed (exit code {proc.returncode}) after {seconds:.0f} s\n"
                          f"  command: (cd {cwd} && {shown})\n  full output: {log_file}\n  last lines:\n{tail}")
    return run


def last_json(text: str) -> Optional[dict]:
    """The JSON document a ``--json`` command printed (the whole stdout, or its last ``{...}`` block)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = text.rfind("\n{")
    while start != -1:
        try:
            return json.loads(text[start + 1:])
        except ValueError:
            start = text.rfind("\n{", 0, start)
    return None


# ------------------------------------------------------------------------------------------------ measuring

def iteration_times(work_dir: Path) -> List[float]:
    """``time`` of each logged training iteration (mmcv's TextLoggerHook JSON log, interval 1), in order."""
    logs = sorted(work_dir.glob("*.log.json"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return []
    times = []
    for line in logs[-1].read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("mode") == "train" and "time" in entry:
            times.append(float(entry["time"]))
    return times


def memory_init(run: Run, work_dir: Path) -> Optional[dict]:
    texts = [text for _, text in run.lines]  # this command's output first, then its own (newest) log file
    logs = sorted(work_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
    if logs:
        texts.extend(logs[-1].read_text().splitlines())
    for text in texts:
        m = INIT_LINE.search(text)
        if m:
            images, feats, secs, full, partial, empty = m.groups()
            return dict(images=int(images), features=int(feats), seconds=float(secs), full=int(full),
                        partial=int(partial), empty=int(empty), s_per_image=float(secs) / max(int(images), 1))
    return None


def memory_figures(run: Run, until: Optional[float] = None) -> dict:
    """Per-process peaks (GB) of the processes doing the work (main, or each rank), the loader workers' largest
    and the tree's summed PSS. ``until``: also each main process's peak RSS/PSS up to that time (seconds since
    the command started; e.g. the last training iteration's log line, before the checkpoint is written)."""
    main = [p for p in run.processes if p["role"] == "main" or p["role"].startswith("rank ")]
    ranks = [p for p in main if p["role"].startswith("rank ")]
    if ranks:
        main = sorted(ranks, key=lambda p: p["role"])
    workers = [p for p in run.processes if p["role"].startswith("child of")]
    per = []
    for p in main:
        row = dict(role=p["role"], pid=p["pid"], rss_gb=p["rss"] / GB, pss_gb=p["pss"] / GB, hwm_gb=p["hwm"] / GB)
        if until is not None:
            seen = [now[p["pid"]] for t, now in run.timeline if t <= until and p["pid"] in now]
            row.update(train_rss_gb=max((r for r, _ in seen), default=0) / GB,
                       train_pss_gb=max((q for _, q in seen), default=0) / GB)
        per.append(row)
    return dict(per_process=per, loader_workers=len(workers),
                worker_max_pss_gb=max((p["pss"] for p in workers), default=0) / GB, tree_pss_gb=run.tree_pss / GB,
                train_until_s=until)


def train_figures(run: Run, work_dir: Path) -> dict:
    times = iteration_times(work_dir)
    rest = times[1:]
    result = last_json(run.stdout) or {}
    # the last iteration's log line: memory up to there is training's; the checkpoint is written after it
    last_iter = max((t for t, text in run.lines if ITER_LINE.search(text)), default=None)
    return dict(iterations=len(times), first_s=times[0] if times else None,
                median_s=statistics.median(rest) if rest else None, times_s=times,
                wall_s=run.seconds, checkpoint=result.get("checkpoint") or _newest_checkpoint(work_dir),
                memory_init=memory_init(run, work_dir), memory=memory_figures(run, last_iter))


def _newest_checkpoint(work_dir: Path) -> Optional[str]:
    link = work_dir / "latest.pth"
    if link.exists():
        return str(link.resolve())
    found = sorted(work_dir.glob("epoch_*.pth"), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else None


def eval_figures(run: Run, images: int) -> dict:
    """Inference seconds: from mmcv's 'load checkpoint' line (the model is built; the load is included) to
    loce's 'wrote N detections' line; the whole command's wall time beside it."""
    t_load = next((t for t, text in run.lines if "load checkpoint from" in text), None)
    t_done = next((t for t, text in run.lines if re.search(r"wrote [\d,]+ detections", text)), None)
    report = last_json(run.stdout) or {}
    inference = (t_done - t_load) if t_load is not None and t_done is not None else None
    summary = {m: r.get("summary", {}) for m, r in (report.get("metrics") or {}).items()}
    return dict(images=images, wall_s=run.seconds, inference_s=inference,
                s_per_image=(inference / images) if inference is not None else run.seconds / images,
                s_per_image_basis="inference incl. checkpoint load" if inference is not None else "whole command",
                metrics_s=report.get("seconds"), AP={m: s.get("AP") for m, s in summary.items()},
                memory=memory_figures(run))


# ------------------------------------------------------------------------------------------------- the stages

def mem_available() -> int:
    return meminfo_kb("MemAvailable") * 1024


def data_root(cwd: Path, target: Path) -> Path:
    """``cwd/data/lvis_v1`` -> ``target``: the shipped configs' ``data/lvis_v1/`` resolves to our data."""
    link = cwd / "data" / "lvis_v1"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve(), target_is_directory=True)
    return cwd


def stage_data(a, work: Path, logs: Path) -> dict:
    full = work / "data" / "lvis_v1_synth"
    runs = [run_stage("data-synth", ["data", "synth", "--like", "lvis-v1", "--out", str(full), "--train-images",
                                     str(MIN_SYNTH_TRAIN), "--val-images", str(a.eval_images), "--force", "--json"],
                      ROOT, logs)]
    runs.append(run_stage("data-prep", ["data", "prep", "--root", str(full), "--json"], ROOT, logs))
    data_root(work / "cwd_full", full)
    out = dict(synth_s=runs[0].seconds, prep_s=runs[1].seconds, root=str(full), val_images=a.eval_images)
    for nproc in (1, 2):
        out[f"images_{nproc}p"] = a.iterations * SAMPLES_PER_GPU * nproc
        train_cwd(work, logs, Path(out["root"]), out[f"images_{nproc}p"])
    return out


def train_cwd(work: Path, logs: Path, full: Path, images: int) -> Path:
    """A folder whose ``data/lvis_v1`` holds a train file of exactly ``images`` images (``loce data prep
    --subset``, made once): an epoch-based runner's one epoch over it is ``images / (2 x processes)``
    iterations."""
    sub = work / "data" / f"lvis_v1_train{images}"
    if not (sub / "annotations" / "loce_meta.json").is_file():
        r = run_stage(f"data-subset-{images}", ["data", "prep", "--root", str(full), "--subset",
                                                repr(images / MIN_SYNTH_TRAIN), "--out", str(sub), "--force",
                                                "--json"], ROOT, logs)
        got = (last_json(r.stdout) or {}).get("images")
        if got is not None and int(got) != images:
            raise StageFailed(f"the subset {sub} holds {got} images, {images} wanted ({r.log_file})")
    return data_root(work / f"cwd_train{images}", sub)


def stage_base(a, work: Path, logs: Path, full: Path) -> dict:
    wd = work / "base"
    run = run_stage("base", ["train", "base", str(BASE_CONFIG), "--work-dir", str(wd), "--force", "--json",
                             *cfg_options(*COMMON_OPTIONS)], train_cwd(work, logs, full, a.iterations * SAMPLES_PER_GPU),
                    logs)
    return dict(train_figures(run, wd), processes=1, dtype="-", command=shlex.join(["loce", *run.command[1:]]))


def stage_finetune(a, work: Path, logs: Path, full: Path, name: str, dtype: str, nproc: int, base_ckpt: str,
                   note: str = "") -> dict:
    wd = work / name
    args = ["finetune", str(LOCE_CONFIG), "--from", base_ckpt, "--work-dir", str(wd), "--force", "--json"]
    if nproc > 1:
        args += ["--nproc", str(nproc), "--master-port", str(free_port())]
    args += cfg_options(*COMMON_OPTIONS, f"model.roi_head.memory.dtype={dtype}", memory_init_hook(a.init_images))
    cwd = train_cwd(work, logs, full, a.iterations * SAMPLES_PER_GPU * nproc)
    run = run_stage(name, args, cwd, logs, threads_one=nproc > 1)
    fig = train_figures(run, wd)
    init = fig.get("memory_init")
    images = a.iterations * SAMPLES_PER_GPU * nproc
    if init and init["images"] < a.init_images:
        note = "; ".join(filter(None, [note, (
            f"memory init ran {init['images']} images, not --init-images {a.init_images}: the class-balanced list "
            f"is drawn from the stage's {images} training images (the runner trains one epoch over them)")]))
    if fig["iterations"] != a.iterations:
        fig["warning"] = (f"{fig['iterations']} iterations logged, {a.iterations} planned: mmdet's group sampler "
                          f"pads each aspect-ratio group of the {images} images to a multiple of "
                          f"{SAMPLES_PER_GPU} x {nproc} (the median is over what ran)")
    return dict(fig, processes=nproc, dtype=dtype, note=note,
                command=("OMP_NUM_THREADS=1 " if nproc > 1 else "") + shlex.join(["loce", *run.command[1:]]))


def stage_eval(a, work: Path, logs: Path, full: Path, images: int, ckpt: str) -> dict:
    out = work / "eval"
    run = run_stage("eval", ["eval", str(LOCE_CONFIG), ckpt, "--out", str(out), "--force", "--json"],
                    data_root(work / "cwd_full", full), logs)
    return dict(eval_figures(run, images), processes=1, command=shlex.join(["loce", *run.command[1:]]))


def choose_2proc_dtype(a, results: dict) -> tuple:
    """float32 when two processes of the measured 1-process fp32 size (its tree's PSS) fit in MemAvailable with
    2 GB to spare; else float16. Returns (dtype, note)."""
    if a.two_proc_dtype != "auto":
        return a.two_proc_dtype, f"float storage chosen by --two-proc-dtype {a.two_proc_dtype}"
    one = (results.get("ft-fp32") or {}).get("memory", {}).get("tree_pss_gb")
    need = 2 * (one if one else 2 * NUM_CLASSES * QUEUE * FEAT * 4 / GB + 3.0) * 1.1 + 2.0
    have = mem_available() / GB
    if have >= need:
        return "float32", f"fp32: {have:.1f} GB available, ~{need:.1f} GB needed"
    return "float16", (f"fp16 storage, because 2 x fp32 would need ~{need:.1f} GB and only {have:.1f} GB are "
                       f"available beside the other work on this machine")


# -------------------------------------------------------------------------------------------------- report

def _f(x, fmt="{:.1f}", none="-"):
    return none if x is None else fmt.format(x)


def table(results: dict) -> str:
    head = ["stage", "procs", "memory dtype", "s/it first", "s/it median (rest)",
            "peak RSS GB/proc (iters / all)", "peak PSS GB/proc (iters / all)", "tree PSS GB", "init s/image",
            "eval s/image"]
    rows = []
    for name in STAGES[1:]:
        r = results.get(name)
        if not r:
            continue
        mem = r.get("memory") or {}
        per = mem.get("per_process") or []
        def both(p, key, total):
            return (f"{p[key]:.2f} / {total:.2f}" if key in p else f"{total:.2f}")
        rss = " ; ".join(both(p, "train_rss_gb", max(p["hwm_gb"], p["rss_gb"])) for p in per) or "-"
        pss = " ; ".join(both(p, "train_pss_gb", p["pss_gb"]) for p in per) or "-"
        init = r.get("memory_init") or {}
        rows.append([name, str(r.get("processes", 1)), r.get("dtype", "-"), _f(r.get("first_s")),
                     _f(r.get("median_s")), rss, pss, _f(mem.get("tree_pss_gb"), "{:.2f}"),
                     _f(init.get("s_per_image"), "{:.2f}"), _f(r.get("s_per_image"), "{:.1f}")])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def details(results: dict) -> List[str]:
    out = []
    for name in STAGES[1:]:
        r = results.get(name)
        if not r:
            continue
        init = r.get("memory_init")
        if init:
            out.append(f"{name}: memory init {init['images']} images in {init['seconds']:.1f} s, {init['features']:,} "
                       f"features pushed; queues full {init['full']}, partial {init['partial']}, empty "
                       f"{init['empty']} of {NUM_CLASSES}")
        mem = r.get("memory") or {}
        if mem.get("train_until_s") is not None:
            out.append(f"{name}: peak memory 'iters' = up to the last iteration's log line "
                       f"({mem['train_until_s']:.0f} s into the command); 'all' adds what follows (the checkpoint "
                       f"save: mmcv serialises it into an in-memory buffer before writing) and RSS 'all' is VmHWM")
        if r.get("times_s"):
            out.append(f"{name}: iteration times {', '.join(f'{t:.1f}' for t in r['times_s'])} s; "
                       f"command wall {r['wall_s']:.0f} s")
        mem = r.get("memory") or {}
        if mem.get("loader_workers"):
            out.append(f"{name}: {mem['loader_workers']} data-loader worker processes, largest PSS "
                       f"{mem['worker_max_pss_gb']:.2f} GB (counted in the tree PSS)")
        if r.get("note"):
            out.append(f"{name}: {r['note']}")
        if r.get("warning"):
            out.append(f"{name}: WARNING {r['warning']}")
        if name == "eval":
            out.append(f"eval: {r['images']} images, {_f(r.get('inference_s'))} s inference ({r['s_per_image_basis']}),"
                       f" metrics {_f(r.get('metrics_s'))} s, command wall {r['wall_s']:.0f} s; AP {r.get('AP')}")
    data = results.get("data")
    if data:
        out.append(f"data: synth {data['synth_s']:.0f} s, prep {data['prep_s']:.0f} s ({MIN_SYNTH_TRAIN} train + "
                   f"{data.get('val_images', '?')} val images); train subsets of {data['images_1p']} and "
                   f"{data['images_2p']} images")
    return out


def estimate(results: dict) -> List[str]:
    fp32, fp16 = NUM_CLASSES * QUEUE * FEAT * 4 / GB, NUM_CLASSES * QUEUE * FEAT * 2 / GB
    per_epoch = math.ceil(LVIS_V1_TRAIN_IMAGES / (GPUS * IMAGES_PER_GPU))
    init_images = NUM_CLASSES * INIT_PER_CLASS
    lines = [
        "ESTIMATE for 8 GPUs (extrapolated, not measured; CPU seconds do not transfer to GPUs, so no time is "
        "extrapolated):",
        f"  iterations per epoch: {LVIS_V1_TRAIN_IMAGES:,} LVIS v1 train images / ({GPUS} GPUs x {IMAGES_PER_GPU}"
        f" images) = {per_epoch:,}; base 24 epochs = {24 * per_epoch:,} iterations, LOCE 6 epochs = "
        f"{6 * per_epoch:,}",
        f"  feature memory per rank: {NUM_CLASSES} x {QUEUE} x 256 x 7 x 7 = {fp32:.2f} GB fp32 / {fp16:.2f} GB fp16 "
        f"(device='model': on each GPU; {GPUS} ranks hold {GPUS * fp32:.1f} / {GPUS * fp16:.1f} GB in all)",
        f"  memory init: {NUM_CLASSES} classes x {INIT_PER_CLASS} (queue_size // 16) = up to {init_images:,} images "
        f"of the class-balanced list; the shipped hook (shard=False) runs all {init_images:,} on every rank; "
        f"with shard=True each of {GPUS} ranks runs {math.ceil(init_images / GPUS):,}",
    ]
    ft = results.get("ft-fp32")
    init = (ft or {}).get("memory_init")
    if init:
        filled = init["full"] + init["partial"]
        lines.append(f"  the rehearsal's memory init ran {init['images']} images ({filled} of {NUM_CLASSES} queues "
                     f"got features): its measured host memory holds only the pages the memory had written; a full "
                     f"memory adds up to {fp32:.2f} GB (fp32) / {fp16:.2f} GB (fp16) per process beyond the "
                     f"untouched part")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=4, help="training iterations per stage (N; default 4)")
    p.add_argument("--init-images", type=int, default=20, help="memory-init images (cap of the class-balanced "
                   "list; the paper's list is 1203 x 5 = 6015)")
    p.add_argument("--eval-images", type=int, default=4, help="val images to evaluate (K; default 4)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "work" / "rehearsal", help="default: work/rehearsal")
    p.add_argument("--skip-2proc", action="store_true", help="leave out the 2-process (gloo) fine-tune")
    p.add_argument("--two-proc-dtype", choices=("auto", "float32", "float16"), default="auto",
                   help="memory storage of the 2-process stage (auto: float32 if two fit in the available memory)")
    p.add_argument("--only", default="", help=f"comma-separated stages to run ({', '.join(STAGES)}), reusing the "
                   "earlier stages' results in --work-dir")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the fine-tune checkpoints (several GB each: they hold the memory)")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument("--report", action="store_true", help="run nothing: print the figures saved in --work-dir")
    a = p.parse_args(argv)
    if a.iterations < 1 or a.init_images < 1 or a.eval_images < 1:
        p.error("--iterations, --init-images and --eval-images must be >= 1")
    if a.iterations * SAMPLES_PER_GPU * 2 > MIN_SYNTH_TRAIN:
        p.error(f"--iterations at most {MIN_SYNTH_TRAIN // (SAMPLES_PER_GPU * 2)}")
    only = [s for s in a.only.split(",") if s]
    bad = [s for s in only if s not in STAGES]
    if bad:
        p.error(f"--only: unknown stage(s) {', '.join(bad)}; stages: {', '.join(STAGES)}")
    wanted = [s for s in (only or STAGES) if not (s == "ft-2proc" and a.skip_2proc)]

    work = a.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    state_file = work / "rehearsal.json"
    results: dict = {}
    if a.report:
        if not state_file.exists():
            p.error(f"--report: no {state_file} (run the rehearsal first)")
        wanted = []
    if (only or a.report) and state_file.exists():
        results = json.loads(state_file.read_text()).get("stages", {})
    print(f"LOCE rehearsal: LVIS v1 R50 at full shape, {a.iterations} iterations per stage, memory init "
          f"{a.init_images} images, eval {a.eval_images} images; work dir {work}")
    print(f"host: {os.cpu_count()} CPUs, {mem_available() / GB:.1f} GB available now; stages: {', '.join(wanted)}")

    def save():
        doc = dict(options={k: str(v) for k, v in vars(a).items()}, stages=results, table=table(results),
                   estimate=estimate(results))
        state_file.write_text(json.dumps(doc, indent=2))
        if a.json:
            a.json.write_text(json.dumps(doc, indent=2))

    def need(stage: str, key: str) -> str:
        value = (results.get(stage) or {}).get(key)
        if not value or not Path(value).exists():
            raise StageFailed(f"stage {stage} has no {key} in {state_file}: run it first (without --only)")
        return value

    try:
        for stage in wanted:
            if stage == "data":
                results["data"] = stage_data(a, work, logs)
                continue
            full = Path(need("data", "root"))
            if stage == "base":
                results["base"] = stage_base(a, work, logs, full)
            elif stage in ("ft-fp32", "ft-fp16"):
                dtype = "float32" if stage == "ft-fp32" else "float16"
                results[stage] = stage_finetune(a, work, logs, full, stage, dtype, 1, need("base", "checkpoint"))
            elif stage == "ft-2proc":
                dtype, note = choose_2proc_dtype(a, results)
                print(f"\n[ft-2proc] memory storage: {note}")
                results[stage] = stage_finetune(a, work, logs, full, stage, dtype, 2, need("base", "checkpoint"),
                                                note)
            elif stage == "eval":
                images = int(results["data"].get("val_images", a.eval_images))
                results["eval"] = stage_eval(a, work, logs, full, images, need("ft-fp32", "checkpoint"))
            save()
    except StageFailed as e:
        save()
        print(f"\nREHEARSAL STOPPED: {e}", file=sys.stderr)
        return 1
    finally:
        if wanted and not a.keep_checkpoints:
            for stage in ("ft-fp32", "ft-fp16", "ft-2proc"):
                if stage == "ft-fp32" and "eval" not in results:
                    continue  # the eval stage (perhaps a later `--only eval`) needs it
                for ckpt in (work / stage).glob("*.pth"):
                    ckpt.unlink()

    print("\n" + table(results))
    for line in details(results):
        print(line)
    print()
    for line in estimate(results):
        print(line)
    print(f"\nfigures: {state_file}" + (f" and {a.json}" if a.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmarks share: the repository's paths, the loce binary, a free port, the memory of a process tree
(from Linux /proc), LVIS-shaped classes from the engine's generator, and the ``--json`` figures with the rows
``run_all.py`` puts in docs/BENCHMARKS.md.

A bench runs as ``python bench/bench_X.py``; it puts the repository on ``sys.path`` and imports this module as
``bench.common`` (so do scripts/experiments/, which sample memory the same way)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
REPRODUCTION = ROOT / "work" / "reproduce" / "data0"  # scripts/experiments/reproduce.py's data and base model
TMP = Path(tempfile.gettempdir())
WORKER = "loce_cli.engine.worker"  # the module each rank of a `--nproc` run executes


def loce_binary() -> str:
    """The ``loce`` entry point beside this interpreter (the venv's), else the one on PATH."""
    exe = Path(sys.executable).with_name("loce")
    return str(exe) if exe.exists() else (shutil.which("loce") or "loce")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for ``--master-port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_json(args: list, what: str) -> dict:
    """Run ``python ARGS`` in a fresh process (its peak memory its own); the JSON of the last line it printed.
    SystemExit with the tail of its stderr when it fails."""
    out = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sampled_child(args: list, what: str, interval: float):
    """``child_json`` with the process tree's memory sampled every ``interval`` s while it runs: (the JSON of its
    last line, its stderr, the stopped ``TreeSampler``, wall seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    sampler = TreeSampler(proc.pid, interval).start()
    try:
        stdout, stderr = proc.communicate()
    finally:
        sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1]), stderr, sampler, time.perf_counter() - t


def ratio_text(x, digits: int = 2) -> str:
    """A figure for a table cell: ``-`` when missing."""
    return "-" if x is None else f"{x:.{digits}f}"


def write_figures(path, figures: dict, rows: List[tuple]) -> None:
    """``figures`` as JSON at ``path`` with ``rows`` ((figure, against, ratio, goal) for docs/BENCHMARKS.md)
    under ``"rows"``; nothing when ``path`` is None."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(figures, rows=[list(r) for r in rows]), indent=2, default=str))


# ---------------------------------------------------------------------------------------------- timing


class Timings(dict):
    """Median seconds per call of each candidate (``t[k]``), and ``t.ratio(a, b)``: the median over rounds of
    a's time / b's time *in the same round*. Within a round the candidates run a few ms apart, so a shift in the
    machine's load or memory bandwidth between rounds cancels out of each ratio; a ratio of overall medians would
    mix rounds run under different loads."""

    def __init__(self, samples: dict):
        super().__init__({k: statistics.median(v) for k, v in samples.items()})
        self.samples = samples

    def ratio(self, a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(self.samples[a], self.samples[b]))


def interleaved(fns: dict, repeats: int, sync=lambda: None) -> Timings:
    """Seconds per call, the candidates alternating so that machine noise hits them alike (each called once
    first, untimed); ``sync`` waits for a device before and after each call."""
    for fn in fns.values():
        fn()
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            samples[k].append(time.perf_counter() - t0)
    return Timings(samples)


# ---------------------------------------------------------------------------------------------- process tree


def parents() -> Dict[int, int]:
    """pid -> parent pid of every process (from /proc/PID/stat)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return parent


def descendants(root_pid: int, parent: Dict[int, int]) -> set:
    """``root_pid`` and every process under it."""
    children: Dict[int, list] = {}
    for c, p in parent.items():
        children.setdefault(p, []).append(c)
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        for c in children.get(frontier.pop(), ()):
            if c not in tree:
                tree.add(c)
                frontier.append(c)
    return tree


def memory_kb(pid: int) -> Optional[tuple]:
    """(Rss, Pss, VmHWM) of ``pid`` in kB; None where the process is gone."""
    rss = pss = hwm = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                    break
    except (OSError, ValueError):
        return None
    return rss, pss, hwm


def meminfo_kb(key: str) -> int:
    """A line of /proc/meminfo in kB (0 when missing), e.g. ``MemAvailable``."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def describe(pid: int) -> dict:
    """Command line, RANK from the environment (None when unset) and start time (clock ticks) of ``pid``."""
    info = {"cmd": "", "rank": None, "start": 0}
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            info["cmd"] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"RANK="):
                    info["rank"] = int(item[5:])
        with open(f"/proc/{pid}/stat") as f:
            info["start"] = int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        pass
    return info


@dataclass
class ProcPeak:
    """One process of a sampled tree and its peaks (kB): sampled Rss and Pss, the kernel's VmHWM."""

    pid: int
    parent: Optional[int]
    cmd: str
    rank: Optional[int]
    start: int
    rss: int = 0
    pss: int = 0
    hwm: int = 0


class TreeSampler:
    """Samples every ``interval`` s the memory of each process of the tree under ``root_pid`` in a thread:
    ``procs`` (pid -> ProcPeak), ``tree_pss_peak`` (kB, the tree's summed PSS), ``timeline`` ((seconds since
    ``t0``, {pid: (rss, pss)}) per sample) and ``samples``. Subclasses add figures in ``observe``."""

    def __init__(self, root_pid: int, interval: float = 0.2):
        self.root, self.interval = root_pid, interval
        self.t0 = time.perf_counter()
        self.procs: Dict[int, ProcPeak] = {}
        self.tree_pss_peak = 0
        self.timeline: List[tuple] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        parent = parents()
        now = {}
        for pid in descendants(self.root, parent):
            m = memory_kb(pid)
            if m is None or m[1] is None:
                continue
            p = self.procs.get(pid)
            if p is None:
                p = self.procs[pid] = ProcPeak(pid=pid, parent=parent.get(pid), **describe(pid))
            elif p.rank is None:  # first seen between fork and exec: read again
                seen = describe(pid)
                p.cmd, p.rank = seen["cmd"], seen["rank"]
            p.rss, p.pss, p.hwm = max(p.rss, m[0] or 0), max(p.pss, m[1]), max(p.hwm, m[2] or 0)
            now[pid] = (m[0] or 0, m[1])
        t = time.perf_counter() - self.t0
        self.samples += 1
        self.timeline.append((t, now))
        self.tree_pss_peak = max(self.tree_pss_peak, sum(pss for _, pss in now.values()))
        self.observe(t, now, parent)

    def observe(self, t: float, now: Dict[int, tuple], parent: Dict[int, int]) -> None:
        """Called after each sample with {pid: (rss, pss)} of the tree; nothing here."""


def tree_pss_kb(root_pid: int) -> int:
    """Sum of the proportional set size (shared pages counted once) of ``root_pid`` and its descendants."""
    total = 0
    for pid in descendants(root_pid, parents()):
        mem = memory_kb(pid)
        if mem is not None and mem[1] is not None:
            total += mem[1]
    return total


# ---------------------------------------------------------------------------------------------- data


def synthetic_data(root: Path) -> Path:
    """The synthetic dataset of ``loce data synth``'s defaults at ``root`` (40 classes, 128 px images), made by
    the engine's generator when missing."""
    from loce_cli.engine.data.synth import SynthOptions, synthesize

    root = Path(root)
    if not all((root / "annotations" / f"lvis_v1_{s}.json").is_file() for s in ("train", "val")):
        t = time.perf_counter()
        synthesize(root, SynthOptions(), force=True)
        print(f"synthesized {root} in {time.perf_counter() - t:.0f} s", flush=True)
    return root


def existing_synthetic_data() -> Path:
    """A synthetic dataset of the default options already made in this checkout (the reproduction's, the
    quickstart's), read only; else :func:`synthetic_data` in the temporary folder."""
    for candidate in (REPRODUCTION / "data", ROOT / "work" / "quickstart" / "data"):
        if (candidate / "annotations" / "lvis_v1_train.json").is_file():
            return candidate
    return synthetic_data(TMP / "loce_bench_synth")


def lvis_like_data(root: Path) -> Path:
    """An LVIS v1-shaped dataset at ``root`` (``loce data synth --like lvis-v1`` with its fewest training
    images, 4 val images; then ``loce data prep``), made by the engine when missing."""
    from loce_cli.engine.data.prep import prep_dataset
    from loce_cli.engine.data.synth_lvis import MIN_TRAIN_IMAGES, LvisLikeOptions, synthesize_lvis_like

    root = Path(root)
    if not (root / "annotations" / "loce_meta.json").is_file():
        synthesize_lvis_like(root, LvisLikeOptions(like="lvis-v1", train_images=MIN_TRAIN_IMAGES, val_images=4,
                                                   seed=0), force=True)
        prep = prep_dataset(root, check_images="none")
        if not prep.ok:
            raise SystemExit(f"loce data prep {root}: " + "; ".join(p.message for _, p in prep.all_problems()))
    return root



def lvis_v1_classes(images: int, seed: int):
    """(training images per class ``[1203]``, frequency group per class ``[1203]``) of LVIS v1's 337 rare / 461
    common / 405 frequent classes for a split of ``images`` images, drawn by the engine's LVIS-shaped generator
    (``loce data synth --like lvis-v1``)."""
    import numpy as np

    from loce_cli.engine.data.synth_lvis import class_image_counts

    return class_image_counts("v1", max(int(images), 1), np.random.default_rng(seed))

"""Do the feature memory's removed micro-optimisations move the LOCE fine-tune iteration at the LVIS v1 R50 shape?
(issue 21, "complexity that does not pay")

    .venv/bin/python bench/bench_memory_paths.py [--data ROOT] [--rounds 3] [--scale 800 800] [--micro-steps 100]
        [--json FILE]

Until issue 21 ``FeatureMemory`` carried three paths measured only on the isolated push/sample benchmark
(bench_core.py [2]): ``madvise(MADV_HUGEPAGE)`` on the host store, 16-byte (complex128) row views for
``index_copy_`` / ``index_select``, and, for fp16/bf16 storage on the CPU, one converting ``copy_`` per run of
destination rows (``_foreach_copy_``) with a reused staging buffer. The library now does the plain thing
(``index_copy_`` of the features converted to the storage dtype; ``index_select`` then ``.to(out_dtype)``). The
removed paths live on here, as ``RemovedPaths``, to be measured against it.

One process, one model (``configs/lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py``: R50-FPN, 1203 classes,
fine-tune freezing, fresh weights), one 4.83 GB byte store holding the memory, filled with random features
(every slot full; the real memory-init pass costs ~4 s per image and changes nothing here). The first half of the
store is advised ``MADV_HUGEPAGE``, the second ``MADV_NOHUGEPAGE``, before any page is touched. Candidates, each a
``FeatureMemory`` over views of that store (so they share its bytes; values do not matter, every iteration starts
from the same weights and seed):

- ``fp32 removed``: fp32 storage (the configs' default; the whole store) with the 16-byte row views;
- ``fp32 plain``: the same storage with the library's push/sample;
- ``fp16 removed, huge``: fp16 storage on the huge-page half with the per-run converting copies, the staging
  buffer and the row views (the library before issue 21, which advised its store);
- ``fp16 plain, 4K``: fp16 storage on the 4 KB-page half with the library's push/sample (the library now);
- ``fp16 plain, huge`` (``--huge-iterations``): as the previous on the huge-page half (huge pages alone).

Each round runs one fine-tune iteration (forward, backward, SGD step) of every candidate on the same batch
(2 images, the configs' ``samples_per_gpu``), the candidate order rotating from round to round; before each
iteration the trainable weights, the mean scores and the seed are reset, so every candidate does the same work
but for the memory's own ops. Printed: median seconds per iteration of each and its ratio to its plain
counterpart (median of the per-round ratios), the noise (one candidate's spread, (max - min) / median, and how much
its iterations in consecutive rounds differ), and the seconds spent inside push and sample in those same
iterations. ``--micro-steps`` then times, on the same store,
the isolated push 640 + sample 32 of bench_core.py [2] for every candidate.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from loce_cli.core.memory_bank import FeatureMemory  # noqa: E402

CONFIG = ROOT / "configs" / "lvis" / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"
C, Q, SHAPE = 1203, 80, (256, 7, 7)
ROW = math.prod(SHAPE)
SLOTS = C * Q + 1
MADV_HUGEPAGE, MADV_NOHUGEPAGE, HUGE = 14, 15, 1 << 21


# -- the removed paths ----------------------------------------------------------------------------------------
def wide_rows(t: torch.Tensor) -> torch.Tensor:
    """``[n, *SHAPE]`` as ``[n, k]`` complex128 (16-byte elements) when contiguous, 16-byte aligned and rows a
    multiple of 16 bytes; else ``t``."""
    if t.is_contiguous() and not t.is_complex() and (ROW * t.element_size()) % 16 == 0 and t.data_ptr() % 16 == 0:
        return t.view(t.shape[0], ROW).view(torch.complex128)
    return t


class TimedMemory(FeatureMemory):
    """The library's push/sample, with the seconds spent in them added up (``seconds``)."""

    seconds = 0.0

    def push(self, *args, **kwargs):
        t0 = time.perf_counter()
        super().push(*args, **kwargs)
        self.seconds += time.perf_counter() - t0

    def sample(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = super().sample(*args, **kwargs)
        self.seconds += time.perf_counter() - t0
        return out


class RemovedPaths(TimedMemory):
    """``FeatureMemory`` as it was before issue 21: the same index arithmetic, the removed ways of moving rows."""

    _staging: Optional[torch.Tensor] = None

    @torch.no_grad()
    def push(self, feats, labels, reg_targets=None):
        t0 = time.perf_counter()
        p = feats.shape[0]
        device = self.flat_feats.device
        labels = labels.to(device=device, dtype=torch.long).reshape(-1)
        q, c = self.queue_size, self.num_classes
        sorted_labels, order = torch.sort(labels, stable=True)
        first = torch.searchsorted(sorted_labels, sorted_labels)
        rank = torch.arange(p, device=device) - first
        slot = (self.ptrs[sorted_labels] + rank).remainder_(q).add_(sorted_labels, alpha=q)
        if p > q:
            slot[:-q].masked_fill_(sorted_labels[q:] == sorted_labels[:-q], c * q)
        index = torch.empty_like(slot).index_copy_(0, order, slot)
        src = feats.detach().to(device).reshape(p, *self.feat_shape)
        if device.type == "cpu" and src.dtype != self.flat_feats.dtype:
            self._copy_runs(src, index)
        else:
            if src.dtype != self.flat_feats.dtype:
                if self._staging is None or self._staging.shape[0] < p or self._staging.dtype != self.flat_feats.dtype:
                    self._staging = torch.empty((max(p, 1024), *self.feat_shape), dtype=self.flat_feats.dtype,
                                                device=device)
                src = self._staging[:p]
                src.copy_(feats.detach().to(device).reshape(p, *self.feat_shape))
            dst, wide = wide_rows(self.flat_feats), wide_rows(src)
            if dst is self.flat_feats or wide is src:
                dst, wide = self.flat_feats, src
            dst.index_copy_(0, index, wide)
        self.flat_labels.index_copy_(0, index, labels)
        reg = (torch.zeros((p, self.reg_dim), device=device) if reg_targets is None
               else reg_targets.detach().to(device=device, dtype=torch.float32).reshape(p, self.reg_dim))
        self.flat_reg.index_copy_(0, index, reg)
        ones = torch.ones_like(labels)
        self.ptrs.index_add_(0, labels, ones).remainder_(q)
        self.counts.index_add_(0, labels, ones).clamp_(max=q)
        self._has_data = True
        self.seconds += time.perf_counter() - t0

    def _copy_runs(self, src, index):
        spare = self.num_classes * self.queue_size
        p = index.shape[0]
        starts = torch.ones(p, dtype=torch.bool)
        torch.ne(index[1:] - index[:-1], 1, out=starts[1:])
        starts |= index == spare
        first = starts.nonzero().squeeze(1)
        bounds = first.tolist() + [p]
        dsts, srcs = [], []
        for k, row in enumerate(index[first].tolist()):
            if row != spare:
                dsts.append(self.flat_feats[row: row + bounds[k + 1] - bounds[k]])
                srcs.append(src[bounds[k]: bounds[k + 1]])
        torch._foreach_copy_(dsts, srcs)

    @torch.no_grad()
    def sample(self, mean_scores, num_classes=8, num_features=4, generator=None, out_dtype=torch.float32):
        t0 = time.perf_counter()
        device = self.flat_feats.device
        drawn = torch.multinomial(self.draw_weights(mean_scores), num_classes, replacement=True, generator=generator)
        filled = self.counts[drawn].clamp_min_(1).unsqueeze(1)
        pos = torch.randint(0, 1 << 62, (num_classes, num_features), device=device, generator=generator)
        index = pos.remainder_(filled).add_(drawn.unsqueeze(1), alpha=self.queue_size).reshape(-1)
        rows = wide_rows(self.flat_feats)
        feats = rows.index_select(0, index)
        if rows is not self.flat_feats:
            feats = feats.view(self.dtype).view(-1, *self.feat_shape)
        if out_dtype is not None and feats.dtype != out_dtype:
            feats = feats.to(out_dtype)
        out = feats, self.flat_labels.index_select(0, index), self.flat_reg.index_select(0, index)
        self.seconds += time.perf_counter() - t0
        return out


# -- the store ------------------------------------------------------------------------------------------------
def madvise(start: int, end: int, advice: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc.madvise(start, end - start, advice) == 0


def huge_page_bytes(lo: int, hi: int) -> dict:
    """AnonHugePages (bytes) of this process's mappings inside ``[lo, hi)``, by their THP flag (hg / nh / none)."""
    out, inside, flag, size = {}, False, None, 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                a, b = (int(x, 16) for x in head.split("-"))
                inside = a < hi and b > lo
            elif inside and head == "AnonHugePages:":
                size = int(line.split()[1]) * 1024
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
                flag = "hg" if "hg" in flags else "nh" if "nh" in flags else "none"
                out[flag] = out.get(flag, 0) + size
    return out


def make_candidates():
    """One byte store, its halves advised, filled; the candidates' memories as views of it."""
    n32 = SLOTS * ROW * 4
    store = torch.empty(n32, dtype=torch.uint8)
    lo, hi = store.data_ptr(), store.data_ptr() + n32
    mid = (lo + n32 // 2) & ~(HUGE - 1)
    advised = (madvise((lo + HUGE - 1) & ~(HUGE - 1), mid, MADV_HUGEPAGE), madvise(mid, hi & ~4095, MADV_NOHUGEPAGE))
    n16 = SLOTS * ROW * 2

    def memory(cls, dtype, offset):
        m = cls(C, Q, SHAPE, dtype=dtype, device="meta")
        nbytes = SLOTS * ROW * torch.finfo(dtype).bits // 8
        m.flat_feats = store[offset: offset + nbytes].view(dtype).view(SLOTS, *SHAPE)
        m.flat_labels = torch.arange(SLOTS) // Q
        m.flat_reg = torch.randn(SLOTS, 4)
        m.counts = torch.full((C,), Q, dtype=torch.long)
        m.ptrs = torch.randint(0, Q, (C,))
        m._has_data = True
        return m

    cands = {"fp32 removed": memory(RemovedPaths, torch.float32, 0),
             "fp32 plain": memory(TimedMemory, torch.float32, 0),
             "fp16 removed, huge": memory(RemovedPaths, torch.float16, 0),
             "fp16 plain, 4K": memory(TimedMemory, torch.float16, n16),
             "fp16 plain, huge": memory(TimedMemory, torch.float16, 0)}
    g = torch.Generator().manual_seed(0)
    rows32 = cands["fp32 plain"].flat_feats
    for i in range(0, SLOTS, 4096):  # every page written (committed) before anything is timed
        rows32[i: i + 4096].normal_(generator=g)
    for name in ("fp16 removed, huge", "fp16 plain, 4K"):  # valid fp16 values in both halves
        rows16 = cands[name].flat_feats
        for i in range(0, SLOTS, 4096):
            rows16[i: i + 4096].normal_(generator=g)
    pages = huge_page_bytes(lo, hi)
    return store, cands, dict(advised=advised, anon_huge_bytes=pages, store_bytes=n32)


# -- the model ------------------------------------------------------------------------------------------------
def default_data() -> Path:
    for cand in (ROOT / "work" / "rehearsal" / "data" / "lvis_v1_synth", Path("/tmp/loce_bench_memory_paths")):
        if (cand / "annotations" / "loce_meta.json").is_file():
            return cand
    out = Path("/tmp/loce_bench_memory_paths")
    loce = [sys.executable, "-m", "loce_cli"]
    subprocess.run(loce + ["data", "synth", "--like", "lvis-v1", "--out", str(out), "--train-images", "500",
                           "--val-images", "4", "--force"], check=True)
    subprocess.run(loce + ["data", "prep", "--root", str(out)], check=True)
    return out


def build(data: Path, scale, batches: int):
    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from mmcv.parallel import MMDataParallel
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector

    from loce_cli.engine.config.loading import load_config

    cfg = load_config(CONFIG, [f"data.train.ann_file={data / 'annotations' / 'lvis_v1_train.json'}",
                               f"data.train.img_prefix={data}/", "model.backbone.init_cfg=None",
                               "model.roi_head.memory.queue_size=1"])  # the head's own memory: tiny, replaced
    if scale:
        for step in cfg.data.train.pipeline:
            if step["type"] == "Resize":
                step["img_scale"] = [tuple(scale)]
    dataset = build_dataset(cfg.data.train)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    model.train()
    loader = build_dataloader(dataset, cfg.data.samples_per_gpu, 0, num_gpus=1, dist=False, seed=0, shuffle=True)
    out = list(itertools.islice(loader, batches))
    return MMDataParallel(model, device_ids=None), cfg, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="a prepared LVIS-like root (default: synthesised once)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (one iteration per candidate each)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first (one candidate)")
    ap.add_argument("--scale", type=int, nargs=2, default=None, metavar=("W", "H"),
                    help="one training scale instead of the config's multi-scale 1333 x 640..800")
    ap.add_argument("--huge-iterations", action="store_true",
                    help="also iterate 'fp16 plain, huge' (huge pages alone); else only in the micro part")
    ap.add_argument("--micro-steps", type=int, default=100, help="isolated push 640 + sample 32 steps per candidate")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    data = Path(args.data) if args.data else default_data() if args.rounds else None
    store, cands, pages = make_candidates()
    fig = dict(pages=pages, scale=args.scale, rounds=args.rounds, data=str(data), iterations={})
    huge = ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in pages["anon_huge_bytes"].items())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; data {data}; scale "
          f"{args.scale or 'as configured'}; store {pages['store_bytes'] / 1e9:.2f} GB, madvise huge / nohuge "
          f"{pages['advised']}, huge pages by mapping flag (hg: advised huge, nh: advised not): {huge}", flush=True)
    if args.rounds:
        iterations(args, data, cands, fig)
    if args.micro_steps:
        micro_steps(args, cands, fig)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=2)
    del store


def iterations(args, data, cands, fig) -> None:
    from mmcv.runner import build_optimizer

    model, cfg, batches = build(data, args.scale, args.rounds + 1)
    head = model.module.roi_head
    iterated = [k for k in cands if k != "fp16 plain, huge" or args.huge_iterations]
    trainable = {k: v.detach().clone() for k, v in model.module.named_parameters() if v.requires_grad}
    scores0 = head.score_tracker.scores.clone()

    def iteration(name, batch, seed):
        mem = cands[name]
        head.memory = mem
        with torch.no_grad():
            for k, p in model.module.named_parameters():
                if k in trainable:
                    p.copy_(trainable[k])
            head.score_tracker.scores.copy_(scores0)
        opt = build_optimizer(model, cfg.optimizer)
        torch.manual_seed(seed)
        mem.seconds = 0.0
        t0 = time.perf_counter()
        out = model.train_step(batch, opt)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        return time.perf_counter() - t0, mem.seconds

    for w in range(args.warmup):  # allocator and caches warm before the first timed iteration
        t, s = iteration(iterated[-1], batches[-1], seed=1000)
        print(f"  warm-up {iterated[-1]:20s} {t:7.2f} s/iteration, push+sample {s * 1e3:7.1f} ms", flush=True)
    times = {k: [] for k in iterated}
    inside = {k: [] for k in iterated}
    for r in range(args.rounds):
        order = iterated[r % len(iterated):] + iterated[: r % len(iterated)]
        for name in order:
            t, s = iteration(name, batches[r], seed=r)
            print(f"  round {r} {name:20s} {t:7.2f} s/iteration, push+sample {s * 1e3:7.1f} ms", flush=True)
            times[name].append(t)
            inside[name].append(s)

    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print(f"\nfine-tune iteration, {args.rounds} timed rounds (median; spread = (max - min) / median of one "
          "candidate's iterations):")
    for name in iterated:
        med = statistics.median(times[name])
        spread = (max(times[name]) - min(times[name])) / med
        ins = statistics.median(inside[name])
        print(f"  {name:20s} {med:7.2f} s/iteration, spread {spread * 100:4.1f}%, inside push+sample "
              f"{ins * 1e3:7.1f} ms ({ins / med * 100:.3f}% of the iteration)")
        fig["iterations"][name] = dict(median_s=med, spread=spread, times_s=times[name], inside_s=inside[name])
    pairs = [("fp32 removed", "fp32 plain"), ("fp16 removed, huge", "fp16 plain, 4K")]
    if args.huge_iterations:
        pairs += [("fp16 plain, huge", "fp16 plain, 4K"), ("fp16 removed, huge", "fp16 plain, huge")]
    for a, b in pairs:
        inside_diff = statistics.median(inside[a]) - statistics.median(inside[b])
        print(f"  {a} / {b}: {ratio(a, b):.4f} (per-round median); inside push+sample {inside_diff * 1e3:+.1f} ms")
        fig["iterations"][f"{a} / {b}"] = dict(ratio=ratio(a, b), inside_diff_s=inside_diff)
    # noise: one candidate's iterations in consecutive rounds (the same code; other batches, as every candidate)
    noise = [abs(x / y - 1) for name in iterated for x, y in zip(times[name][1:], times[name][:-1])]
    print(f"  run-to-run noise: consecutive rounds of one candidate differ by {statistics.median(noise) * 100:.1f}% "
          f"(median), {max(noise) * 100:.1f}% (max)")
    fig["noise_consecutive_median"] = statistics.median(noise)
    fig["noise_consecutive_max"] = max(noise)

    head.memory = None


def micro_steps(args, cands, fig) -> None:
    feats, reg = torch.randn(640, *SHAPE), torch.randn(640, 4)
    scores = torch.rand(C + 1) * 0.5 + 0.01
    label_sets = [torch.randint(0, C, (40,)).repeat_interleave(16) for _ in range(64)]
    micro = {k: [] for k in cands}
    block = 10
    for b in range(args.micro_steps // block + 1):
        order = list(cands)[b % len(cands):] + list(cands)[: b % len(cands)]
        for name in order:
            mem = cands[name]
            t0 = time.perf_counter()
            for s in range(block):
                mem.push(feats, label_sets[(b * block + s) % 64], reg)
                mem.sample(scores)
            if b:  # the first block of each is a warm-up
                micro[name].append((time.perf_counter() - t0) / block)
    print(f"\nisolated push 640 + sample 32 (bench_core [2]'s step) on the same store, blocks of {block}, "
          f"{args.micro_steps} steps each:")
    fig["micro"] = {}

    def mratio(a, b):
        return statistics.median(x / y for x, y in zip(micro[a], micro[b]))

    for name in cands:
        print(f"  {name:20s} {statistics.median(micro[name]) * 1e3:6.2f} ms/step")
        fig["micro"][name] = statistics.median(micro[name])
    for a, b in [("fp32 removed", "fp32 plain"), ("fp16 removed, huge", "fp16 plain, 4K"),
                 ("fp16 plain, huge", "fp16 plain, 4K"), ("fp16 removed, huge", "fp16 plain, huge")]:
        print(f"  {a} / {b}: {mratio(a, b):.3f}")
        fig["micro"][f"{a} / {b}"] = mratio(a, b)


if __name__ == "__main__":
    main()

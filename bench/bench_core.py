"""LOCE core costs at LVIS v1 scale on this machine, as ratios measured side by side in one run.

    .venv/bin/python bench/bench_core.py [--repeats 30]

1. EBL forward+backward vs plain softmax CE on [1056, 1204] logits, with each of its two backward implementations
   (in-place: the CPU default; built-in: the GPU default).
2. FeatureMemory push (640 features = 2 images x 20 gts x 16 jitters, random classes each step) + sample (8 x 4)
   vs the floor of the issue, one plain copy of the pushed features into a preallocated (cache-warm)
   destination; also vs one contiguous copy into a moving window of a memory-sized store (the cost of writing
   to uncached memory without any indexing) and vs the copy plus one trivial op for each other op of the step
   (what any design with that many ops pays: on a GPU, kernel launches); side by side a per-label Python loop
   (the authors' design, written here for comparison). fp32 and fp16.
3. nbytes() of LVIS v1 queues (1203 x 80 x 256 x 7 x 7) per storage dtype (meta device, nothing allocated).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import Timings, interleaved, ratio_text, write_figures  # noqa: E402
from loce_cli.core import equilibrium_loss as ebl_module  # noqa: E402
from loce_cli.core.equilibrium_loss import equilibrium_loss  # noqa: E402
from loce_cli.core.memory_bank import FeatureMemory  # noqa: E402

C, Q, SHAPE = 1203, 80, (256, 7, 7)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class LoopMemory:
    """The per-label Python loop design: one queue per class, items written one class at a time."""

    def __init__(self, dtype, device="cpu"):
        self.feats = torch.empty((C, Q, *SHAPE), dtype=dtype, device=device)
        self.reg = torch.zeros((C, Q, 4), device=device)
        self.ptr = [0] * C
        self.count = [0] * C

    def push(self, feats, labels, reg):
        for c in labels.unique().tolist():
            sel = (labels == c).nonzero().squeeze(1)
            for i in sel.tolist():
                p = self.ptr[c]
                self.feats[c, p] = feats[i]
                self.reg[c, p] = reg[i]
                self.ptr[c] = (p + 1) % Q
                self.count[c] = min(self.count[c] + 1, Q)

    def sample(self, scores):
        probs = 1.0 / (scores[:C] + 1e-6)
        filled = torch.tensor([n > 0 for n in self.count], device=scores.device)
        probs = probs * filled
        drawn = torch.multinomial(probs / probs.sum(), 8, replacement=True).tolist()
        out = []
        for c in drawn:
            idx = torch.randint(0, self.count[c], (4,), device=scores.device)
            out.append(self.feats[c, idx].float())
        return torch.cat(out)


def blocks(fns: dict, repeats: int, block: int) -> Timings:
    """Seconds per call over ``repeats`` rounds; in each round every candidate runs ``block`` calls in a
    row, candidates in a shuffled order. A call that writes tens of MB leaves dirty cache lines whose write-back
    the *next* code pays; timing blocks makes each candidate pay mostly for its own, and the shuffle keeps any
    one candidate from always following the heaviest."""
    import random

    rng = random.Random(0)
    for fn in fns.values():
        fn()
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        order = list(fns)
        rng.shuffle(order)
        for k in order:
            fn = fns[k]
            _sync()
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            _sync()
            samples[k].append((time.perf_counter() - t0) / block)
    return Timings(samples)


def profile_steps(step, dev, n=10) -> dict:
    """Profile ``n`` calls of ``step``: print the ops by host time; return kernel launches and host/device time
    per call (on a GPU a step this small is bound by launches and host work, not by bytes moved)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    _sync()
    with profile(activities=acts) as prof:
        for _ in range(n):
            step()
        _sync()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=14))
    kernels = sum(e.count for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    host_us = sum(e.self_cpu_time_total for e in events) / n
    dev_us = sum(getattr(e, "self_device_time_total", 0) for e in events) / n
    print(f"  per step: {kernels / n:.1f} kernel launches, {host_us:.0f} us host time in ops, "
          f"{dev_us:.0f} us device time")
    return dict(kernels_per_step=kernels / n, host_us_per_step=host_us, device_us_per_step=dev_us)


def ops_per_step(dtype=torch.float32, device="meta") -> tuple:
    """Tensor ops (views and allocations aside) in one push 640 + sample 32 into storage of ``dtype`` on ``device``
    (fp32 features, as RoIAlign gives; small queues): on a GPU each is at least one kernel launch, and right after
    a push each costs tens of us on a CPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    skip = {"view", "reshape", "unsqueeze", "slice", "select", "alias", "detach", "_unsafe_view", "expand"}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if name not in skip and not name.startswith("empty"):
                self.n += 1
            return func(*args, **(kwargs or {}))

    mem = FeatureMemory(50, 16, (8, 7, 7), dtype=dtype, device=device)
    feats = torch.randn(640, 8, 7, 7, device=device)
    labels = torch.randint(0, 50, (40,), device=device).repeat_interleave(16)
    reg, scores = torch.randn(640, 4, device=device), torch.rand(51, device=device)
    mem.push(feats, labels)
    with Count() as push:
        mem.push(feats, labels, reg)
    with Count() as sample:
        mem.sample(scores)
    return push.n, sample.n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--block", type=int, default=5, help="memory benchmark: calls timed in a row per candidate")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (times include a synchronize per block)")
    ap.add_argument("--profile", action="store_true",
                    help="memory benchmark: also profile 10 FeatureMemory steps (ops, host time, kernel launches)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    figures = {"device": str(dev)}
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {dev}"
          + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))
    print("times are medians; each ratio is the median of the ratios within a round (candidates run back to back), "
          "so not always the quotient of the two times shown")

    logits = torch.randn(1056, C + 1, device=dev, requires_grad=True)
    labels = torch.randint(0, C + 1, (1056,), device=dev)
    scores = torch.rand(C + 1, device=dev) * 0.5 + 0.01

    def ce():
        F.cross_entropy(logits, labels).backward()

    def ebl_with(mode):
        def run():
            ebl_module.BACKWARD = mode
            equilibrium_loss(logits, labels, scores).backward()
        return run

    t = interleaved({"ce": ce, "inplace": ebl_with("inplace"), "builtin": ebl_with("builtin")}, args.repeats * 3,
                    _sync)
    ebl_module.BACKWARD = "auto"
    auto = "inplace" if dev.type == "cpu" else "builtin"
    print(f"\n[1] loss fwd+bwd [1056, {C + 1}]: CE {t['ce'] * 1e3:.2f} ms, EBL {t[auto] * 1e3:.2f} ms "
          f"({auto} backward, the default here), EBL/CE = {t.ratio(auto, 'ce'):.2f} (goal <= 1.15); "
          f"in-place backward {t.ratio('inplace', 'ce'):.2f}, built-in backward {t.ratio('builtin', 'ce'):.2f}")
    figures["loss"] = dict(ce_s=t["ce"], ebl_s=t[auto], ratio=t.ratio(auto, "ce"), backward=auto,
                           inplace_ratio=t.ratio("inplace", "ce"), builtin_ratio=t.ratio("builtin", "ce"))

    feats = torch.randn(640, *SHAPE, device=dev)
    reg = torch.randn(640, 4, device=dev)
    # each step brings 40 ground truths of random classes (16 jitters each), as in training: the writes land in
    # rows all over the 4.8 GB store, not in a few hot queues
    label_sets = [torch.randint(0, C, (40,), device=dev).repeat_interleave(16) for _ in range(64)]
    step = [0]

    def next_labels():
        step[0] += 1
        return label_sets[step[0] % len(label_sets)]

    print("\n[2] memory push 640 + sample 32 per step, LVIS v1 scale, random classes each step "
          f"(blocks of {args.block} steps, candidates in shuffled order)")
    for dtype in (torch.float32, torch.float16):
        n_push, n_sample = ops_per_step(dtype, dev)
        print(f"  {str(dtype)}: ops per step: push {n_push} + sample {n_sample} = {n_push + n_sample}")
        figures[f"ops_per_step_{str(dtype).split('.')[-1]}"] = dict(push=n_push, sample=n_sample)
        mem = FeatureMemory(C, Q, SHAPE, dtype=dtype, device=dev)
        loop = LoopMemory(dtype, dev)
        dst = torch.empty((640, *SHAPE), dtype=dtype, device=dev)
        # commit every page first so that no candidate pays first-touch page faults
        mem.flat_feats.zero_()
        loop.feats.zero_()
        mem.push(feats, torch.randint(0, C, (640,), device=dev), reg)
        for c in range(C):
            loop.count[c] = 1
        cold_rows = loop.feats.view(C * Q, *SHAPE)
        window = [0]

        def floor():
            dst.copy_(feats)

        def cold_floor():
            # one contiguous copy into a window of a store as large as the memory, moving every step: the cost
            # of writing 640 features to memory that is not in any cache, with no indexing at all
            window[0] = (window[0] + 7 * 640) % (C * Q - 640)
            cold_rows[window[0]: window[0] + 640].copy_(feats)

        tiny = torch.zeros(8, device=dev)

        def op_floor():
            # the floor of any design with as many tensor ops as ours: the copy plus one trivial op for each of
            # the others (on a GPU each is a kernel launch; on a CPU each pays the dispatcher)
            dst.copy_(feats)
            for _ in range(n_push + n_sample - 1):
                tiny.add_(1)

        def ours():
            mem.push(feats, next_labels(), reg)
            mem.sample(scores)

        def authors():
            loop.push(feats, next_labels(), reg)
            loop.sample(scores)

        t = blocks({"floor": floor, "cold": cold_floor, "ops": op_floor, "ours": ours, "loop": authors}, args.repeats,
                   args.block)
        if args.profile:
            try:
                figures[f"profile_{str(dtype).split('.')[-1]}"] = profile_steps(ours, dev)
            except Exception as e:  # a profiler that cannot start here must not cost the timings
                print(f"  profile failed: {type(e).__name__}: {e}")
        print(f"  {str(dtype):14s} floor copy {t['floor'] * 1e3:6.2f} ms | FeatureMemory {t['ours'] * 1e3:6.2f} ms "
              f"({t.ratio('ours', 'floor'):.2f}x floor, goal <= 1.5; {t.ratio('ours', 'cold'):.2f}x a copy into cold "
              f"memory, {t['cold'] * 1e3:.2f} ms; {t.ratio('ours', 'ops'):.2f}x the copy + {n_push + n_sample - 1} "
              f"trivial ops, {t['ops'] * 1e3:.2f} ms) | per-label loop {t['loop'] * 1e3:6.2f} ms "
              f"(loop/ours = {t.ratio('loop', 'ours'):.1f}x)")
        figures[f"memory_{str(dtype).split('.')[-1]}"] = dict(
            floor_s=t["floor"], cold_floor_s=t["cold"], ops_floor_s=t["ops"], ours_s=t["ours"], loop_s=t["loop"],
            ratio=t.ratio("ours", "floor"), cold_ratio=t.ratio("ours", "cold"), ops_ratio=t.ratio("ours", "ops"),
            loop_ratio=t.ratio("loop", "ours"))
        mem = loop = cold_rows = None  # free 5-10 GB before the next dtype allocates

    print("\n[3] FeatureMemory.nbytes() at LVIS v1 scale (1203 x 80 x 256 x 7 x 7)")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        m = FeatureMemory(C, Q, SHAPE, dtype=dtype, device="meta")
        print(f"  {str(dtype):14s} {m.nbytes() / 1e9:.2f} GB")
        figures[f"nbytes_{str(dtype).split('.')[-1]}"] = m.nbytes()
    write_figures(args.json, figures, rows(figures))


def rows(c: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    out = [("EBL forward+backward, [1056, 1204] logits", "softmax CE", ratio_text(c["loss"]["ratio"]), "<= 1.15")]
    for dt in ("float32", "float16"):
        m = c.get(f"memory_{dt}")
        if not m:
            continue
        out.append((f"feature memory push 640 + sample 32 ({dt}, LVIS v1 scale, random classes)",
                    "one plain copy of the 640 features", ratio_text(m["ratio"]), "<= 1.5"))
        if m.get("cold_ratio") is not None:
            out.append((f"feature memory push 640 + sample 32 ({dt})", "one copy of the 640 features into "
                        "uncached memory", ratio_text(m["cold_ratio"]), "-"))
        if m.get("ops_ratio") is not None:
            ops = c.get(f"ops_per_step_{dt}")
            n = sum(ops.values()) - 1 if ops else "the other"
            out.append((f"feature memory push 640 + sample 32 ({dt})", f"the plain copy + {n} trivial tensor "
                        "ops (as many ops as the step)", ratio_text(m["ops_ratio"]), "-"))
        out.append((f"per-label Python loop memory ({dt}, the authors' design)", "loce's FeatureMemory",
                    ratio_text(m["loop_ratio"]), "-"))
    return out


if __name__ == "__main__":
    main()

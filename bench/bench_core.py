"""LOCE core costs at LVIS v1 scale on this machine, as ratios measured side by side in one run.

    .venv/bin/python bench/bench_core.py [--repeats 30]

1. EBL forward+backward vs plain softmax CE on [1056, 1204] logits.
2. FeatureMemory push (640 features = 2 images x 20 gts x 16 jitters) + sample (8 x 4) vs the floor of any
   design, one plain copy of the pushed features into a preallocated destination; side by side a per-label
   Python loop (the authors' design, written here for comparison). fp32 and fp16.
3. nbytes() of LVIS v1 queues (1203 x 80 x 256 x 7 x 7) per storage dtype (meta device, nothing allocated).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from loce_cli.core.equilibrium_loss import equilibrium_loss
from loce_cli.core.memory_bank import FeatureMemory

C, Q, SHAPE = 1203, 80, (256, 7, 7)


def timeit(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds per call, the candidates alternating so that machine noise hits them alike."""
    for fn in fns.values():
        fn()
    samples = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


class LoopMemory:
    """The per-label Python loop design: one queue per class, items written one class at a time."""

    def __init__(self, dtype):
        self.feats = torch.empty((C, Q, *SHAPE), dtype=dtype)
        self.reg = torch.zeros((C, Q, 4))
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
        filled = torch.tensor([n > 0 for n in self.count])
        probs = probs * filled
        drawn = torch.multinomial(probs / probs.sum(), 8, replacement=True).tolist()
        out = []
        for c in drawn:
            idx = torch.randint(0, self.count[c], (4,))
            out.append(self.feats[c, idx].float())
        return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args()
    figures = {}
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    logits = torch.randn(1056, C + 1, requires_grad=True)
    labels = torch.randint(0, C + 1, (1056,))
    scores = torch.rand(C + 1) * 0.5 + 0.01

    def ce():
        F.cross_entropy(logits, labels).backward()

    def ebl():
        equilibrium_loss(logits, labels, scores).backward()

    t = interleaved({"ce": ce, "ebl": ebl}, args.repeats * 3)
    print(f"\n[1] loss fwd+bwd [1056, {C + 1}]: CE {t['ce'] * 1e3:.2f} ms, EBL {t['ebl'] * 1e3:.2f} ms, "
          f"EBL/CE = {t['ebl'] / t['ce']:.2f} (goal <= 1.15)")
    figures["loss"] = dict(ce_s=t["ce"], ebl_s=t["ebl"], ratio=t["ebl"] / t["ce"])

    feats = torch.randn(640, *SHAPE)
    feat_labels = torch.randint(0, C, (40,)).repeat_interleave(16)
    reg = torch.randn(640, 4)
    print("\n[2] memory push 640 + sample 32, LVIS v1 scale")
    for dtype in (torch.float32, torch.float16):
        mem = FeatureMemory(C, Q, SHAPE, dtype=dtype)
        loop = LoopMemory(dtype)
        dst = torch.empty((640, *SHAPE), dtype=dtype)
        # fill all queues once so every run writes to committed pages
        for _ in range(3):
            lab = torch.randint(0, C, (640,))
            mem.push(feats, lab, reg)
        mem.flat_feats.zero_()
        loop.feats.zero_()
        for c in range(C):
            loop.count[c] = 1

        def floor():
            dst.copy_(feats)

        def ours():
            mem.push(feats, feat_labels, reg)
            mem.sample(scores)

        def authors():
            loop.push(feats, feat_labels, reg)
            loop.sample(scores)

        t = interleaved({"floor": floor, "ours": ours, "loop": authors}, args.repeats)
        print(f"  {str(dtype):14s} floor copy {t['floor'] * 1e3:6.2f} ms | FeatureMemory {t['ours'] * 1e3:6.2f} ms "
              f"({t['ours'] / t['floor']:.2f}x floor, goal <= 1.5) | per-label loop {t['loop'] * 1e3:6.2f} ms "
              f"(loop/ours = {t['loop'] / t['ours']:.1f}x)")
        figures[f"memory_{str(dtype).split('.')[-1]}"] = dict(floor_s=t["floor"], ours_s=t["ours"], loop_s=t["loop"],
                                                              ratio=t["ours"] / t["floor"],
                                                              loop_ratio=t["loop"] / t["ours"])

    print("\n[3] FeatureMemory.nbytes() at LVIS v1 scale (1203 x 80 x 256 x 7 x 7)")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        m = FeatureMemory(C, Q, SHAPE, dtype=dtype, device="meta")
        print(f"  {str(dtype):14s} {m.nbytes() / 1e9:.2f} GB")
        figures[f"nbytes_{str(dtype).split('.')[-1]}"] = m.nbytes()
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()

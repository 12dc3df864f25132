"""Fine-tune iteration time of LOCE vs the plain fine-tune on the synthetic config: the whole model on the CPU
(frozen backbone / FPN / shared FCs forward, trainable heads forward + backward + SGD step), the same batches
for both, the two alternating iteration by iteration so that machine noise hits them alike.

    .venv/bin/python bench/bench_finetune.py [--iters 30] [--data DIR] [--checkpoint BASE.pth] [--json FILE]

Plain = configs/synthetic/ablation_plain_ft_synth.py (softmax CE, no memory); LOCE =
configs/synthetic/loce_mask_rcnn_r18_fpn_normed_synth.py (EBL + memory sampling + memory push; the memory is
filled first as the fine-tune's init hook does). Both start from the same weights (--checkpoint, else the
reproduction's base model when it exists, else a fresh initialisation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SYNTH = ROOT / "configs" / "synthetic"
CONFIGS = {"plain": SYNTH / "ablation_plain_ft_synth.py", "loce": SYNTH / "loce_mask_rcnn_r18_fpn_normed_synth.py"}


def _data(path):
    if path is not None:
        return Path(path)
    for candidate in (ROOT / "work" / "reproduce" / "data0" / "data", ROOT / "work" / "quickstart" / "data"):
        if (candidate / "annotations" / "lvis_v1_train.json").is_file():
            return candidate
    from loce_cli.engine.synth import SynthOptions, synthesize

    out = Path("/tmp/loce_bench_finetune_data")
    if not (out / "annotations" / "lvis_v1_train.json").is_file():
        synthesize(out, SynthOptions(), force=True)
    return out


def _checkpoint(path):
    if path is not None:
        return Path(path)
    for candidate in (ROOT / "work" / "reproduce" / "data0" / "base" / "epoch_6.pth",
                      ROOT / "work" / "quickstart" / "base" / "epoch_6.pth"):
        if candidate.is_file():
            return candidate
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=30, help="timed iterations of each (after 3 warm-up ones)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from mmcv.parallel import MMDataParallel
    from mmcv.runner import build_optimizer, load_checkpoint
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector

    from loce_cli.engine.config import load_config
    from loce_cli.mmdet_ext import fill_memory

    torch.manual_seed(0)
    data = _data(args.data)
    ckpt = _checkpoint(args.checkpoint)
    opts = [f"data.train.ann_file={data / 'annotations' / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/"]
    models, optims = {}, {}
    dataset = None
    for name, path in CONFIGS.items():
        cfg = load_config(path, opts)
        if dataset is None:
            dataset = build_dataset(cfg.data.train)
        model = build_detector(cfg.model)
        if ckpt is not None:
            load_checkpoint(model, str(ckpt), map_location="cpu", logger="silent")
        else:
            model.init_weights()
        model.train()
        if name == "loce":
            fill_memory(model, dataset)
        models[name] = MMDataParallel(model, device_ids=None)
        optims[name] = build_optimizer(models[name], cfg.optimizer)
    loader = build_dataloader(dataset, 4, 0, num_gpus=1, dist=False, seed=0, shuffle=True)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == args.iters + 3:
            break

    def step(name, batch):
        model, opt = models[name], optims[name]
        t0 = time.perf_counter()
        out = model.train_step(batch, opt)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        return time.perf_counter() - t0

    times = {name: [] for name in CONFIGS}
    for i, batch in enumerate(batches):
        order = list(CONFIGS) if i % 2 == 0 else list(reversed(CONFIGS))
        for name in order:
            t = step(name, batch)
            if i >= 3:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["loce"] / med["plain"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data}, "
          f"weights {ckpt or 'fresh initialisation'}")
    print(f"fine-tune iteration (4 images of 128 px, whole model): plain {med['plain'] * 1e3:.0f} ms | "
          f"LOCE {med['loce'] * 1e3:.0f} ms | LOCE / plain = {ratio:.2f} (median of {args.iters}, interleaved)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(plain_s=med["plain"], loce_s=med["loce"], ratio=ratio, iters=args.iters,
                           threads=torch.get_num_threads(), weights=str(ckpt or "fresh")), f, indent=2)


if __name__ == "__main__":
    main()

"""Fine-tune iteration time of LOCE vs the plain fine-tune (and, with ``--variants``, vs the baselines) on the
synthetic configs: the whole model on the CPU (frozen backbone / FPN / shared FCs forward, trainable heads forward
+ backward + SGD step), the same batches for every variant, the variants taking turns iteration by iteration (the
order rotating) so that machine noise hits them alike.

    .venv/bin/python bench/bench_finetune.py [--iters 30] [--variants plain loce seesaw eqlv2 fed crt]
        [--data DIR] [--checkpoint BASE.pth] [--json FILE]

plain = configs/synthetic/ablation_plain_ft_synth.py (softmax CE, no memory); loce =
configs/synthetic/loce_mask_rcnn_r18_fpn_normed_synth.py (EBL + memory sampling + memory push; the memory is
filled first as the fine-tune's init hook does); seesaw / eqlv2 / fed / crt = configs/synthetic/baseline_*_synth.py
(the federated loss gets the training set's image counts first, as its ClassFrequencyHook does; cRT's
class-aware sampler only changes which images make a batch, so on the shared batches it times as the plain
fine-tune's compute). All start from the same weights (--checkpoint, else the reproduction's base model when it
exists, else a fresh initialisation).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import REPRODUCTION, ROOT, existing_synthetic_data, ratio_text, write_figures  # noqa: E402

SYNTH = ROOT / "configs" / "synthetic"
CONFIGS = {"plain": SYNTH / "ablation_plain_ft_synth.py", "loce": SYNTH / "loce_mask_rcnn_r18_fpn_normed_synth.py",
           "seesaw": SYNTH / "baseline_seesaw_synth.py", "eqlv2": SYNTH / "baseline_eqlv2_synth.py",
           "fed": SYNTH / "baseline_federated_synth.py", "crt": SYNTH / "baseline_crt_synth.py"}
LABELS = {"plain": "plain", "loce": "LOCE", "seesaw": "Seesaw", "eqlv2": "EQLv2", "fed": "federated", "crt": "cRT"}


def _checkpoint(path):
    if path is not None:
        return Path(path)
    for candidate in (REPRODUCTION / "base" / "epoch_6.pth",
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
    ap.add_argument("--variants", nargs="+", choices=list(CONFIGS), default=["plain", "loce"],
                    help="what to time (the first is the reference of the ratios)")
    args = ap.parse_args()
    variants = list(dict.fromkeys(args.variants))

    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from mmcv.parallel import MMDataParallel
    from mmcv.runner import build_optimizer, load_checkpoint
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector

    from loce_cli.engine.config.loading import load_config
    from loce_cli.mmdet_ext import fill_memory
    from loce_cli.mmdet_ext.federated import federated_losses, image_counts_from_labels
    from loce_cli.mmdet_ext.unwrap import image_labels

    quiet = logging.getLogger("bench_finetune.load")
    quiet.setLevel(logging.ERROR)
    torch.manual_seed(0)
    data = Path(args.data) if args.data else existing_synthetic_data()
    ckpt = _checkpoint(args.checkpoint)
    opts = [f"data.train.ann_file={data / 'annotations' / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/"]
    models, optims = {}, {}
    dataset = None
    for name in variants:
        cfg = load_config(CONFIGS[name], opts)
        if dataset is None:
            dataset = build_dataset(cfg.data.train)
        model = build_detector(cfg.model)
        if ckpt is not None:
            # non-strict, as the fine-tune's load_from: Seesaw's C + 2 outputs start fresh (mmcv warns; not shown)
            load_checkpoint(model, str(ckpt), map_location="cpu", logger=quiet)
        else:
            model.init_weights()
        model.train()
        if name == "loce":
            fill_memory(model, dataset)
        for loss in federated_losses(model):
            loss.set_image_counts(image_counts_from_labels(image_labels(dataset), len(dataset.CLASSES)))
        models[name] = MMDataParallel(model, device_ids=None)
        optims[name] = build_optimizer(models[name], cfg.optimizer)
    loader = build_dataloader(dataset, 4, 0, num_gpus=1, dist=False, seed=0, shuffle=True)
    batches = list(itertools.islice(loader, args.iters + 3))

    def step(name, batch):
        model, opt = models[name], optims[name]
        t0 = time.perf_counter()
        out = model.train_step(batch, opt)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        return time.perf_counter() - t0

    times = {name: [] for name in variants}
    for i, batch in enumerate(batches):
        k = i % len(variants)
        for name in variants[k:] + variants[:k]:  # each variant leads in turn
            t = step(name, batch)
            if i >= 3:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = variants[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {data}, "
          f"weights {ckpt or 'fresh initialisation'}")
    if variants == ["plain", "loce"]:  # the figure run_all.py reads
        print(f"fine-tune iteration (4 images of 128 px, whole model): plain {med['plain'] * 1e3:.0f} ms | "
              f"LOCE {med['loce'] * 1e3:.0f} ms | LOCE / plain = {med['loce'] / med['plain']:.2f} "
              f"(median of {args.iters}, interleaved)")
    else:
        print(f"fine-tune iteration (4 images of 128 px, whole model), median of {args.iters}, interleaved:")
        print(f"| variant | ms / iteration | vs {LABELS[ref]} |\n|---|---:|---:|")
        for name in variants:
            print(f"| {LABELS[name]} | {med[name] * 1e3:.0f} | {med[name] / med[ref]:.2f}x |")
    result = dict(iters=args.iters, threads=torch.get_num_threads(), weights=str(ckpt or "fresh"),
                  variants=variants, **{f"{name}_s": med[name] for name in variants})
    if "loce" in med and "plain" in med:
        result["ratio"] = med["loce"] / med["plain"]
    write_figures(args.json, result, rows(result))


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    out = []
    if f.get("ratio") is not None:
        out.append(("LOCE fine-tune iteration, whole model, synthetic config, CPU", "plain fine-tune iteration",
                    ratio_text(f["ratio"]), "-"))
    if "plain_s" in f:
        for name in CONFIGS:
            if name not in ("plain", "loce") and f"{name}_s" in f:
                out.append((f"{LABELS[name]} fine-tune iteration, whole model, synthetic config, CPU",
                            "plain fine-tune iteration (same batches, interleaved)",
                            ratio_text(f[f"{name}_s"] / f["plain_s"]), "-"))
    return out


if __name__ == "__main__":
    main()

"""Mixed precision, side by side in one run: iteration time and peak memory of fp32 vs bf16 (and fp16 on CUDA)
training steps, and (``--quality``) the synthetic LOCE fine-tune's box APr in bf16 vs fp32.

    .venv/bin/python bench/bench_amp.py [--device cpu|cuda] [--configs synth,lvis] [--iters 5] [--json FILE]
    .venv/bin/python bench/bench_amp.py --quality [--runs bf16:0,fp32:0,bf16:1,fp32:1] [--base BASE.pth --data DIR]

Speed: one model per config, the same fixed batches for every mode, the modes alternating iteration by
iteration (the order flipped each round) so that machine noise hits them alike; a step is the whole training
iteration as ``loce train`` runs it (forward and losses under autocast with the heads' outputs in fp32,
backward, an SGD step; fp16 through a GradScaler). Time: median over ``--iters`` rounds after ``--warmup``.
Peak memory of a step: on CUDA ``torch.cuda.max_memory_allocated`` (reset before each step); on the CPU the
process's peak RSS during the step (``VmHWM`` after resetting it through ``/proc/self/clear_refs``). Both
include what stays resident (weights, optimizer state, the LOCE memory).

Configs: ``synth`` = configs/synthetic/loce_mask_rcnn_r18_fpn_normed_synth.py (LOCE: EBL + memory sampling +
push; the memory is filled first from a few images) on the default synthetic data; ``lvis`` =
configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py at real shape (1333 x 640-800, 1203 classes, 2 images per
step) on data from the LVIS-shaped generator (``loce data synth --like lvis-v1``, then ``loce data prep``);
``lvis-loce`` = the LOCE LVIS recipe with its full 1203 x 80 memory (4.8 GB in fp32: CUDA only by default).

Quality: ``loce finetune`` of the synthetic LOCE recipe from one base checkpoint, fp32 and ``--amp bf16`` for
each seed, each evaluated with ``loce eval`` (box and mask AP / APr; loce eval's default evaluator), run as
scripts/experiments/reproduce.py runs them. A seed whose fp32 run is left out of ``--runs`` is compared with
``--reference`` (the reproduction's fp32 run of the same recipe, base model and data), and the output says so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import (REPRODUCTION as REPRO, ROOT, existing_synthetic_data, lvis_like_data,  # noqa: E402
                          ratio_text, write_figures)

CONFIGS = {
    "synth": ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py",
    "lvis": ROOT / "configs" / "lvis" / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py",
    "lvis-loce": ROOT / "configs" / "lvis" / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py",
}


def _options(name: str, data: Path) -> list:
    ann = data / "annotations" / "lvis_v1_train.json"
    opts = [f"data.train.ann_file={ann}", f"data.train.img_prefix={data}/", "data.workers_per_gpu=0"]
    if name.startswith("lvis"):
        opts.append("model.backbone.init_cfg=None")  # no ImageNet download: speed does not depend on the weights
    return opts


def _peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS


def _peak_bytes(device: str) -> int:
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def bench_speed(name: str, device: str, modes, iters: int, warmup: int, lvis_root: str, batches_n: int = 2) -> dict:
    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from mmcv.parallel import MMDataParallel
    from mmcv.runner import build_optimizer
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector

    from loce_cli.engine.config.loading import load_config
    from loce_cli.mmdet_ext import fill_memory
    from loce_cli.mmdet_ext.amp import AmpState, fp32_head_outputs

    data = existing_synthetic_data() if name == "synth" else lvis_like_data(lvis_root)
    cfg = load_config(CONFIGS[name], _options(name, data))
    torch.manual_seed(0)
    dataset = build_dataset(cfg.data.train)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    model.CLASSES = dataset.CLASSES
    fp32_head_outputs(model)  # as loce train does under --amp (a no-op on fp32 outputs)
    if device == "cuda":
        model = model.cuda()
    wrapped = MMDataParallel(model, device_ids=[0] if device == "cuda" else None)
    if hasattr(model.roi_head, "memory"):
        fill_memory(wrapped, dataset, max_images=8)
    wrapped.train()
    optimizer = build_optimizer(wrapped, cfg.optimizer)
    loader = build_dataloader(dataset, cfg.data.samples_per_gpu, 0, num_gpus=1, dist=False, seed=0, shuffle=True)
    batches = list(itertools.islice(loader, batches_n))
    amps = {m: (None if m == "fp32" else AmpState(m, device)) for m in modes}

    def step(mode: str, batch) -> tuple:
        amp = amps[mode]
        _peak_reset(device)
        t0 = time.perf_counter()
        with amp.autocast() if amp is not None else torch.autocast(device_type=device, enabled=False):
            out = wrapped.train_step(batch, optimizer)
        optimizer.zero_grad()
        if amp is not None and amp.scaler is not None:
            amp.scaler.scale(out["loss"]).backward()
            amp.scaler.step(optimizer)
            amp.scaler.update()
        else:
            out["loss"].backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, _peak_bytes(device), float(out["loss"].detach())

    times = {m: [] for m in modes}
    peaks = {m: [] for m in modes}
    losses = {m: [] for m in modes}
    for i in range(warmup + iters):
        order = list(modes) if i % 2 == 0 else list(reversed(modes))
        for mode in order:
            t, peak, loss = step(mode, batches[i % len(batches)])
            if i >= warmup:
                times[mode].append(t)
                peaks[mode].append(peak)
                losses[mode].append(loss)
    med = {m: statistics.median(v) for m, v in times.items()}
    peak = {m: max(v) for m, v in peaks.items()}
    shape = tuple(batches[0]["img"].data[0].shape)
    return dict(config=name, device=device, batch_shape=shape, iters=iters, warmup=warmup, seconds=med,
                peak_bytes=peak, finite=all(all(x == x and abs(x) != float("inf") for x in v) for v in losses.values()),
                speedup={m: med["fp32"] / med[m] for m in modes}, memory_ratio={m: peak[m] / peak["fp32"]
                                                                                for m in modes})


def _summary(report) -> dict:
    return {f"{m}_{k}": 100 * report.metrics[m].summary[k] for m in report.metrics for k in ("AP", "APr", "APc", "APf")}


def quality(runs, base: Path, data: Path, work: Path, reference: str) -> dict:
    """``runs``: ``[(amp, seed)]`` fine-tunes done here, in that order (``amp`` None: fp32). For a seed with a
    bf16 run but no fp32 one here, the fp32 side is ``reference`` (a metrics.json path with ``{seed}``: the
    reproduction's run of the same recipe, base and data), marked so."""
    from loce_cli.engine.evaluation import EvalRequest, evaluate_model, read_report
    from loce_cli.engine.training.run import TrainRequest, train

    ann = data / "annotations"
    train_opts = [f"data.train.ann_file={ann / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/"]
    test_opts = [f"data.{s}.{k}" for s in ("val", "test") for k in ("ann_file", "img_prefix")]
    test_opts = [f"{o}={ann / 'lvis_v1_val.json' if o.endswith('ann_file') else f'{data}/'}" for o in test_opts]
    rows = []
    for amp, seed in runs:
        run = work / f"{amp or 'fp32'}_seed{seed}"
        t0 = time.perf_counter()
        result = train(TrainRequest(config=str(CONFIGS["synth"]), stage="finetune", work_dir=str(run),
                                    base_checkpoint=str(base), seed=seed, cfg_options=train_opts, force=True,
                                    amp=amp))  # as scripts/experiments/reproduce.py runs it, plus --amp
        seconds = time.perf_counter() - t0
        report = evaluate_model(EvalRequest(str(CONFIGS["synth"]), result.checkpoint, str(run / "eval"),
                                            cfg_options=train_opts + test_opts, force=True))
        row = dict(seed=seed, amp=amp or "fp32", source="here", train_seconds=seconds, **_summary(report))
        rows.append(row)
        print(json.dumps(row), flush=True)
    for seed in sorted({s for a, s in runs if a == "bf16"} - {s for a, s in runs if a is None}):
        path = Path(reference.format(seed=seed))
        if path.is_file():
            rows.append(dict(seed=seed, amp="fp32", source=str(path), **_summary(read_report(path))))
    diffs = {}
    for key in ("bbox_APr", "bbox_AP", "segm_APr", "segm_AP"):
        per_seed = {}
        for seed in sorted({r["seed"] for r in rows}):
            b = [r[key] for r in rows if r["seed"] == seed and r["amp"] == "bf16"]
            f = [r[key] for r in rows if r["seed"] == seed and r["amp"] == "fp32"]
            if b and f:
                per_seed[seed] = b[0] - f[0]
        diffs[key] = dict(per_seed=per_seed, mean=statistics.mean(per_seed.values()) if per_seed else None)
    return dict(runs=rows, bf16_minus_fp32=diffs, base=str(base), data=str(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="synth,lvis", help="comma-separated: synth, lvis, lvis-loce")
    ap.add_argument("--modes", default=None, help="default: fp32,bf16 (+ fp16 on CUDA)")
    ap.add_argument("--iters", type=int, default=5, help="timed rounds (each mode once per round)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--lvis-root", default="/tmp/loce_bench_amp_lvis", help="LVIS-shaped data (made when missing)")
    ap.add_argument("--quality", action="store_true", help="the fine-tune quality comparison instead of speed")
    ap.add_argument("--runs", default="bf16:0,fp32:0,bf16:1,fp32:1",
                    help="with --quality: the fine-tunes to run here, in order, as amp:seed")
    ap.add_argument("--reference", default=str(REPRO / "loce_seed{seed}" / "eval" / "metrics.json"),
                    help="fp32 metrics.json for a seed whose fp32 run is not in --runs ({seed} is replaced)")
    ap.add_argument("--base", default=str(REPRO / "base" / "epoch_6.pth"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--work", default="/tmp/loce_bench_amp_quality")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device == "cuda" else ""), flush=True)
    if args.quality:
        runs = [(None if a == "fp32" else a, int(s)) for a, s in (r.split(":") for r in args.runs.split(","))]
        data = Path(args.data) if args.data else existing_synthetic_data()
        out = quality(runs, Path(args.base), data, Path(args.work), args.reference)
        for key, d in out["bf16_minus_fp32"].items():
            if d["mean"] is not None:
                per = ", ".join(f"seed {s}: {x:+.2f}" for s, x in d["per_seed"].items())
                print(f"{key}: bf16 - fp32 = {d['mean']:+.2f} points ({per})")
    else:
        modes = args.modes.split(",") if args.modes else (["fp32", "bf16", "fp16"] if args.device == "cuda"
                                                           else ["fp32", "bf16"])
        out = dict(results=[])
        for name in args.configs.split(","):
            r = bench_speed(name, args.device, modes, args.iters, args.warmup, args.lvis_root)
            out["results"].append(r)
            line = " | ".join(f"{m} {r['seconds'][m] * 1e3:.0f} ms, peak {r['peak_bytes'][m] / 2 ** 30:.2f} GiB"
                              for m in modes)
            ratios = ", ".join(f"{m}: {r['speedup'][m]:.2f}x it/s, {r['memory_ratio'][m]:.2f}x memory"
                               for m in modes if m != "fp32")
            print(f"{name} ({r['batch_shape']}, {args.device}): {line}; vs fp32 {ratios} (median of {args.iters}, "
                  f"interleaved; losses finite: {r['finite']})", flush=True)
    write_figures(args.json, out, rows(out))


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    out = []
    for r in f.get("results", []):
        for m in r["speedup"]:
            if m != "fp32":
                out.append((f"{m} training iteration, {r['config']} config, {r['device']}: iterations/s "
                            f"(peak memory {r['memory_ratio'][m]:.2f}x)", "fp32", ratio_text(r["speedup"][m]), "-"))
    for key, d in (f.get("bf16_minus_fp32") or {}).items():
        if d["mean"] is not None:
            out.append((f"bf16 fine-tune {key} (points, mean over seeds)", "fp32", f"{d['mean']:+.2f}", "-"))
    return out


if __name__ == "__main__":
    main()

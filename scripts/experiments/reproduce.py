"""Small-scale reproduction of the LOCE paper's ablation on the synthetic long-tailed data (``make reproduce``).

For each data seed: generate the data, train one base model, then fine-tune every variant from that same base
checkpoint with the same schedule for each fine-tune seed, evaluate each with ``loce eval`` and tabulate with
``loce report`` (mean and spread over fine-tune seeds) into ``docs/REPRODUCTION.md``'s tables.
Every step is skipped when its output exists, so an interrupted run continues where it stopped.

    .venv/bin/python scripts/experiments/reproduce.py --work-dir work/reproduce            # everything (~2 h on 2 cores)
    .venv/bin/python scripts/experiments/reproduce.py --data-seeds 0 --ft-seeds 0 1        # one data seed
    .venv/bin/python scripts/experiments/reproduce.py --protocols standard fixed pooled --variants plain loce \
        --protocols-only --doc docs/REPRODUCTION.md      # AP / AP-fixed / AP-pool of the runs that exist

With ``--protocols`` every run is also evaluated under those protocols (``loce eval --protocol ...``: one
inference with no per-image cap, AP-fixed / AP-pool next to AP) into ``<run>/eval_protocols``, and tabulated
into the doc's protocol section. ``--protocols-only`` trains nothing and runs no standard evaluation: it
evaluates the checkpoints that exist under the protocols and tabulates them. ``--one-eval`` (with ``--protocols``)
evaluates each run once, under the protocols, right after its fine-tune: that evaluation's AP rows are the standard
evaluation's numbers (tested), so a second inference is saved.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench.common: the loce binary, found as the benchmarks find it
from bench.common import loce_binary  # noqa: E402

SYNTH = ROOT / "configs" / "synthetic"
BASE_CONFIG = SYNTH / "mask_rcnn_r18_fpn_normed_synth.py"
BASE_EPOCHS = 6
FT_EPOCHS = 2
# name -> (config, what it is); the order is the table's
VARIANTS = {
    "plain": ("ablation_plain_ft_synth.py", "plain fine-tune (CE, random sampling)"),
    "ebl": ("ablation_ebl_synth.py", "+ EBL"),
    "mfs": ("ablation_mfs_synth.py", "+ MFS (CE)"),
    "loce": ("loce_mask_rcnn_r18_fpn_normed_synth.py", "LOCE (EBL + MFS)"),
    "rfs": ("ablation_rfs_synth.py", "RFS (t=0.1), CE"),
    "rfs_loce": ("ablation_rfs_loce_synth.py", "RFS (t=0.1) + LOCE"),
    # the strongest alternatives, each a decoupled fine-tune from the same base with LOCE's schedule (issue 20)
    "seesaw": ("baseline_seesaw_synth.py", "Seesaw loss"),
    "eqlv2": ("baseline_eqlv2_synth.py", "EQLv2"),
    "fed": ("baseline_federated_synth.py", "federated loss"),
    "crt": ("baseline_crt_synth.py", "cRT (class-balanced sampling, CE)"),
}
BASELINES = {"seesaw", "eqlv2", "fed", "crt"}  # no LOCE mean-score tracker or memory to inspect
# --box-only: box-only data (loce data synth --no-masks), the Faster R-CNN base and its two fine-tunes (issue 28)
BOX_BASE_CONFIG = SYNTH / "faster_rcnn_r18_fpn_synth.py"
BOX_VARIANTS = {
    "plain": ("ablation_plain_ft_faster_synth.py", "plain fine-tune (CE, random sampling), Faster R-CNN"),
    "loce": ("loce_faster_rcnn_r18_fpn_synth.py", "LOCE (EBL + MFS), Faster R-CNN"),
}


def run(cmd, log: Path) -> None:
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    t = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        rc = subprocess.call([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT)
    print(f"  -> exit {rc} in {time.perf_counter() - t:.0f} s (log: {log})", flush=True)
    if rc != 0:
        sys.exit(f"reproduce: step failed (exit {rc}); see {log}")


def data_options(data: Path, wrapped: bool, test: bool = True):
    """--cfg-options pointing a synthetic config at ``data`` (RFS configs wrap data.train in a dataset)."""
    ann = data / "annotations"
    train = "data.train.dataset" if wrapped else "data.train"
    opts = [f"{train}.ann_file={ann / 'lvis_v1_train.json'}", f"{train}.img_prefix={data}/"]
    if test:
        for split in ("val", "test"):
            opts += [f"data.{split}.ann_file={ann / 'lvis_v1_val.json'}", f"data.{split}.img_prefix={data}/"]
    return [part for opt in opts for part in ("--cfg-options", opt)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", type=Path, default=ROOT / "work" / "reproduce")
    ap.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--ft-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    ap.add_argument("--box-only", action="store_true",
                    help="box-only data (data synth --no-masks), Faster R-CNN base, plain vs LOCE fine-tune; tables "
                         "between the doc's box-only markers")
    ap.add_argument("--variant-major", action="store_true",
                    help="all seeds of one variant before the next (default: every variant of a seed first)")
    ap.add_argument("--report-only", action="store_true", help="only tabulate the runs that are done")
    ap.add_argument("--protocols", nargs="+", default=None, choices=["standard", "fixed", "pooled"],
                    help="also evaluate each run under these protocols into <run>/eval_protocols")
    ap.add_argument("--protocols-only", action="store_true",
                    help="with --protocols: no training, no standard evaluation; only the checkpoints that exist")
    ap.add_argument("--one-eval", action="store_true",
                    help="with --protocols: evaluate each run once, under the protocols (its AP rows are the standard "
                         "evaluation's numbers), instead of a standard evaluation and then a protocol one; the "
                         "standard tables then read <run>/eval_protocols")
    ap.add_argument("--doc", type=Path, default=None,
                    help="write the tables into this markdown file between its reproduce.py markers")
    args = ap.parse_args(argv)
    global BASE_CONFIG, START, END
    if args.box_only:  # the same steps on box-only data, with the box-only configs and their own doc section
        BASE_CONFIG, START, END = BOX_BASE_CONFIG, BSTART, BEND
        VARIANTS.clear()
        VARIANTS.update(BOX_VARIANTS)
    args.variants = args.variants or list(VARIANTS)
    loce = loce_binary()
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "reproduce.log"

    if args.protocols_only and not args.protocols:
        sys.exit("reproduce: --protocols-only needs --protocols")
    if args.one_eval and not args.protocols:
        sys.exit("reproduce: --one-eval needs --protocols")
    sub = "eval_protocols" if args.one_eval else "eval"  # where each run's standard numbers are read
    if args.protocols_only:
        if not args.report_only:
            evaluate_protocols(loce, work, args, log)
        if args.doc:
            sections = protocol_sections(loce, work, args)
            if sections:
                write_doc(args.doc, "\n\n".join(sections), work, PSTART, PEND)
        return
    for d in args.data_seeds if not args.report_only else []:
        root = work / f"data{d}"
        data = root / "data"
        if not (data / "annotations" / "lvis_v1_val.json").is_file():
            run([loce, "data", "synth", "--out", data, "--seed", d, "--force",
                 *(["--no-masks"] if args.box_only else [])], log)
        base = root / "base" / f"epoch_{BASE_EPOCHS}.pth"
        if not base.is_file():
            run([loce, "train", "base", BASE_CONFIG, "--work-dir", root / "base", "--seed", 0, "--force",
                 *data_options(data, False, test=False)], log)
        if not args.one_eval and not (root / "base" / "eval" / "metrics.json").is_file():
            run([loce, "eval", BASE_CONFIG, base, "--out", root / "base" / "eval", "--force",
                 *data_options(data, False)], log)
        # by default seeds outer, variants inner: a partial run still has every variant for the first seed
        order = [(name, s) for name in args.variants for s in args.ft_seeds] if args.variant_major else \
            [(name, s) for s in args.ft_seeds for name in args.variants]
        for name, s in order:
            config = SYNTH / VARIANTS[name][0]
            wrapped = name.startswith("rfs")
            run_dir = root / f"{name}_seed{s}"
            ckpt = run_dir / f"epoch_{FT_EPOCHS}.pth"
            if not ckpt.is_file():
                run([loce, "finetune", config, "--from", base, "--work-dir", run_dir, "--seed", s, "--force",
                     *data_options(data, wrapped, test=False)], log)
            if args.one_eval:
                evaluate_protocols(loce, work, args, log, only=ckpt)
            elif not (run_dir / "eval" / "metrics.json").is_file():
                run([loce, "eval", config, ckpt, "--out", run_dir / "eval", "--force",
                     *data_options(data, wrapped)], log)
    if args.protocols and not args.report_only:
        evaluate_protocols(loce, work, args, log)

    sections = []
    for d in args.data_seeds:
        root = work / f"data{d}"
        runs = report_runs(root, args.variants, sub)
        if not runs:
            continue
        for fmt in ("md", "csv"):
            out = work / f"report_data{d}.{fmt}"
            with open(out, "w") as f:
                if subprocess.call([loce, "report", *runs, "--format", fmt], stdout=f) != 0:
                    sys.exit(f"reproduce: loce report failed for data seed {d}")
            print(f"wrote {out}")
        subprocess.call([loce, "report", *runs, "--metric", "bbox", "--plot", work / f"report_data{d}.png"],
                        stdout=subprocess.DEVNULL)
        seeds = sorted({int(p.parent.parent.name.rsplit("seed", 1)[1]) for p in root.glob(f"*_seed*/{sub}/metrics.json")})
        sections.append(f"### Data seed {d} (fine-tune seeds {', '.join(map(str, seeds))}; mean ± sd over seeds)\n\n"
                        + (work / f"report_data{d}.md").read_text().strip() + "\n\n" + state_table(loce, root, args.variants)
                        + "\n\n" + timing_table(root, args.variants))
    if args.doc and sections:
        write_doc(args.doc, "\n\n".join(sections), work, START, END)
    if args.doc and args.protocols:
        psections = protocol_sections(loce, work, args)
        if psections:
            write_doc(args.doc, "\n\n".join(psections), work, PSTART, PEND)


def _protocol_runs(work: Path, args):
    """(data seed, label, config, checkpoint, out dir, wrapped) of every checkpoint that exists."""
    for d in args.data_seeds:
        root = work / f"data{d}"
        base = root / "base" / f"epoch_{BASE_EPOCHS}.pth"
        if base.is_file():
            yield d, "base model, no fine-tune", BASE_CONFIG, base, root / "base" / "eval_protocols", False
        for name in args.variants:
            for s in args.ft_seeds:
                ckpt = root / f"{name}_seed{s}" / f"epoch_{FT_EPOCHS}.pth"
                if ckpt.is_file():
                    yield (d, VARIANTS[name][1], SYNTH / VARIANTS[name][0], ckpt,
                           root / f"{name}_seed{s}" / "eval_protocols", name.startswith("rfs"))


def evaluate_protocols(loce: str, work: Path, args, log: Path, only: Optional[Path] = None) -> None:
    """``loce eval --protocol ...`` of every finished checkpoint (or of ``only``, and of its base model) into
    ``<run>/eval_protocols`` (skipped when done): one inference without the per-image cap serves AP, AP-fixed and
    AP-pool."""
    flags = [part for p in args.protocols for part in ("--protocol", p)]
    for d, _label, config, ckpt, out, wrapped in _protocol_runs(work, args):
        if only is not None and ckpt != only and ckpt.parent.name != "base":
            continue
        if not (out / "metrics.json").is_file():
            run([loce, "eval", config, ckpt, "--out", out, "--force", *flags,
                 *data_options(work / f"data{d}" / "data", wrapped)], log)


def report_runs(root: Path, variants, sub: str) -> list:
    """``loce report`` arguments ``label=glob`` for the variants evaluated in ``<run>/<sub>`` under ``root``
    (all fine-tune seeds of a variant together), then the base model; empty when no variant is evaluated."""
    runs = [f"{VARIANTS[name][1]}={root}/{name}_seed*/{sub}" for name in variants
            if sorted(root.glob(f"{name}_seed*/{sub}/metrics.json"))]
    if runs and (root / "base" / sub / "metrics.json").is_file():
        runs.append(f"base model, no fine-tune={root}/base/{sub}")
    return runs


def protocol_sections(loce: str, work: Path, args) -> list:
    """Per data seed: ``loce report`` of the protocol evaluations (rows per metric and protocol)."""
    sections = []
    for d in args.data_seeds:
        root = work / f"data{d}"
        runs = report_runs(root, args.variants, "eval_protocols")
        if not runs:
            continue
        out = work / f"report_protocols_data{d}.md"
        with open(out, "w") as f:
            if subprocess.call([loce, "report", *runs, "--format", "md",
                                *[part for p in args.protocols for part in ("--protocol", p)]], stdout=f) != 0:
                sys.exit(f"reproduce: loce report failed for data seed {d}")
        print(f"wrote {out}")
        seeds = sorted({int(p.parent.parent.name.rsplit("seed", 1)[1])
                        for p in root.glob("*_seed*/eval_protocols/metrics.json")})
        sections.append(f"### Data seed {d}, AP / AP-fixed / AP-pool (fine-tune seeds {', '.join(map(str, seeds))}; "
                        "mean ± sd over seeds)\n\n" + out.read_text().strip())
    return sections


def state_table(loce: str, root: Path, variants) -> str:
    """Mean classification score per frequency group (the tracker's ``s``, ``loce inspect scores``) and memory
    fill (``loce inspect memory``) at the end of each variant's fine-tune, seed 0."""
    import json

    rows = ["| variant | mean score s: rare | common | frequent | rare / frequent | memory: full / partial / empty "
            "queues (rare) |", "|---|---:|---:|---:|---:|---|"]
    for name in variants:
        ckpt = root / f"{name}_seed0" / f"epoch_{FT_EPOCHS}.pth"
        if name in BASELINES or not ckpt.is_file():
            continue
        scores = json.loads(subprocess.run([loce, "inspect", "scores", ckpt, "--json"], capture_output=True,
                                           text=True, check=True).stdout)["groups"]
        mem = json.loads(subprocess.run([loce, "inspect", "memory", ckpt, "--json"], capture_output=True, text=True,
                                        check=True).stdout)
        r = mem["fill"]["rare"]
        fill = f"{r['full']} / {r['partial']} / {r['empty']}" if mem["stored_features"] else "memory off"
        g = {k: scores[k]["mean"] for k in ("rare", "common", "frequent")}
        rows.append(f"| {VARIANTS[name][1]} | {g['rare']:.3f} | {g['common']:.3f} | {g['frequent']:.3f} | "
                    f"{g['rare'] / g['frequent']:.2f} | {fill} |")
    return "State at the end of the fine-tune (seed 0):\n\n" + "\n".join(rows)


def iteration_seconds(run_dir: Path):
    """Median seconds per training iteration of a run, from mmcv's json log (each line averages its interval);
    the first interval (warm-up of caches, memory init) is left out. None without a log."""
    import json
    import statistics

    times = []
    for log in sorted(run_dir.glob("*.log.json")):
        for line in log.read_text().splitlines():
            rec = json.loads(line) if line.startswith("{") else {}
            if rec.get("mode") == "train" and "time" in rec:
                times.append(float(rec["time"]))
    return statistics.median(times[1:]) if len(times) > 1 else None


def timing_table(root: Path, variants) -> str:
    """Median s/iteration of each variant's fine-tunes (all seeds) and its ratio to the plain fine-tune's. The runs
    are sequential on a shared machine, so only large ratios mean anything."""
    rows = ["| variant | s / iteration (median over seeds) | vs plain fine-tune |", "|---|---:|---:|"]
    per = {}
    for name in variants:
        vals = [t for d in sorted(root.glob(f"{name}_seed*")) if (t := iteration_seconds(d)) is not None]
        if vals:
            per[name] = sorted(vals)[len(vals) // 2]
    for name, t in per.items():
        ratio = f"{t / per['plain']:.2f}x" if "plain" in per else "-"
        rows.append(f"| {VARIANTS[name][1]} | {t:.3f} | {ratio} |")
    return "Fine-tune iteration time (4 images per iteration, 2 CPU cores, from the training logs):\n\n" + \
        "\n".join(rows)


START, END = "<!-- reproduce.py tables: start -->", "<!-- reproduce.py tables: end -->"
PSTART, PEND = "<!-- reproduce.py protocol tables: start -->", "<!-- reproduce.py protocol tables: end -->"
BSTART, BEND = "<!-- reproduce.py box-only tables: start -->", "<!-- reproduce.py box-only tables: end -->"


def write_doc(doc: Path, tables: str, work: Path, START: str = START, END: str = END) -> None:
    """Replace the generated part of ``doc`` (between the markers) with ``tables``; the prose stays."""
    text = doc.read_text() if doc.is_file() else f"# Reproduction\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        sys.exit(f"reproduce: {doc} lacks the markers {START} / {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    stamp = f"_Generated by `scripts/experiments/reproduce.py` from the runs in `{work.relative_to(ROOT) if work.is_relative_to(ROOT) else work}`._"
    doc.write_text(f"{head}{START}\n{stamp}\n\n{tables}\n{END}{tail}")
    print(f"updated {doc}")


if __name__ == "__main__":
    main()

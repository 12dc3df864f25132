"""`make pictures`: the README's pictures from the quickstart (docs/img/quickstart_*.png).

Runs `loce quickstart` in WORK_DIR (default work/quickstart; every finished step is skipped, so on a machine
that already ran `make demo` only the missing steps run; its predictions/ are always made again), then copies the first side-by-side picture of the
quickstart's predictions (ground truth | base | LOCE on the val image where LOCE finds the most rare objects
that the base model misses) and writes the
`loce report --plot` figure of base vs LOCE, the LOCE model's `loce inspect memory --plot` figure and the
`loce analyze --compare --plot` figure of LOCE against the base model (docs/EVALUATION.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "docs" / "img"
PREDICTIONS = OUT / "quickstart_predictions.png"
REPORT = OUT / "quickstart_report.png"  # loce report --plot also writes quickstart_report_groups.png
MEMORY = OUT / "quickstart_memory.png"
ANALYSIS = OUT / "quickstart_analysis.png"  # loce analyze eval/loce --compare eval/base --plot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=ROOT / "work" / "quickstart")
    args = parser.parse_args()

    from loce_cli.engine.analysis import analyze, compare, headline
    from loce_cli.engine.inspect.state import inspect_memory
    from loce_cli.engine.pictures.analysis_plots import plot_analysis
    from loce_cli.engine.pictures.inspect_plots import plot_memory
    from loce_cli.engine.quickstart.steps import run_quickstart
    from loce_cli.engine.quickstart.pictures import pictures_done
    from loce_cli.engine.report.runs import build_report
    from loce_cli.engine.pictures.report_plots import plot_report
    from loce_cli.mmdet_ext.runner import newest_checkpoint

    work = args.work_dir
    shutil.rmtree(work / "predictions", ignore_errors=True)  # always drawn by this tree's code (16 s)
    run_quickstart(work, echo=print)
    manifest = pictures_done(work)
    if not manifest or not manifest["pictures"]:
        print(f"error: no side-by-side pictures in {work / 'predictions'}", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = PREDICTIONS.with_name(f".{PREDICTIONS.name}.tmp")
    shutil.copyfile(manifest["pictures"][0]["file"], tmp)
    tmp.replace(PREDICTIONS)
    report = build_report([f"base={work / 'eval' / 'base'}", f"loce={work / 'eval' / 'loce'}"])
    written = plot_report(report, REPORT, metric="bbox")
    written.append(plot_memory(inspect_memory(Path(newest_checkpoint(str(work / "loce")))), MEMORY))
    comparison = compare(analyze(work / "eval" / "loce"), analyze(work / "eval" / "base"))
    written.append(plot_analysis(comparison, ANALYSIS))
    for line in headline(comparison):
        print(line)
    print(f"rare val objects found at score >= {manifest['score_thr']:g}: {manifest['rare_found']} of "
          f"{manifest['rare_objects']}; picture: image {manifest['pictures'][0]['image_id']}, "
          f"{manifest['pictures'][0]['rare_found']}")
    for path in [PREDICTIONS, *written]:
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

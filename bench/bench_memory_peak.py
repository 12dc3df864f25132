"""Peak host memory of the feature memory at LVIS v1 scale (1203 classes x 80 slots x 256 x 7 x 7) per storage
dtype: each dtype in its own child process, every slot written (so every page is committed), peak RSS of the
child minus its RSS before the memory was built (torch imported, one batch of features allocated).

    .venv/bin/python bench/bench_memory_peak.py [--classes 1203] [--queue 80] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: loce_cli, bench.common
from bench.common import child_json, ratio_text, write_figures  # noqa: E402

CHILD = r"""
import json, resource, sys, torch
from loce_cli.core.memory_bank import FeatureMemory
classes, queue, dtype = int(sys.argv[1]), int(sys.argv[2]), getattr(torch, sys.argv[3])
torch.manual_seed(0)
batch = torch.randn(640, 256, 7, 7)
reg = torch.randn(640, 4)
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
before = rss_mb()
mem = FeatureMemory(classes, queue, (256, 7, 7), dtype=dtype)
labels = torch.arange(classes).repeat_interleave(queue)
for start in range(0, labels.numel(), 640):  # every slot of every class written once
    lab = labels[start:start + 640]
    mem.push(batch[:lab.numel()], lab, reg[:lab.numel()])
assert int(mem.counts.min()) == queue
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(dtype=sys.argv[3], nbytes_mb=mem.nbytes() / 2**20, before_mb=before, peak_mb=peak,
                      added_mb=peak - before)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1203)
    ap.add_argument("--queue", type=int, default=80)
    ap.add_argument("--json", type=str, default=None, help="write the figures to this file")
    args = ap.parse_args()
    dtypes = []
    print(f"feature memory, {args.classes} classes x {args.queue} slots x 256 x 7 x 7, every slot written")
    print(f"{'dtype':10s}{'nbytes':>12s}{'peak RSS added':>17s}{'ratio':>8s}")
    for dtype in ("float32", "float16", "bfloat16"):
        row = child_json(["-c", CHILD, args.classes, args.queue, dtype], f"the {dtype} memory")
        dtypes.append(row)
        print(f"{dtype:10s}{row['nbytes_mb'] / 1024:10.2f} GB{row['added_mb'] / 1024:14.2f} GB"
              f"{row['added_mb'] / row['nbytes_mb']:8.2f}")
    figures = dict(classes=args.classes, queue=args.queue, dtypes=dtypes)
    write_figures(args.json, figures, rows(figures))


def rows(f: dict) -> list:
    """(figure, against, ratio, goal) rows of docs/BENCHMARKS.md from this bench's figures."""
    return [(f"peak host memory added by the LVIS v1 feature memory ({row['dtype']}): {row['added_mb'] / 1024:.2f} GB",
             "its nbytes()", ratio_text(row["added_mb"] / row["nbytes_mb"]), "-") for row in f["dtypes"]]


if __name__ == "__main__":
    main()

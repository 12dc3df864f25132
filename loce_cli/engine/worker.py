"""Entry point of each process started by torchrun / srun: ``python -m loce_cli.engine.worker SPEC``.
SPEC is a JSON file written by the launching command: ``kind`` ("train" or "eval") and that request's fields."""

from __future__ import annotations

import json
import sys

from loce_cli.engine.evaluation import EvalRequest, run_eval_worker
from loce_cli.engine.runtime.launch import LaunchOptions
from loce_cli.engine.training.run import TrainRequest, run_worker
from loce_cli.errors import LoceError


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    kind = spec.pop("kind", "train")
    spec["launch"] = LaunchOptions(**spec["launch"])
    started_by_loce = spec["launch"].launcher == "none"
    spec["launch"].launcher = "pytorch" if started_by_loce else spec["launch"].launcher
    try:
        if kind == "eval":
            run_eval_worker(EvalRequest(**spec))
        else:
            run_worker(TrainRequest(**spec))
    except LoceError as e:
        stopped = getattr(e, "prefix", "") == "stopped"
        if stopped and started_by_loce:
            return 0  # a planned stop: rank 0 left a note that the launching `loce` reports (exit code and all)
        print(f"{getattr(e, 'prefix', 'error')}: {e.one_line()}", file=sys.stderr)
        return e.exit_code if stopped else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Entry point of each training process started by torchrun / srun: ``python -m loce_cli.engine.worker SPEC``."""

from __future__ import annotations

import json
import sys

from loce_cli.engine.train import LaunchOptions, TrainRequest, run_worker
from loce_cli.errors import LoceError


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    spec["launch"] = LaunchOptions(**spec["launch"])
    spec["launch"].launcher = "pytorch" if spec["launch"].launcher == "none" else spec["launch"].launcher
    try:
        run_worker(TrainRequest(**spec))
    except LoceError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

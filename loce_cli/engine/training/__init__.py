"""Training runs: ``loce train base`` / ``loce finetune`` (``run``), resuming and stopping (``resume``), and the
command a finished run suggests next (``next_step``)."""

from loce_cli.engine.training.next_step import next_command
from loce_cli.engine.training.resume import TrainingStopped
from loce_cli.engine.training.run import TrainRequest, TrainResult, default_work_dir, train

__all__ = ["TrainRequest", "TrainResult", "TrainingStopped", "default_work_dir", "next_command", "train"]

"""How commands run: processes (torchrun, nodes, Slurm: ``launch``), stop signals through torchrun
(``supervise``), one live run per folder (``locks``) and mixed precision (``amp``)."""

from loce_cli.engine.runtime.launch import LAUNCHERS, LaunchOptions, check_launch, env_rank, init_distributed
from loce_cli.engine.runtime.locks import RunInProgressError, locked, takes_lock

__all__ = ["LAUNCHERS", "LaunchOptions", "RunInProgressError", "check_launch", "env_rank", "init_distributed",
           "locked", "takes_lock"]

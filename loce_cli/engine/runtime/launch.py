"""Process launching shared by training and evaluation: checking the launch options, starting N processes per
node through ``torch.distributed.run``, and joining the process group inside each of them (torchrun or Slurm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.distributed as dist

from loce_cli.engine.runtime.supervise import run_forwarding_stop_signals, run_stopping_on_interrupt
from loce_cli.errors import LoceError, LoceUsageError

LAUNCHERS = ("none", "pytorch", "slurm")
# A testing switch (docs/MIXED_PRECISION.md): LOCE_SHARE_GPU=1 lets --gpus N run on fewer CUDA devices, the ranks
# sharing them round-robin over gloo (NCCL refuses two ranks on one device). It checks the multi-rank code paths
# on CUDA tensors on a one-GPU machine; it says nothing about NCCL or about speed.
SHARE_GPU_ENV = "LOCE_SHARE_GPU"


def shares_gpu() -> bool:
    return os.environ.get(SHARE_GPU_ENV) == "1"


@dataclass
class LaunchOptions:
    """How many processes, where. ``gpus`` (per node) or ``nproc`` (CPU processes per node, gloo)."""

    gpus: int = 0
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "none"
    device: Optional[str] = None  # "cpu" | "cuda" | None (cuda when --gpus, else cpu)

    def resolved_device(self) -> str:
        return self.device or ("cuda" if self.gpus > 0 else "cpu")

    def procs_per_node(self) -> int:
        return self.gpus if self.gpus > 0 else self.nproc

    def world_size(self) -> int:
        return self.procs_per_node() * self.nnodes

    def starts_processes(self) -> bool:
        """True when loce itself must start the processes (torchrun) instead of running in this one."""
        return self.launcher == "none" and self.world_size() > 1


def check_launch(launch: LaunchOptions) -> str:
    """Reject impossible launch options before anything starts; returns the device (cpu or cuda)."""
    if launch.launcher not in LAUNCHERS:
        raise LoceUsageError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launch.launcher!r}",
                             "none starts the processes itself")
    if launch.gpus < 0 or launch.nproc < 1 or launch.nnodes < 1:
        raise LoceUsageError("--gpus must be >= 0, --nproc and --nnodes >= 1", "e.g. --gpus 8 or --nproc 2")
    if launch.gpus > 0 and launch.nproc > 1:
        raise LoceUsageError("--gpus and --nproc exclude each other", "--gpus N for GPUs, --nproc N for CPU processes")
    if not 0 <= launch.node_rank < launch.nnodes:
        raise LoceUsageError(f"--node-rank {launch.node_rank} is outside 0..{launch.nnodes - 1}", "ranks start at 0")
    device = launch.resolved_device()
    if device not in ("cpu", "cuda"):
        raise LoceUsageError(f"--device must be cpu or cuda, got {device!r}", "cpu or cuda")
    if device == "cuda" and launch.launcher == "none":
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        want = max(launch.gpus, 1)
        if have < want and not (shares_gpu() and have >= 1):
            raise LoceUsageError(f"asked for {want} GPU(s) but this machine has {have} CUDA device(s)",
                                 "drop --gpus / --device cuda to run on the CPU, or use --nproc N for CPU processes")
    if device == "cpu" and launch.gpus > 0:
        raise LoceUsageError("--gpus with --device cpu", "use --nproc N for CPU processes")
    return device


def run_torchrun(launch: LaunchOptions, spec: dict, spec_path: Path, what: str, log_hint: str,
                 stop_signals: bool = False, failed=None) -> None:
    """Write ``spec`` to ``spec_path`` and run ``loce_cli.engine.worker`` on it in N processes per node;
    raise a one-line LoceError when any of them fails. ``stop_signals``: SIGTERM / SIGUSR1 / SIGINT go to the
    processes (which checkpoint and stop); else SIGINT / SIGTERM stop them all at once and raise
    ``KeyboardInterrupt`` once they are gone (:mod:`loce_cli.engine.runtime.supervise`). ``failed()``: a LoceError
    to raise instead of the generic one (or None)."""
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={launch.procs_per_node()}",
           f"--nnodes={launch.nnodes}", f"--node_rank={launch.node_rank}", f"--master_addr={launch.master_addr}",
           f"--master_port={launch.master_port}", "-m", "loce_cli.engine.worker", str(spec_path)]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    if stop_signals:
        returncode = run_forwarding_stop_signals(cmd, env)
    else:
        returncode = run_stopping_on_interrupt(cmd, env)
    error = failed() if failed is not None else None
    if error is not None:
        raise error
    if returncode != 0:
        raise LoceError(f"distributed {what} failed (torchrun exit code {returncode})", log_hint)


def env_rank() -> int:
    """This process's global rank as its launcher set it (torchrun's RANK, Slurm's SLURM_PROCID), else 0."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def init_distributed(launch: LaunchOptions) -> Tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment; initialises the process group."""
    env = os.environ
    if launch.launcher == "slurm" or ("SLURM_PROCID" in env and "RANK" not in env and launch.launcher != "none"):
        rank, world, local = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env["SLURM_LOCALID"])
        env.setdefault("MASTER_PORT", str(launch.master_port))
        if "MASTER_ADDR" not in env:
            nodes = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_NODELIST"]], capture_output=True,
                                   text=True, check=True).stdout.split()
            env["MASTER_ADDR"] = nodes[0]
        env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    else:
        rank, world, local = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    if world > 1 and not dist.is_initialized():
        device = launch.resolved_device()
        if device == "cuda":
            torch.cuda.set_device(local % torch.cuda.device_count())
        backend = "nccl" if device == "cuda" and not shares_gpu() else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    return rank, local, world

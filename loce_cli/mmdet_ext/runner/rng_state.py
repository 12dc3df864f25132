"""Every random stream of this process (torch CPU and CUDA, numpy, python) as checkpoint-safe values, and back:
what a checkpoint records to resume exactly, and what the evaluation hook puts back after evaluating."""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """torch (CPU, and this process's GPU once CUDA is in use) / numpy / python RNG states as tensors and tuples
    (loadable with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), numpy_keys=torch.from_numpy(keys.astype(np.int64)),
                 numpy_rest=(int(pos), int(has_gauss), float(cached)), python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # jitter and memory draws run on the GPU there
    return state


def set_rng_state(state: dict) -> None:
    """Put back every stream :func:`rng_state` recorded."""
    # a GPU resume loads the checkpoint onto the GPU (mmcv's map_location="default"): the states come back as CUDA
    # tensors, and torch / numpy take host tensors only
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))

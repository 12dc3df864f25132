"""The RNG states a checkpoint carries for an exact resume, including a resume on the GPU, where mmcv loads the
checkpoint (and with it the states) onto the GPU."""

import random

import numpy as np
import pytest
import torch

from loce_cli.mmdet_ext.runner.rng_state import rng_state, set_rng_state


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


class _OnDevice:
    """A state tensor as a GPU resume hands it over: usable only after ``.cpu()``."""

    def __init__(self, t):
        self._t = t

    def cpu(self):
        return self._t

    def numpy(self):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")


def test_states_round_trip():
    state = rng_state()
    first = _draws()
    set_rng_state(state)
    assert _draws() == first


def test_states_loaded_onto_a_device_are_brought_back_to_the_host():
    state = rng_state()
    first = _draws()
    moved = {k: _OnDevice(v) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    set_rng_state(moved)
    assert _draws() == first


@pytest.mark.gpu
def test_cuda_states_round_trip_from_the_gpu():
    torch.rand(1, device="cuda")  # CUDA in use: its generator is part of the state
    state = rng_state()
    assert "cuda" in state
    first = _draws(), torch.rand(3, device="cuda").tolist()
    set_rng_state({k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in state.items()})
    assert (_draws(), torch.rand(3, device="cuda").tolist()) == first

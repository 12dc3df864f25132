from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests skip without CUDA (imported lazily: collecting CLI tests must not need torch)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)


TINY = dict(num_classes=6, train_images=40, val_images=16, image_size=64, seed=3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic LVIS v1 dataset (6 classes, 40 + 16 images of 64 px). Treat as read-only."""
    from loce_cli.engine.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("tiny") / "data"
    synthesize(out, SynthOptions(**TINY))
    return out


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory):
    """The synthetic dataset with ``loce data synth`` defaults. Treat as read-only."""
    from loce_cli.engine.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("default") / "data"
    result = synthesize(out, SynthOptions())
    return out, result

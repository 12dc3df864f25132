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
    from loce_cli.engine.data.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("tiny") / "data"
    synthesize(out, SynthOptions(**TINY))
    return out


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory):
    """The synthetic dataset with ``loce data synth`` defaults. Treat as read-only."""
    from loce_cli.engine.data.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("default") / "data"
    result = synthesize(out, SynthOptions())
    return out, result


TINY_CLASSES = TINY["num_classes"]


def tiny_train_options(data: Path, epochs: int = 1) -> list:
    """--cfg-options that size the synthetic base config for ``tiny_dataset`` (a few CPU seconds an epoch)."""
    ann = data / "annotations"
    return [f"data.train.ann_file={ann / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/",
            f"data.test.ann_file={ann / 'lvis_v1_val.json'}", f"data.test.img_prefix={data}/",
            f"model.roi_head.bbox_head.num_classes={TINY_CLASSES}",
            f"model.roi_head.mask_head.num_classes={TINY_CLASSES}", f"runner.max_epochs={epochs}",
            "data.samples_per_gpu=4", "data.workers_per_gpu=0", "lr_config.warmup_iters=5", "log_config.interval=5"]


@pytest.fixture(scope="session")
def tiny_base_model(tiny_dataset, tmp_path_factory):
    """``(config, checkpoint, cfg_options)`` of a base model trained on ``tiny_dataset`` (2 epochs, 20 iterations),
    once per session, for the tests that need real detections (loce predict). Treat as read-only."""
    from loce_cli.engine.training.run import TrainRequest, train

    config = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
    work = tmp_path_factory.mktemp("tiny_base")
    options = tiny_train_options(tiny_dataset, epochs=2)
    # trained by the config's shipped name (tests/engine/test_config_names.py checks the run it leaves)
    result = train(TrainRequest(config="synthetic/mask_rcnn_r18_fpn_normed_synth", work_dir=str(work),
                                cfg_options=options))
    return config, Path(result.checkpoint), options

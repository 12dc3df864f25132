from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.shared_fixtures import built_once, one_at_a_time

if os.environ.get("PYTEST_XDIST_WORKER"):  # 2 workers on 2 cores: one compute thread each (and each loce they start)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests skip without CUDA (imported lazily: collecting CLI tests must not need torch); the files with
    the most ``slow`` tests run first (see :func:`_long_files_first`)."""
    _long_files_first(items)
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_items:
            item.add_marker(skip)


def _long_files_first(items) -> None:
    """`make test` runs the suite in 2 pytest-xdist workers, each test file one unit of work (``--dist loadfile``:
    a file's module fixtures are built once), handed out in collection order: the files with the most ``slow`` tests
    go first, so the long files start early and the two workers end close together."""
    def file_of(item) -> str:
        return item.nodeid.split("::")[0]
    slow: dict = {}
    for item in items:
        slow[file_of(item)] = slow.get(file_of(item), 0) + ("slow" in item.keywords)
    order = {name: i for i, name in enumerate(dict.fromkeys(file_of(item) for item in items))}
    items.sort(key=lambda item: (-slow[file_of(item)], order[file_of(item)]))


@pytest.fixture(autouse=True)
def _one_slurm_job_at_a_time(request, tmp_path_factory):
    """The ``slurm`` tests share one local Slurm node that runs one two-task job at a time: under xdist, a
    ``slurm`` test waits for the other worker's to end (else its job would queue, or it would skip on a busy node)."""
    if "slurm" not in request.keywords:
        yield
        return
    with one_at_a_time(tmp_path_factory, "slurm"):
        yield


TINY = dict(num_classes=6, train_images=40, val_images=16, image_size=64, seed=3)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic LVIS v1 dataset (6 classes, 40 + 16 images of 64 px). Treat as read-only."""
    from loce_cli.engine.data.synth import SynthOptions, synthesize

    def build(folder: Path) -> Path:
        synthesize(folder / "data", SynthOptions(**TINY))
        return folder / "data"
    return built_once(tmp_path_factory, "tiny", build)


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory):
    """The synthetic dataset with ``loce data synth`` defaults. Treat as read-only."""
    from loce_cli.engine.data.synth import SynthOptions, synthesize

    def build(folder: Path):
        return folder / "data", synthesize(folder / "data", SynthOptions())
    return built_once(tmp_path_factory, "default", build)


TINY_CLASSES = TINY["num_classes"]


def tiny_train_options(data: Path, epochs: int = 1) -> list:
    """--cfg-options that size the synthetic base config for ``tiny_dataset`` (a few CPU seconds an epoch)."""
    ann = data / "annotations"
    return [f"data.train.ann_file={ann / 'lvis_v1_train.json'}", f"data.train.img_prefix={data}/",
            f"data.test.ann_file={ann / 'lvis_v1_val.json'}", f"data.test.img_prefix={data}/",
            f"model.roi_head.bbox_head.num_classes={TINY_CLASSES}",
            f"model.roi_head.mask_head.num_classes={TINY_CLASSES}", f"runner.max_epochs={epochs}",
            "data.samples_per_gpu=4", "data.workers_per_gpu=0", "lr_config.warmup_iters=5", "log_config.interval=5"]


@dataclass(frozen=True)
class TinyRun:
    """A training run of the session: its work dir, ``TrainResult``, the config it was given and its options."""

    work: Path
    result: object
    config: Path
    options: list

    @property
    def checkpoint(self) -> Path:
        return Path(self.result.checkpoint)


SYNTH = Path(__file__).resolve().parents[1] / "configs" / "synthetic"
BASE_NAME = "synthetic/mask_rcnn_r18_fpn_normed_synth"


@pytest.fixture(scope="session")
def tiny_base_run(tiny_dataset, tmp_path_factory) -> TinyRun:
    """The session's one base training on ``tiny_dataset``: 2 epochs of 10 iterations, started by the config's
    shipped name (tests/engine/test_config_names.py checks the run it leaves), with ``--tensorboard``, and with
    ``evaluation.interval=1`` under ``--no-validate`` (test_train checks that nothing was evaluated). Its
    ``epoch_1.pth`` is the base of the fine-tune tests, its ``epoch_2.pth`` the model of the tests that need real
    detections. Read-only: a test that writes into a run copies it to its own ``tmp_path``."""
    from loce_cli.engine.training.run import TrainRequest, train

    options = tiny_train_options(tiny_dataset, epochs=2) + ["evaluation.interval=1"]

    def build(work: Path) -> TinyRun:
        result = train(TrainRequest(config=BASE_NAME, work_dir=str(work), cfg_options=options, no_validate=True,
                                    tensorboard=True))
        return TinyRun(work, result, SYNTH / "mask_rcnn_r18_fpn_normed_synth.py", options)
    return built_once(tmp_path_factory, "tiny_base", build)


@pytest.fixture(scope="session")
def tiny_base_model(tiny_base_run, tiny_dataset):
    """``(config, checkpoint, cfg_options)`` of the session's base model (``tiny_base_run``'s last epoch), for
    the tests that need real detections (loce predict, eval). Treat as read-only."""
    return tiny_base_run.config, tiny_base_run.checkpoint, tiny_train_options(tiny_dataset, epochs=2)


@pytest.fixture(scope="session")
def tiny_loce_run(tiny_base_run, tiny_dataset, tmp_path_factory) -> TinyRun:
    """The session's one LOCE fine-tune: 1 epoch from ``tiny_base_model``'s checkpoint, with
    ``tiny_train_options(epochs=1)``. Read-only (copy it to resume it)."""
    from loce_cli.engine.training.run import TrainRequest, train

    config = SYNTH / "loce_mask_rcnn_r18_fpn_normed_synth.py"
    options = tiny_train_options(tiny_dataset, epochs=1)

    def build(work: Path) -> TinyRun:
        result = train(TrainRequest(config=str(config), stage="finetune", work_dir=str(work),
                                    base_checkpoint=str(tiny_base_run.checkpoint), cfg_options=options))
        return TinyRun(work, result, config, options)
    return built_once(tmp_path_factory, "tiny_loce", build)

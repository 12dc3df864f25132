"""Session-wide LVIS-shaped datasets (``loce data synth --like``), prepared with ``loce data prep``, and a working
folder in which the shipped ``configs/lvis/*`` configs find them at their own ``data/lvis_v1/`` and
``data/lvis_v0.5/`` paths: the configs run exactly as shipped, only the data root (a symlink) is ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_fixtures import built_once


def _make(tmp_path_factory, like: str) -> Path:
    from loce_cli.engine.data.prep import prep_dataset
    from loce_cli.engine.data.synth_lvis import LvisLikeOptions, synthesize_lvis_like

    def build(folder: Path) -> Path:
        root = folder / "data"
        synthesize_lvis_like(root, LvisLikeOptions(like=like, seed=0))
        prep = prep_dataset(root, check_images="none")
        assert prep.ok, [p.message for _, p in prep.all_problems()]
        return root
    return built_once(tmp_path_factory, like, build)


@pytest.fixture(scope="session")
def lvis_v1_root(tmp_path_factory) -> Path:
    """An LVIS v1-shaped dataset (1203 classes, 1000 + 100 images), prepared. Treat as read-only."""
    return _make(tmp_path_factory, "lvis-v1")


@pytest.fixture(scope="session")
def lvis_v05_root(tmp_path_factory) -> Path:
    """An LVIS v0.5-shaped dataset (1230 classes, 1000 + 100 images), prepared. Treat as read-only."""
    return _make(tmp_path_factory, "lvis-v0.5")


@pytest.fixture(scope="session")
def lvis_workdir(tmp_path_factory, lvis_v1_root, lvis_v05_root) -> Path:
    """A folder holding ``data/lvis_v1`` and ``data/lvis_v0.5`` (symlinks to the datasets above): run from it,
    the shipped LVIS configs' relative data roots resolve to our data."""
    work = tmp_path_factory.mktemp("lvis_cwd")
    (work / "data").mkdir()
    (work / "data" / "lvis_v1").symlink_to(lvis_v1_root, target_is_directory=True)
    (work / "data" / "lvis_v0.5").symlink_to(lvis_v05_root, target_is_directory=True)
    return work


@pytest.fixture
def in_lvis_workdir(lvis_workdir, monkeypatch) -> Path:
    monkeypatch.chdir(lvis_workdir)
    return lvis_workdir

"""The package as a user installs it: a wheel built from this tree, installed into a fresh virtual environment
outside the checkout, run from a folder without configs/. The shipped configs must be in the wheel, listed by
``loce configs``, found by name, and train with their ``_base_`` chain read from the installed location.

The new environment borrows this one's packages (torch, mmcv, mmdet, ...) through a plain path line in a ``.pth``
file, added after the wheel is installed, so that neither pip nor Python sees this environment's editable loce."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(f"{p.parent.name}/{p.stem}" for group in ("lvis", "synthetic")
               for p in (ROOT / "configs" / group).glob("*.py"))


def _run(args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{args}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(venv, env, cwd, wheel)``: the wheel installed in a fresh venv; ``env`` without this checkout on
    PYTHONPATH; ``cwd`` an empty folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    src = tmp / "src"  # a clean copy: no build/ left over from earlier builds can leak into the wheel
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "configs", src / "configs", ignore=ignore)
    shutil.copytree(ROOT / "loce_cli", src / "loce_cli", symlinks=True, ignore=ignore)  # keeps the configs link
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src], env=env)
    wheel = next((tmp / "dist").glob("loce-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], env=env)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env=env).stdout.strip())
    (purelib / "zz_borrowed_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return venv, env, cwd, wheel


@pytest.mark.slow
def test_the_wheel_ships_the_configs_and_resolves_names_from_anywhere(installed, tiny_dataset):
    venv, env, cwd, wheel = installed
    import zipfile

    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("loce_cli/configs/")}
    assert {f"loce_cli/configs/{n}.py" for n in NAMES} <= shipped
    assert {n for n in shipped if "/_base_/" in n} == {f"loce_cli/{p.relative_to(ROOT)}"
                                                       for p in (ROOT / "configs" / "_base_").rglob("*.py")}
    python, loce = venv / "bin" / "python", venv / "bin" / "loce"
    where = _run([python, "-c", "import loce_cli, loce_cli.engine.quickstart.steps as q; "
                                "print(loce_cli.__file__); print(q.BASE_CONFIG.is_file())"], env=env, cwd=cwd)
    module, quickstart_config = where.stdout.split()
    assert Path(module).is_relative_to(venv) and quickstart_config == "True"  # the wheel's, not the checkout's

    doc = json.loads(_run([loce, "configs", "--json"], env=env, cwd=cwd).stdout)
    assert Path(doc["root"]).is_relative_to(venv) and sorted(c["name"] for c in doc["configs"]) == NAMES
    assert all(Path(c["path"]).is_file() and c["stage"] in (1, 2) and c["summary"] for c in doc["configs"])
    text = _run([loce, "configs"], env=env, cwd=cwd).stdout
    assert all(f"  {n}\n" in text for n in NAMES)

    r = subprocess.run([loce, "train", "base", "lvis/mask_rcnn_r50_fpn_normed_2x_lvis"], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "nearest shipped names: lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1" in r.stderr

    # a real run by name: the installed synthetic config, its _base_ model/schedule/runtime, loce's registered parts
    from tests.conftest import tiny_train_options

    work = cwd / "run"
    result = json.loads(_run([loce, "train", "base", "synthetic/mask_rcnn_r18_fpn_normed_synth", "--work-dir", work,
                              "--json", "--cfg-options", *tiny_train_options(tiny_dataset, 1),
                              "data.samples_per_gpu=8"], env=env, cwd=cwd).stdout)
    assert result["epochs"] == 1 and result["iterations"] == 5 and Path(result["checkpoint"]).is_file()
    assert (work / "mask_rcnn_r18_fpn_normed_synth.py").is_file()
    # evaluated and run on images by name too
    report = json.loads(_run([loce, "eval", "synthetic/mask_rcnn_r18_fpn_normed_synth", result["checkpoint"],
                              "--metric", "bbox", "--out", cwd / "eval", "--json", "--cfg-options",
                              *tiny_train_options(tiny_dataset, 1)], env=env, cwd=cwd).stdout)
    assert report["config"] == "synthetic/mask_rcnn_r18_fpn_normed_synth" and (cwd / "eval" / "metrics.json").is_file()
    image = sorted((tiny_dataset / "val2017").iterdir())[0]
    shown = json.loads(_run([loce, "predict", "synthetic/mask_rcnn_r18_fpn_normed_synth", result["checkpoint"], image,
                             "--out", cwd / "pictures", "--score-thr", "0", "--json", "--cfg-options",
                             *tiny_train_options(tiny_dataset, 1)], env=env, cwd=cwd).stdout)
    assert shown["config"] == "synthetic/mask_rcnn_r18_fpn_normed_synth" and (cwd / "pictures").is_dir()
    assert not (cwd / "configs").exists()

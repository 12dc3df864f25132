"""Files written atomically get the umask's mode (not mkstemp's private 0600), are written as a set where they
belong together, and a full disk is one line naming the file (a real full filesystem: a small tmpfs in a user
and mount namespace)."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from loce_cli.atomic import atomic_path, atomic_paths
from loce_cli.cli import app


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, want", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_atomic_files_get_the_umask_mode(tmp_path, umask, want):
    import loce_cli.mmdet_ext.runner.epoch_runner as epoch_runner
    from loce_cli.engine.evaluation import EvalReport, MetricResult, write_report

    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        report = EvalReport("ann.json", "r.json", "streaming", 300, "all",
                            {"bbox": MetricResult({k: 0.5 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr",
                                                                     "APc", "APf")})}, 1.0)
        write_report(report, tmp_path / "eval")

        class Runner(epoch_runner.LoceEpochBasedRunner):  # the runner's own checkpoint writer, on a small model
            def __init__(self):
                self._epoch, self._iter, self.meta, self.optimizer = 0, 1, {}, None
                self.model = torch.nn.Linear(2, 2)

        Runner().save_checkpoint(str(tmp_path), create_symlink=False)
    finally:
        os.umask(old)
    for path in (tmp_path / "a.json", tmp_path / "eval" / "metrics.json", tmp_path / "eval" / "metrics.txt",
                 tmp_path / "epoch_1.pth"):
        assert _mode(path) == want, (path, oct(_mode(path)))


def test_a_set_is_written_all_or_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_paths([tmp_path / "a.txt", tmp_path / "b.json"]) as (a, b):
            a.write_text("a")
            raise RuntimeError("failed before b")
    assert sorted(os.listdir(tmp_path)) == []


def _userns_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _userns_tmpfs(), reason="needs unshare -rm (user + mount namespaces) to mount a tmpfs")
def test_disk_full_names_the_file_and_leaves_no_half_set(tiny_dataset, tmp_path):
    """`loce eval --results` onto a filesystem with room for metrics.json but not metrics.txt: one line naming
    the file and the bytes, neither file left (the old code left metrics.json and refused the rerun)."""
    from tests.engine.test_evaluate import _results

    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset, seed=2, with_masks=False)))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    base = [sys.executable, "-m", "loce_cli", "eval", "--results", str(res), "--ann", str(ann), "--metric", "bbox"]
    sized_run = CliRunner().invoke(app, base[3:] + ["--out", str(tmp_path / "sized")])  # in-process: only sizes it
    assert sized_run.exit_code == 0, sized_run.output
    pages = -(-(tmp_path / "sized" / "metrics.json").stat().st_size // 4096)  # what metrics.json needs
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"""
mount -t tmpfs -o size=1m tmpfs {mnt} && mkdir {mnt}/out
dd if=/dev/zero of={mnt}/fill bs=4096 count=$((256 - {pages})) 2>/dev/null
{' '.join(base)} --out {mnt}/out; echo "rc=$?"
ls -A {mnt}/out; echo "--"
rm {mnt}/fill
{' '.join(base)} --out {mnt}/out >/dev/null; echo "rc=$?"
ls -A {mnt}/out
"""
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    first, second = r.stdout.split("--\n")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "rc=1" in first and len(errors) == 1, (r.stdout, r.stderr)
    m = re.search(rf"no space left on the device while writing metrics.txt, metrics.json in {mnt}/out: it needs "
                  r"([\d,]+) bytes, ([\d,]+) bytes free there", errors[0])
    assert m and "report it" not in errors[0], errors
    sized = sum(len(p.read_bytes()) for p in (tmp_path / "sized").glob("metrics.*"))
    assert abs(int(m.group(1).replace(",", "")) - sized) < 100  # the paths and timings differ by a few bytes
    assert "metrics.json" not in first and "metrics.txt" not in first  # none of the set
    assert "rc=0" in second and "metrics.json" in second and "metrics.txt" in second  # the rerun is not refused

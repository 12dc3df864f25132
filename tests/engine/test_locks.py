"""One live run per directory (issue 15), with real concurrent processes: a second training run, a --force and a
--resume against a live run are refused naming its pid, host and start time, and touch nothing; an eval --out is
locked the same way; a lock left by a killed process is taken over with a warning; only the launcher / rank 0
takes the lock."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.runtime.locks import LOCK_NAME, RunInProgressError, acquire, release, takes_lock
from loce_cli.engine.runtime.launch import LaunchOptions
from tests.engine.test_evaluate import _results
from tests.engine.test_train import BASE, opts

runner = CliRunner()


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def _wait_for_lock(directory, proc, timeout=180):
    lock = directory / LOCK_NAME
    deadline = time.time() + timeout
    while time.time() < deadline:
        if lock.is_file() and lock.stat().st_size:
            return json.loads(lock.read_text())
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("the lock never appeared")


def _holder(directory):
    """A real process holding ``directory``'s lock until killed."""
    code = ("import sys, time; from loce_cli.engine.runtime.locks import acquire; acquire(sys.argv[1], '--out'); "
            "time.sleep(600)")
    return subprocess.Popen([sys.executable, "-c", code, str(directory)], env=_env())


@pytest.mark.slow
def test_second_run_force_and_resume_against_a_live_run_are_refused(tiny_dataset, tmp_path):
    work = tmp_path / "run"
    args = [sys.executable, "-m", "loce_cli", "train", "base", str(BASE), "--work-dir", str(work), "--cfg-options",
            *opts(tiny_dataset, epochs=50)]
    live = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        info = _wait_for_lock(work, live)
        assert info["pid"] == live.pid and info["host"] == socket.gethostname()
        before = sorted(p.name for p in work.iterdir())
        for extra in ([], ["--force"], ["--resume"]):
            r = subprocess.run(args + extra, env=_env(), capture_output=True, text=True, timeout=300)
            lines = [line for line in r.stderr.splitlines() if line.strip()]
            assert r.returncode == 1 and len(lines) == 1, (extra, r.stderr[-1500:])
            assert f"in use by a live run: pid {live.pid} on host {socket.gethostname()}, started " in lines[0]
            assert live.poll() is None  # the live run goes on
            assert set(before) <= {p.name for p in work.iterdir()}  # --force deleted nothing
    finally:
        live.kill()
        live.wait()


def test_eval_out_lock_and_stale_lock_takeover(tiny_dataset, tmp_path):
    res = tmp_path / "results.json"
    res.write_text(json.dumps(_results(tiny_dataset, seed=1, with_masks=False)))
    out = tmp_path / "out"
    args = ["eval", "--results", str(res), "--ann", str(tiny_dataset / "annotations" / "lvis_v1_val.json"),
            "--metric", "bbox", "--out", str(out)]
    holder = _holder(out)
    try:
        _wait_for_lock(out, holder)
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and f"--out {out} is in use by a live run: pid {holder.pid}" in r.stderr
        assert not (out / "metrics.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the file still names it
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"taking over the lock of a run that is no longer running (pid {holder.pid}" in r.stderr
    assert (out / "metrics.json").is_file() and (out / LOCK_NAME).read_text() == ""  # released when done


def test_lock_is_reentrant_and_only_rank_zero_takes_it(tmp_path, monkeypatch):
    acquire(tmp_path, "--work-dir")
    acquire(tmp_path, "--work-dir")  # quickstart -> train of the same folder: counted, not a self-refusal
    release(tmp_path)
    other = subprocess.run([sys.executable, "-c", "import sys; from loce_cli.engine.runtime.locks import acquire; "
                            "acquire(sys.argv[1])", str(tmp_path)], capture_output=True, text=True, env=_env())
    assert other.returncode == 1 and RunInProgressError.__name__ in other.stderr  # still held once
    release(tmp_path)
    assert (tmp_path / LOCK_NAME).read_text() == ""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert takes_lock(LaunchOptions(nproc=2))  # the launcher of --nproc 2 holds it for its workers
    assert not takes_lock(LaunchOptions(nnodes=2, node_rank=1))  # node 1's launcher: node 0 holds it
    monkeypatch.setenv("RANK", "1")  # rank 1 of a user-started torchrun
    assert not takes_lock(LaunchOptions(launcher="pytorch"))
    monkeypatch.setenv("RANK", "0")
    assert takes_lock(LaunchOptions(launcher="pytorch"))

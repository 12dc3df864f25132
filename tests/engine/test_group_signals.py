"""Stop signals as clusters and terminals deliver them: to the whole process group (Slurm, `timeout`, systemd,
Ctrl-C in a terminal), not only to the main process. Real `loce` processes started in their own session
(``start_new_session``) and signalled with ``os.killpg``: a training with DataLoader workers and one with two
ranks stop with their exit code (75 for SIGTERM/SIGUSR1, 130 for SIGINT), one line, no traceback and a mid-epoch
checkpoint the resume continues bit-exactly; an interrupted two-rank evaluation leaves no rank running and writes
nothing into --out afterwards; max_keep_ckpts prunes the rank files with their checkpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import torch

from tests.engine.test_preemption import (ENV, ITERS, LOCE_EXE, _flat, _rank_pids, alive, children, cli, finish, load,
                                          logged, opts, run, wait_for)

EXIT = {signal.SIGTERM: 75, signal.SIGUSR1: 75, signal.SIGINT: 130}


def start_session(args) -> subprocess.Popen:
    """``args`` in a new session: its own process group, as a job step or a terminal's foreground job."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)


def assert_same_run(a_path: Path, b_path: Path) -> None:
    """A base run's checkpoints: bit-identical weights and optimizer state at the same position."""
    a, b = load(a_path), load(b_path)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, x in a["state_dict"].items():
        assert torch.equal(x, b["state_dict"][key]), key
    oa, ob = dict(_flat(a["optimizer"])), dict(_flat(b["optimizer"]))
    assert oa.keys() == ob.keys() and any(torch.is_tensor(v) for v in oa.values())
    for key, x in oa.items():
        assert torch.equal(x, ob[key]) if torch.is_tensor(x) else x == ob[key], key
    assert (a["meta"]["epoch"], a["meta"]["iter"]) == (b["meta"]["epoch"], b["meta"]["iter"])


def descendants(pid: int) -> list:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def stopped_line(err: str, sig: signal.Signals, cmd: str, work: Path, extra: str = "") -> int:
    """The one line a stopped training ends with; returns the iteration it names."""
    assert "Traceback" not in err and "SignalException" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith(("stopped:", "error:"))]
    assert len(lines) == 1, err[-3000:]
    name = sig.name + (" (Ctrl-C)" if sig == signal.SIGINT else "")
    m = re.fullmatch(rf"stopped: {re.escape(name)} after iteration (\d+) \(epoch 1, (\d+)/{ITERS}\): checkpoint "
                     rf"(\S+) \(hint: continue with: {cmd} .* --work-dir {re.escape(str(work))} --resume{extra}\)",
                     lines[0])
    assert m, lines[0]
    n = int(m.group(1))
    assert int(m.group(2)) == n and m.group(3) == str(work / f"iter_{n}.pth")
    assert load(work / f"iter_{n}.pth")["meta"]["mid_epoch"]["consumed"] == n
    return n


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_group_signal_with_dataloader_workers(sig, tiny_dataset, tmp_path):
    """One process, two DataLoader workers; the signal goes to the whole group (workers included): the workers
    ignore it, the run checkpoints at the next iteration boundary and exits 75 / 130 with one line; the resume
    ends bit-identical to the run that was never interrupted."""
    options = opts(tiny_dataset, workers=2)
    work = tmp_path / "split"
    proc = start_session(cli("base", work, options))
    wait_for(logged(work, rf"Epoch \[1\]\[3/{ITERS}\]"), proc, what="iteration 3")
    family = descendants(proc.pid)
    assert family, "no DataLoader workers"
    os.killpg(proc.pid, sig)
    rc, _, err = finish(proc)
    assert rc == EXIT[sig], err[-3000:]
    n = stopped_line(err, sig, "loce train base", work)
    assert 3 <= n < ITERS
    end = time.monotonic() + 2
    while any(alive(p) for p in family) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(alive(p) for p in family)

    rc, _, err = run(cli("base", work, options, "--resume"))
    assert rc == 0, err[-3000:]
    assert logged(work, rf"resuming inside epoch 1 after {n} batches")()
    rc, _, err = run(cli("base", tmp_path / "straight", options))
    assert rc == 0, err[-3000:]
    assert_same_run(tmp_path / "straight" / "epoch_2.pth", work / "epoch_2.pth")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_group_signal_with_two_ranks(sig, tiny_dataset, tmp_path):
    """`--nproc 2`: the signal to the launcher's whole group (torchrun included) reaches each rank once; both
    stop at the same boundary with their own state saved, exit 75 / 130, one line, no torchrun traceback; the
    resume ends bit-identical to the uninterrupted run."""
    options = opts(tiny_dataset, per_gpu=2)
    work = tmp_path / "split"
    proc = start_session(cli("base", work, options, "--nproc", "2", "--master-port", "29831"))
    wait_for(logged(work, rf"Epoch \[1\]\[3/{ITERS}\]"), proc, what="iteration 3")
    ranks = wait_for(lambda: _rank_pids(proc.pid) if len(_rank_pids(proc.pid)) == 2 else None, proc,
                     what="the two ranks")
    os.killpg(proc.pid, sig)
    rc, _, err = finish(proc)
    assert rc == EXIT[sig], err[-3000:]
    n = stopped_line(err, sig, "loce train base", work, " --nproc 2")
    assert load(work / f"iter_{n}.rank1.pth")["sampler"]["consumed"] == n
    assert not any(alive(p) for p in ranks.values())

    rc, _, err = run(cli("base", work, options, "--nproc", "2", "--master-port", "29833", "--resume"))
    assert rc == 0, err[-3000:]
    rc, _, err = run(cli("base", tmp_path / "straight", options, "--nproc", "2", "--master-port", "29835"))
    assert rc == 0, err[-3000:]
    assert_same_run(tmp_path / "straight" / "epoch_2.pth", work / "epoch_2.pth")


@pytest.mark.slow
@pytest.mark.parametrize("to", ["group", "parent"])
def test_interrupted_two_rank_eval_leaves_nothing_running(to, tiny_base_model, tmp_path):
    """Ctrl-C (SIGINT to the group, or to `loce` alone) during a `--nproc 2` evaluation: exit 130 with one line;
    when `loce` has exited no rank is left, and nothing appears in --out afterwards."""
    config, checkpoint, options = tiny_base_model
    out = tmp_path / "eval"
    args = [LOCE_EXE, "eval", str(config), str(checkpoint), "--out", str(out), "--nproc", "2",
            "--master-port", "29837"]
    for o in options:
        args += ["--cfg-options", o]
    proc = start_session(args)
    ranks = wait_for(lambda: _rank_pids(proc.pid) if len(_rank_pids(proc.pid)) == 2 else None, proc,
                     what="the two ranks")
    family = [p for r in ranks.values() for p in [r, *descendants(r)]]
    wait_for(lambda: list(out.glob("*.part")), proc, every=0.01, what="inference")
    if to == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    rc, _, err = finish(proc, timeout=120)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "error: interrupted", err[-3000:]
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == ["error: interrupted"]
    assert not any(alive(p) for p in family), [p for p in family if alive(p)]
    before = sorted(p.name for p in out.iterdir())
    time.sleep(5)
    assert sorted(p.name for p in out.iterdir()) == before
    assert not (out / "metrics.json").exists() and not (out / "results.json").exists()


@pytest.mark.slow
def test_max_keep_ckpts_prunes_rank_files(tiny_dataset, tmp_path):
    """A 3-epoch `--nproc 2` run keeping one checkpoint: epoch_1 and epoch_2 go with their rank-1 files."""
    work = tmp_path / "run"
    rc, _, err = run(cli("base", work, opts(tiny_dataset, epochs=3, per_gpu=2) + ["checkpoint_config.max_keep_ckpts=1"],
                         "--nproc", "2", "--master-port", "29839"))
    assert rc == 0, err[-3000:]
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_3.pth", "epoch_3.rank1.pth", "latest.pth"]

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


def stopped_line(err: str, sig: signal.Signals, cmd: str, work: Path, extra: str = "", epoch: int = 1) -> int:
    """The one line a training stopped in ``epoch`` ends with; returns the iteration it names."""
    assert "Traceback" not in err and "SignalException" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith(("stopped:", "error:"))]
    assert len(lines) == 1, err[-3000:]
    name = sig.name + (" (Ctrl-C)" if sig == signal.SIGINT else "")
    m = re.fullmatch(rf"stopped: {re.escape(name)} after iteration (\d+) \(epoch {epoch}, (\d+)/{ITERS}\): "
                     rf"checkpoint (\S+) \(hint: continue with: {cmd} .* --work-dir {re.escape(str(work))} "
                     rf"--resume{extra}\)", lines[0])
    assert m, lines[0]
    n, inner = int(m.group(1)), int(m.group(2))
    assert n == (epoch - 1) * ITERS + inner and m.group(3) == str(work / f"iter_{n}.pth")
    assert 3 <= inner < ITERS  # signalled after iteration 3 of the epoch was logged
    assert load(work / f"iter_{n}.pth")["meta"]["mid_epoch"]["consumed"] == inner
    return n


def stop_by_group(args, work: Path, sig: signal.Signals, epoch: int, cmd: str, extra: str = "",
                  ranks: int = 0) -> int:
    """Start ``args`` in its own session, wait for iteration 3 of ``epoch``, send ``sig`` to the whole group: exit
    75 / 130 with one line naming a mid-epoch checkpoint, and none of its DataLoader workers (or, with ``ranks``,
    none of its ranks) left running. Returns the iteration it stopped after."""
    proc = start_session(args)
    wait_for(logged(work, rf"Epoch \[{epoch}\]\[3/{ITERS}\]"), proc, what=f"iteration 3 of epoch {epoch}")
    if ranks:
        family = list(wait_for(lambda: _rank_pids(proc.pid) if len(_rank_pids(proc.pid)) == ranks else None, proc,
                               what="the ranks").values())
    else:
        family = descendants(proc.pid)
        assert family, "no DataLoader workers"
    os.killpg(proc.pid, sig)
    rc, _, err = finish(proc)
    assert rc == EXIT[sig], err[-3000:]
    n = stopped_line(err, sig, cmd, work, extra, epoch)
    end = time.monotonic() + (0 if ranks else 2)  # workers: torch's own shutdown may take a moment
    while any(alive(p) for p in family) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(alive(p) for p in family), [p for p in family if alive(p)]
    return n


@pytest.mark.slow
def test_group_signals_with_dataloader_workers(tiny_dataset, tmp_path):
    """One process, two DataLoader workers; SIGTERM to the whole group (workers included) in epoch 1, then SIGINT
    (Ctrl-C) to the resumed run's group in epoch 2: each time the workers ignore it, the run checkpoints at the
    next iteration boundary and exits 75 / 130 with one line; the last resume ends bit-identical to the run that
    was never interrupted."""
    options = opts(tiny_dataset, workers=2)
    work = tmp_path / "split"
    n = stop_by_group(cli("base", work, options), work, signal.SIGTERM, 1, "loce train base")
    m = stop_by_group(cli("base", work, options, "--resume"), work, signal.SIGINT, 2, "loce train base")
    assert logged(work, rf"resuming inside epoch 1 after {n} batches")()

    rc, _, err = run(cli("base", work, options, "--resume"))
    assert rc == 0, err[-3000:]
    assert logged(work, rf"resuming inside epoch 2 after {m - ITERS} batches")()
    rc, _, err = run(cli("base", tmp_path / "straight", options))
    assert rc == 0, err[-3000:]
    assert_same_run(tmp_path / "straight" / "epoch_2.pth", work / "epoch_2.pth")


@pytest.mark.slow
def test_group_signals_with_two_ranks(tiny_dataset, tmp_path):
    """`--nproc 2`: SIGTERM to the launcher's whole group (torchrun included) in epoch 1, then SIGINT to the
    resumed run's group in epoch 2, each reaching each rank once; both ranks stop at the same boundary with their
    own state saved, exit 75 / 130, one line, no torchrun traceback; the last resume ends bit-identical to the
    uninterrupted run."""
    options = opts(tiny_dataset, per_gpu=2)
    work = tmp_path / "split"
    two = ("--nproc", "2")
    n = stop_by_group(cli("base", work, options, *two, "--master-port", "29831"), work, signal.SIGTERM, 1,
                      "loce train base", " --nproc 2", ranks=2)
    assert load(work / f"iter_{n}.rank1.pth")["sampler"]["consumed"] == n
    m = stop_by_group(cli("base", work, options, *two, "--master-port", "29833", "--resume"), work, signal.SIGINT,
                      2, "loce train base", " --nproc 2", ranks=2)
    assert load(work / f"iter_{m}.rank1.pth")["sampler"]["consumed"] == m - ITERS

    rc, _, err = run(cli("base", work, options, *two, "--master-port", "29834", "--resume"))
    assert rc == 0, err[-3000:]
    rc, _, err = run(cli("base", tmp_path / "straight", options, *two, "--master-port", "29835"))
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

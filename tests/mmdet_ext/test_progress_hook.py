"""The training's terminal output: the ETA of the whole run, the plain lines of a pipe, the bar of a terminal (log
lines printed above it, never glued onto it), and mmcv's log records routed to the log file only."""

import io
import logging
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from loce_cli.core.progress import (PlainSchedule, RunClock, format_duration, plain_line_every, status_line)


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_durations_read_as_clock_times():
    assert [format_duration(s) for s in (0, 7.4, 63, 3723, 90061)] == ["0:00", "0:07", "1:03", "1:02:03",
                                                                        "1d 01:01:01"]
    assert format_duration(None) == "?" and format_duration(float("nan")) == "?" and format_duration(-1) == "?"


def test_eta_covers_the_whole_run_not_one_epoch():
    now = FakeTime()
    clock = RunClock(total=30, now=now)  # 3 epochs of 10 iterations
    clock.tick(1)  # the first iteration (warm-up) starts the clock, it is no pace
    assert clock.eta() is None
    now.t += 8.0
    clock.tick(5)  # 2 s an iteration since
    assert clock.seconds_per_iter() == pytest.approx(2.0)
    assert clock.eta() == pytest.approx(25 * 2.0)  # 25 iterations left in the run (5 left in this epoch: 10 s)
    now.t += 2.0 * 25
    clock.tick(30)
    assert clock.eta() == 0.0


def test_eta_after_a_resume_counts_only_this_process_pace():
    now = FakeTime()
    clock = RunClock(total=100, start=60, now=now)  # resumed at iteration 60
    clock.tick(61)
    now.t += 30.0
    clock.tick(71)  # 3 s an iteration
    assert clock.eta() == pytest.approx(29 * 3.0)


def test_plain_lines_follow_the_log_interval_but_stay_few():
    assert plain_line_every(10, 5) == 5  # small run: the config's interval
    assert plain_line_every(750, 25) == 30  # about 25 lines a run
    assert plain_line_every(180000, 50) == 7200
    assert plain_line_every(3, 0) == 1
    now = FakeTime()
    schedule = PlainSchedule(every=10, total=25, seconds=60.0, now=now)
    due = [i for i in range(1, 26) if schedule.due(i)]
    assert due == [10, 20, 25]  # every 10 and the last
    schedule = PlainSchedule(every=1000, total=5000, seconds=60.0, now=now)
    now.t += 61.0
    assert schedule.due(7) and not schedule.due(8)  # one at least every minute here


def test_status_line_reads_epoch_iteration_loss_lr_eta():
    line = status_line(2, 6, 300, 750, 1.23456, 0.02, 310.0)
    assert line == "epoch 2/6  iter 300/750 (40%)  loss 1.235  lr 2.00e-02  eta 5:10"
    assert "loss ?" in status_line(1, 1, 1, 2, None, None, None) and "eta ?" in status_line(1, 1, 1, 2, None, 0.1,
                                                                                               None)


class Stream(io.StringIO):
    def __init__(self, tty=False):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def _runner(rank=0, epochs=2, per_epoch=5):
    r = SimpleNamespace(rank=rank, epoch=0, iter=0, max_epochs=epochs, max_iters=epochs * per_epoch,
                        outputs={"log_vars": {"loss": 1.25}}, current_lr=lambda: [0.02])
    return r


def _iterate(hook, runner, n, per_epoch=5, now=None):
    for _ in range(n):
        hook.after_train_iter(runner)
        runner.iter += 1
        runner.epoch = runner.iter // per_epoch
        if now is not None:
            now.t += 2.0


def test_a_pipe_gets_plain_lines_and_the_final_loss():
    from loce_cli.mmdet_ext.run_output import Terminal, TrainProgressHook

    stream, now = Stream(tty=False), FakeTime()
    hook = TrainProgressHook(Terminal(stream), log_interval=4, now=now)
    runner = _runner()
    hook.before_run(runner)
    _iterate(hook, runner, 10, now=now)
    hook.after_run(runner)
    lines = stream.getvalue().splitlines()
    assert lines == ["epoch 1/2  iter 4/10 (40%)  loss 1.250  lr 2.00e-02  eta 0:12",
                     "epoch 2/2  iter 8/10 (80%)  loss 1.250  lr 2.00e-02  eta 0:04",
                     "epoch 2/2  iter 10/10 (100%)  loss 1.250  lr 2.00e-02  eta 0:00"]
    assert hook.final_loss == pytest.approx(1.25)


def test_other_ranks_print_nothing_but_keep_their_loss():
    from loce_cli.mmdet_ext.run_output import Terminal, TrainProgressHook

    stream = Stream(tty=True)
    hook = TrainProgressHook(Terminal(stream), log_interval=1)
    runner = _runner(rank=1)
    hook.before_run(runner)
    _iterate(hook, runner, 3)
    hook.after_run(runner)
    assert stream.getvalue() == "" and hook.final_loss == pytest.approx(1.25)


def test_the_terminal_bar_spans_the_run_and_log_lines_go_above_it():
    from loce_cli.mmdet_ext.run_output import Terminal, TerminalHandler, TrainProgressHook

    buf, now = io.StringIO(), FakeTime()
    terminal = Terminal(Stream(tty=True))
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    hook = TrainProgressHook(terminal, console=console, now=now)
    runner = _runner()
    hook.before_run(runner)
    assert terminal.progress is not None
    logger = logging.getLogger("loce-test-bar")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = TerminalHandler(terminal, verbose=True)
    logger.addHandler(handler)
    try:
        _iterate(hook, runner, 7, now=now)
        logger.info("Saving checkpoint at 1 epochs")
        task = terminal.progress.tasks[0]
        assert task.total == 10 and task.completed == 7  # one bar over both epochs
        assert task.fields["epoch"] == "epoch 2/2" and task.fields["eta"] == "0:06"  # 3 left at 2 s
        terminal.progress.refresh()
    finally:
        logger.removeHandler(handler)
        hook.after_run(runner)
    assert terminal.progress is None
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", buf.getvalue())  # cursor moves: line breaks
    lines = text.splitlines()
    saving = [ln for ln in lines if "Saving checkpoint" in ln]
    assert saving and all(re.match(r"^\d{4}-\d\d-\d\d [\d:,]+ - loce-test-bar - INFO - Saving", ln) for ln in saving)
    assert any("epoch 2/2" in ln and "7/10" in ln and "eta 0:06" in ln and "lr 2.00e-02" in ln for ln in lines)
    assert not re.search(r"e-0\d\d{4}-\d\d-\d\d", buf.getvalue())  # never "lr 1.82e-032026-12-01 ..."


def test_mmcv_records_go_to_the_log_file_not_the_terminal(tmp_path, capfd):
    """Real mmcv: the per-parameter init log of ``init_weights`` and runner-style INFO records reach the file;
    the terminal gets only headlines and warnings (everything with verbose)."""
    from mmcv.runner import BaseModule
    from mmcv.utils import get_logger
    from torch import nn

    class Net(BaseModule):
        def __init__(self):
            super().__init__(init_cfg=dict(type="Kaiming", layer="Conv2d"))
            self.conv = nn.Conv2d(3, 4, 3)

    from loce_cli.mmdet_ext.run_output import Terminal, routed_logs

    log = tmp_path / "run.log"
    stream = Stream()
    capfd.readouterr()
    with routed_logs(str(log), 0, Terminal(stream)):
        Net().init_weights()
        get_logger("mmdet").info("Hooks will be executed in the following order:\nbefore_run:\n(VERY_HIGH   ) X")
        get_logger("mmdet").info("LOCE memory init: 21 images")
        get_logger("mmdet").warning("the checkpoint has no memory")
    captured = capfd.readouterr()
    text = log.read_text()
    assert "KaimingInit" in text and "(VERY_HIGH   )" in text and "before_run:" in text
    shown = stream.getvalue()
    assert shown.splitlines() == ["LOCE memory init: 21 images", "warning: the checkpoint has no memory"]
    for terminal_text in (captured.out, captured.err):
        assert "KaimingInit" not in terminal_text and "VERY_HIGH" not in terminal_text
    assert get_logger("mmdet").handlers and all(  # the loggers' own handlers are back
        not isinstance(h, logging.FileHandler) or h.baseFilename != str(log) for h in get_logger("mmdet").handlers)
    verbose = Stream()
    with routed_logs(str(log), 0, Terminal(verbose), verbose=True):
        get_logger("mmdet").info("Epoch [1][5/10]\tlr: 1.600e-02")
    assert " - mmdet - INFO - Epoch [1][5/10]" in verbose.getvalue()

"""What a training run writes where: the terminal gets a progress bar (or, in a pipe, a plain line every N
iterations) and a few plain lines; mmcv's and mmdet's log records (the hook table, the per-parameter init log,
the per-iteration lines) go to the run's log file only, or also to the terminal with ``--verbose``.

- :class:`Terminal`: rank 0's stderr. While a bar is live every line is printed through the bar's console, above
  the bar (a log line is never glued onto it); otherwise straight to the current ``sys.stderr``.
- :func:`routed_logs`: for the run, every mmcv-initialised logger (``mmdet``, ``mmcv``, ...) writes to the log
  file (rank 0) and, through :class:`TerminalHandler`, shows on the terminal only its warnings and the few records
  a user needs (:data:`HEADLINES`), or every record with ``verbose``. Other ranks print errors only (as mmcv).
- :class:`TrainProgressHook`: the bar / plain lines over the whole run (ETA of the run, not of one epoch), and the
  final loss (mean of the last iterations); rank 0 only. The values and text come from
  :mod:`loce_cli.core.progress`.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

from mmcv.runner import HOOKS, Hook
from mmcv.utils import get_logger
from mmcv.utils.logging import logger_initialized
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from loce_cli.core.progress import (LossWindow, PlainSchedule, RunClock, format_duration, plain_line_every,
                                    status_fields, status_line)

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"  # mmcv's, so the log file reads as before
# log records a user sees in the terminal without --verbose (their message starts with one of these)
HEADLINES = ("LOCE fine-tune:", "LOCE memory init", "mid-epoch checkpoint", "resuming inside epoch",
             "class-aware sampling", "evaluation every")


class Terminal:
    """Rank 0's terminal lines (stderr), printed above a live bar when there is one."""

    def __init__(self, stream=None):
        self._stream = stream  # tests pass one; default: the sys.stderr of the moment
        self.progress = None  # a live rich Progress

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def is_terminal(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start_bar(self, progress) -> None:
        self.stop_bar()
        self.progress = progress
        progress.start()

    def stop_bar(self) -> None:
        if self.progress is not None:
            progress, self.progress = self.progress, None
            progress.stop()


class TerminalHandler(logging.Handler):
    """Log records on the :class:`Terminal`: warnings and :data:`HEADLINES` as plain text; with ``verbose``
    every record, formatted as in the log file."""

    def __init__(self, terminal: Terminal, verbose: bool = False):
        super().__init__(logging.DEBUG)
        self.terminal, self.verbose = terminal, verbose
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.verbose:
                self.terminal.line(self.format(record))
                return
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                self.terminal.line(f"{record.levelname.lower()}: {message}")
            elif message.startswith(HEADLINES):
                self.terminal.line(message)
        except Exception:
            self.handleError(record)


def _mmcv_loggers() -> list:
    """The loggers mmcv has set up, ``mmcv`` and ``mmdet`` always among them (mmcv's ``BaseModule`` writes its
    per-parameter init log through the first one set up, to its file when it has one)."""
    for name in ("mmcv", "mmdet"):
        get_logger(name)
    return [logging.getLogger(name) for name in list(logger_initialized)]


def _set_handlers(logger: logging.Logger, handlers, level: int, propagate: bool) -> None:
    """Give ``logger`` exactly ``handlers``, ``level`` and ``propagate``."""
    for h in list(logger.handlers):
        logger.removeHandler(h)
    for h in handlers:
        logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = propagate


@contextmanager
def routed_logs(log_file: Optional[str], rank: int, terminal: Terminal, verbose: bool = False,
                level: int = logging.INFO) -> Iterator[None]:
    """For the run: rank 0's mmcv loggers write to ``log_file`` (appended) and the terminal (as
    :class:`TerminalHandler` filters); the loggers' own handlers come back afterwards, and a bar left live by an
    error is stopped. Ranks > 0 print errors only, as mmcv means them to: a logger mmcv set up before the process
    group existed took them for rank 0 (INFO on stderr), which would put every rank's init log on the terminal."""
    loggers = _mmcv_loggers()
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    file_handler = None
    if rank == 0:
        handlers = [TerminalHandler(terminal, verbose)]
        if log_file:
            file_handler = logging.FileHandler(log_file, "a", encoding="utf-8")
            file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
            handlers.append(file_handler)
        for lg in loggers:
            _set_handlers(lg, handlers, level, False)
    else:
        errors = logging.StreamHandler(sys.stderr)
        errors.setFormatter(logging.Formatter(LOG_FORMAT))
        for lg in loggers:
            _set_handlers(lg, [errors], logging.ERROR, False)
    try:
        yield
    finally:
        terminal.stop_bar()
        for lg, handlers, lvl, propagate in saved:
            _set_handlers(lg, handlers, lvl, propagate)
        if file_handler is not None:
            file_handler.close()


def _current_lr(runner) -> Optional[float]:
    lr = runner.current_lr()
    if isinstance(lr, dict):  # several optimizers: the first one's
        lr = next(iter(lr.values()), None)
    if isinstance(lr, (list, tuple)):
        lr = lr[0] if lr else None
    return None if lr is None else float(lr)


@HOOKS.register_module()
class TrainProgressHook(Hook):
    """Rank 0: in a terminal one bar over the whole run (epoch, iteration, ETA of the run, loss, lr); elsewhere a
    plain :func:`~loce_cli.core.progress.status_line` every :func:`~loce_cli.core.progress.plain_line_every`
    iterations. Keeps the final loss (``final_loss``) on every rank."""

    def __init__(self, terminal: Optional[Terminal] = None, log_interval: int = 0, console=None, now=None):
        self.terminal = terminal or Terminal()
        self.log_interval = log_interval
        self.console = console  # tests pass a rich Console; default: one on the terminal's stream
        self._now = now
        self.losses = LossWindow()
        self.clock = self.schedule = None
        self.task = None

    @property
    def final_loss(self) -> Optional[float]:
        return self.losses.mean()

    def _clock_args(self) -> dict:
        return {} if self._now is None else dict(now=self._now)

    def before_run(self, runner) -> None:
        if runner.rank != 0:
            return
        total, start = int(runner.max_iters), int(runner.iter)
        self.clock = RunClock(total, start, **self._clock_args())
        if not self.terminal.is_terminal() and self.console is None:
            self.schedule = PlainSchedule(plain_line_every(total, self.log_interval), total, **self._clock_args())
            return
        console = self.console or Console(file=self.terminal.stream, highlight=False)
        progress = Progress(TextColumn("{task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("eta {task.fields[eta]}"), TextColumn("{task.fields[loss]}  {task.fields[lr]}"),
                            console=console, transient=False)
        fields = status_fields(runner.epoch + 1, runner.max_epochs, None, None)
        self.task = progress.add_task("train", total=total, completed=start, eta="?", **fields)
        self.terminal.start_bar(progress)

    def after_train_iter(self, runner) -> None:
        loss = ((runner.outputs or {}).get("log_vars") or {}).get("loss")
        self.losses.add(loss)
        if self.clock is None:
            return
        done = int(runner.iter) + 1  # the runner counts this iteration after the hooks
        self.clock.tick(done)
        loss = self.losses.values[-1] if self.losses.values else None
        lr = _current_lr(runner)
        if self.schedule is not None:
            if self.schedule.due(done):
                self.terminal.line(status_line(runner.epoch + 1, runner.max_epochs, done, self.clock.total, loss,
                                               lr, self.clock.eta()))
            return
        progress = self.terminal.progress
        if progress is not None and self.task is not None:
            progress.update(self.task, completed=done, eta=format_duration(self.clock.eta()),
                            **status_fields(runner.epoch + 1, runner.max_epochs, loss, lr))

    def after_run(self, runner) -> None:
        self.terminal.stop_bar()

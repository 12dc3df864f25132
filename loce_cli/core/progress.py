"""What a training run shows of its progress, as plain values and text: the ETA of the whole run (not of one
epoch), the one-line status (epoch, iteration, loss, lr, ETA) and how often a line is printed when the output
is not a terminal. No mmcv, no terminal: :mod:`loce_cli.mmdet_ext.run_output` draws with these."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Deque, Optional

PLAIN_LINES_PER_RUN = 25  # a pipe gets about this many progress lines per run, whatever its length
PLAIN_LINE_SECONDS = 300.0  # ...and one at least every 5 minutes (long LVIS runs)
LOSS_WINDOW = 20  # the final loss: the mean over the last this many iterations


def format_duration(seconds: Optional[float]) -> str:
    """``0:07``, ``12:03``, ``1:02:03``, ``3d 04:05:06``; ``?`` while unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}:{minutes:02d}:{s:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{s:02d}"
    return f"{minutes}:{s:02d}"


class RunClock:
    """The ETA of the whole run from the pace of the iterations this process has done.

    ``total``: the run's iterations (every epoch); ``start``: those already done when it started (a resume).
    The clock starts at the first finished iteration (model building, memory init and the first iteration's
    warm-up are not a pace); the pace covers whatever the run does between iterations (checkpoints,
    evaluations), so the ETA is of the run, not of the training steps alone."""

    def __init__(self, total: int, start: int = 0, now: Callable[[], float] = time.monotonic):
        self.total, self.start, self._now = int(total), int(start), now
        self._t0: Optional[float] = None
        self._done0 = self.start
        self.done = self.start

    def tick(self, done: int) -> None:
        """``done`` iterations of the run are finished (counting those before a resume)."""
        self.done = int(done)
        if self._t0 is None:
            self._t0, self._done0 = self._now(), self.done

    def seconds_per_iter(self) -> Optional[float]:
        if self._t0 is None or self.done <= self._done0:
            return None
        return (self._now() - self._t0) / (self.done - self._done0)

    def eta(self) -> Optional[float]:
        """Seconds left in the run; None until two iterations have finished; 0 at the end."""
        if self.done >= self.total:
            return 0.0
        pace = self.seconds_per_iter()
        return None if pace is None else pace * (self.total - self.done)


class LossWindow:
    """The mean of the last ``size`` finite losses: the run's final loss."""

    def __init__(self, size: int = LOSS_WINDOW):
        self.values: Deque[float] = deque(maxlen=size)

    def add(self, loss) -> None:
        try:
            value = float(loss)
        except (TypeError, ValueError):
            return
        if math.isfinite(value):
            self.values.append(value)

    def mean(self) -> Optional[float]:
        return sum(self.values) / len(self.values) if self.values else None


def plain_line_every(total: int, log_interval: int = 0, lines: int = PLAIN_LINES_PER_RUN) -> int:
    """Iterations between two plain progress lines: the config's log interval, or more so that a run prints
    about ``lines`` of them."""
    return max(1, int(log_interval or 0), math.ceil(max(int(total), 1) / max(lines, 1)))


def status_fields(epoch: int, max_epochs: int, loss: Optional[float], lr: Optional[float]) -> dict:
    """The text of the bar's fields (also the plain line's)."""
    return dict(epoch=f"epoch {epoch}/{max_epochs}",
                loss="loss ?" if loss is None or not math.isfinite(loss) else f"loss {loss:.3f}",
                lr="lr ?" if lr is None else f"lr {lr:.2e}")


def status_line(epoch: int, max_epochs: int, done: int, total: int, loss: Optional[float], lr: Optional[float],
                eta: Optional[float]) -> str:
    """``epoch 2/6  iter 300/750 (40%)  loss 1.234  lr 2.00e-02  eta 5:10``: the plain line of a pipe."""
    f = status_fields(epoch, max_epochs, loss, lr)
    pct = 100.0 * done / total if total else 100.0
    return f"{f['epoch']}  iter {done}/{total} ({pct:.0f}%)  {f['loss']}  {f['lr']}  eta {format_duration(eta)}"


class PlainSchedule:
    """When a pipe gets its next line: every ``every`` iterations, at the last one, and at least every
    ``seconds`` (a long run's CI log keeps moving)."""

    def __init__(self, every: int, total: int, seconds: float = PLAIN_LINE_SECONDS,
                 now: Callable[[], float] = time.monotonic):
        self.every, self.total, self.seconds, self._now = max(1, int(every)), int(total), seconds, now
        self._last = now()

    def due(self, done: int) -> bool:
        t = self._now()
        if done % self.every == 0 or done >= self.total or t - self._last >= self.seconds:
            self._last = t
            return True
        return False

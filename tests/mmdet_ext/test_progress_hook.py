"""RichProgressHook: a bar per epoch on rank 0 in a terminal (iterations, loss, lr); nothing elsewhere."""

import io
from types import SimpleNamespace

from rich.console import Console


def _runner(rank=0):
    return SimpleNamespace(rank=rank, epoch=0, max_epochs=2, data_loader=[None] * 5,
                           outputs={"log_vars": {"loss": 1.25}}, current_lr=lambda: [0.02])


def test_progress_bar_counts_iterations_in_a_terminal(monkeypatch):
    from loce_cli.mmdet_ext import training

    buf = io.StringIO()
    monkeypatch.setattr(training.sys.stderr, "isatty", lambda: True, raising=False)
    hook = training.RichProgressHook(console=Console(file=buf, force_terminal=True, width=100))
    runner = _runner()
    hook.before_train_epoch(runner)
    assert hook.progress is not None
    for _ in range(5):
        hook.after_train_iter(runner)
    task = hook.progress.tasks[0]
    assert task.completed == 5 and task.total == 5 and "loss 1.250" in task.fields["info"]
    hook.after_train_epoch(runner)
    assert hook.progress is None
    assert "epoch 1/2" in buf.getvalue() and "5/5" in buf.getvalue()


def test_no_bar_off_rank_0_or_without_a_terminal(monkeypatch):
    from loce_cli.mmdet_ext import training

    hook = training.RichProgressHook()
    hook.before_train_epoch(_runner(rank=1))
    assert hook.progress is None
    monkeypatch.setattr(training.sys.stderr, "isatty", lambda: False, raising=False)
    hook.before_train_epoch(_runner())
    hook.after_train_iter(_runner())  # a no-op, no error
    assert hook.progress is None

"""What the commands share to show results: the consoles, JSON output, group names in colour, progress on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Dict, Iterable, Iterator, Optional

from rich.console import Console

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_GROUP_STYLE = {"r": "red", "c": "yellow", "f": "blue"}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def group_label(group: str) -> str:
    """Coloured frequency-group name for rich output; ``group`` is a key (``r``) or a name (``rare``)."""
    from loce_cli.core.frequency import GROUP_NAMES, NAME_TO_GROUP

    key = NAME_TO_GROUP.get(group, group)
    return f"[{_GROUP_STYLE[key]}]{GROUP_NAMES[key]}[/]"


def table(title: Optional[str], columns: Iterable[str], left: Iterable[str] = (), no_wrap: Iterable[str] = (),
          **options: Any):
    """A rich table titled on the left whose columns are right-aligned (numbers) except those named in ``left``."""
    from rich.table import Table

    if title is not None:
        options.update(title=title, title_justify="left")
    t = Table(**options)
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right", no_wrap=col in no_wrap)
    return t


def status(text: str, quiet: bool = False):
    """A spinner with ``text`` on stderr while the block runs (a terminal only, and not ``quiet``)."""
    return err.status(text) if err.is_terminal and not quiet else contextlib.nullcontext()


@contextlib.contextmanager
def inference_progress(enabled: bool) -> Iterator[Any]:
    """A rich progress bar over images on stderr; in a pipe or a file a plain line every 10% instead (as a
    multi-process run's rank 0 prints); yields the callback, or None when not ``enabled``."""
    if not enabled:
        yield None
        return
    if not err.is_terminal:
        last = [-1]

        def plain(done: int, total: int) -> None:
            step = done * 10 // max(total, 1)
            if step != last[0]:
                last[0] = step
                err.print(f"inference: {done}/{total} images", markup=False, highlight=False)

        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("inference"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("inference", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def say(msg: str) -> None:
    """A step of long work, dim on stderr (``reading results...``)."""
    err.print(f"[dim]{msg}...[/]")


def warn(messages: Iterable[str]) -> None:
    for w in messages:
        err.print(f"warning: {w}", markup=False, highlight=False)


def counts(per_group: Dict[str, int]) -> str:
    """``rare 3, common 5, frequent 2`` with the group names in colour."""
    return ", ".join(f"{group_label(g)} {n}" for g, n in per_group.items())

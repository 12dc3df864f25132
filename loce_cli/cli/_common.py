"""Shared CLI plumbing: consoles, the error boundary, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from loce_cli.errors import LoceError

F = TypeVar("F", bound=Callable[..., Any])

STATE = {"debug": os.environ.get("LOCE_DEBUG", "") not in ("", "0")}

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1, prefix: str = "error") -> "typer.Exit":
    """Print ``error: message`` on stderr (one line, no markup) and return the Exit to raise."""
    print(f"{prefix}: {message}", file=sys.stderr)
    return typer.Exit(code)


def engine_errors(fn: F) -> F:
    """Turn engine failures into one line on stderr and exit code 1 (2 for usage); traceback with --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except LoceError as e:
            if STATE["debug"]:
                raise
            raise fail(e.one_line(), e.exit_code, getattr(e, "prefix", "error")) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except OSError as e:  # a full disk anywhere else than loce's atomic writers (logs, images, shards)
            import errno

            if e.errno not in (errno.ENOSPC, errno.EDQUOT) or STATE["debug"]:
                raise _unexpected(e) from None
            from loce_cli.atomic import disk_full

            raise fail(disk_full(e.filename or "an output file", 0, e).one_line()) from None
        except Exception as e:  # an unexpected bug: still one line unless --debug
            if STATE["debug"]:
                raise
            raise _unexpected(e) from None

    return wrapper  # type: ignore[return-value]


def _unexpected(e: BaseException) -> "typer.Exit":
    if STATE["debug"]:
        raise e
    return fail(f"unexpected {type(e).__name__}: {e} (hint: rerun with --debug for the traceback and report it)")


_GROUP_STYLE = {"r": "red", "c": "yellow", "f": "blue"}


def group_label(group: str) -> str:
    """Coloured frequency-group name for rich output; ``group`` is a key (``r``) or a name (``rare``)."""
    from loce_cli.core.frequency import GROUP_NAMES, NAME_TO_GROUP

    key = NAME_TO_GROUP.get(group, group)
    return f"[{_GROUP_STYLE[key]}]{GROUP_NAMES[key]}[/]"


def check_plot_path(plot) -> None:
    """``--plot FILE``: refuse (usage error) a file type matplotlib is not asked to write here."""
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise fail(f"--plot {plot}: unsupported file type {plot.suffix or '(none)'} (hint: use a .png file name)", 2)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

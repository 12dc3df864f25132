"""How a failure leaves ``loce``: one line on stderr and an exit code (the traceback only with ``--debug``).

This is the CLI's one exception boundary; the root group (:class:`loce_cli.cli.help_format.LoceGroup`) enters it
around the whole run:

- :func:`command_errors` around the invoked command: a ``LoceError`` becomes ``error: <message> (hint: ...)`` and
  its exit code (2 for usage), Ctrl-C ``error: interrupted`` (130), a full disk the disk-full line, anything else
  ``error: unexpected <Type>: ...`` (1);
- :func:`exit_standalone` around Typer's main: a command-line usage error becomes one line, exit 2.

A command that fails on its own terms raises :func:`fail`'s ``Exit`` (it has printed its line).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any, Callable, Iterator

import typer

from loce_cli.errors import LoceError

try:  # Typer 0.29 (requirements/runtime.txt); an older Typer (a GPU image's own) uses click itself
    from typer import _click
except ImportError:  # pragma: no cover - exercised only where an older Typer is installed
    _click = None

STATE = {"debug": os.environ.get("LOCE_DEBUG", "") not in ("", "0")}


def fail(message: str, code: int = 1, prefix: str = "error") -> "typer.Exit":
    """Print ``error: message`` on stderr (one line, no markup) and return the Exit to raise."""
    print(f"{prefix}: {message}", file=sys.stderr)
    return typer.Exit(code)


def _passes_through(e: BaseException) -> bool:
    """Typer's and click's own signals (an exit, an abort, a usage error): not failures of the command."""
    if isinstance(e, (typer.Exit, typer.Abort)):
        return True
    if _click is not None:
        return isinstance(e, _click.exceptions.ClickException)
    import click  # pragma: no cover - an older Typer

    return isinstance(e, (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort))


@contextlib.contextmanager
def command_errors() -> Iterator[None]:
    """Turn a command's failure into one line on stderr and its exit code; re-raise it with ``--debug``."""
    try:
        yield
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except Exception as e:
        if _passes_through(e):
            raise
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) and not STATE["debug"]:
            from loce_cli.atomic import disk_full  # a full disk outside loce's atomic writers (logs, images, shards)

            e = disk_full(e.filename or "an output file", 0, e)
        if STATE["debug"]:
            raise
        if isinstance(e, LoceError):
            raise fail(e.one_line(), e.exit_code, getattr(e, "prefix", "error")) from None
        raise fail(f"unexpected {type(e).__name__}: {e} (hint: rerun with --debug for the traceback and report "
                   "it)") from None


def usage_line(error: Any) -> str:
    """One line for a usage error: what was wrong and where the command's help is."""
    message = " ".join(error.format_message().split()).replace("Value error, ", "")
    ctx = getattr(error, "ctx", None)
    where = f"{ctx.command_path} --help" if ctx is not None else "loce --help"
    return f"error: {message} (hint: see {where})"


def exit_standalone(main: Callable[[], Any]) -> None:
    """Run Typer's main (``standalone_mode=False``) and exit as a program: a usage error is one line (exit 2)."""
    try:
        rv = main()
    except _click.exceptions.UsageError as e:
        if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            print(usage_line(e), file=sys.stderr)
        sys.exit(e.exit_code)
    except _click.exceptions.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    except OSError as e:  # `loce ... --help | head`: stop quietly, as click does
        if e.errno != errno.EPIPE:
            raise
        sys.stdout = _click.utils.PacifyFlushWrapper(sys.stdout)
        sys.stderr = _click.utils.PacifyFlushWrapper(sys.stderr)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)  # an Exit(code) comes back as its code

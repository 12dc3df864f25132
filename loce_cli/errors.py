"""Domain errors. The engine raises these; the CLI prints ``error: <message> (hint: <hint>)`` and exits."""

from __future__ import annotations


class LoceError(Exception):
    """A failure the user can act on: ``message`` says what and where, ``hint`` how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = _no_full_stop(self.message)
        if self.hint:
            text += f" (hint: {_no_full_stop(self.hint)})"
        return text


def _no_full_stop(text: str) -> str:
    """The text without its closing full stop; an ellipsis (``KEY=...``) stays."""
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


class LoceUsageError(LoceError):
    """Options that cannot work together or are out of range (exit code 2, like a command-line usage error)."""

    exit_code = 2


class DataError(LoceError):
    """An input file or dataset is missing, unreadable or not valid."""


class OutputExistsError(LoceError):
    """The output location holds something we refuse to overwrite."""


class EnvironmentProblem(LoceError):
    """A required package is missing or broken."""


class DiskFullError(LoceError):
    """The disk (or quota) filled while loce was writing a file."""


class ImageDataError(DataError):
    """One training / test image cannot be used (unreadable, empty, another size than annotated), named.

    Raised inside DataLoader workers too: torch re-raises it in the main process as ``ImageDataError(text)``
    where ``text`` is the worker's whole traceback; the constructor keeps only the original one-line message."""

    def __init__(self, message: str, hint: str | None = None):
        if "Traceback" in message:
            last = [line for line in message.strip().splitlines() if line.strip()][-1]
            message = last.split(f"{type(self).__name__}: ", 1)[-1]
            if " (hint: " in message and hint is None:
                message, hint = message.split(" (hint: ", 1)
                hint = hint.rstrip(")")
        super().__init__(message, hint)

    def __str__(self) -> str:
        return self.one_line()

    def __reduce__(self):
        return (type(self), (self.message, self.hint))

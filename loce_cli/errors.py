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
        text = self.message.rstrip(".")
        if self.hint:
            text += f" (hint: {self.hint.rstrip('.')})"
        return text


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

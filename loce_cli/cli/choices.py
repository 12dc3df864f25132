"""The value sets of the CLI's choice options. Single-value options are typed with ``Literal``: Typer lists the values
in ``--help`` and refuses any other with a usage error (exit 2). Repeatable options (Typer takes no list of
``Literal``) show the values through :func:`shown` and are checked by the engine. Each set equals the engine's own
constant (tests/cli/test_help.py checks), kept here so that ``loce --help`` imports no engine module."""

from __future__ import annotations

from typing import Literal, Sequence

SPLITS = ("all", "rare", "common", "frequent")
METRICS = ("bbox", "segm")
EVALUATORS = ("streaming", "lvis", "fast")
PROTOCOLS = ("standard", "fixed", "pooled")
REPORT_FORMATS = ("table", "md", "json", "csv")
LAUNCHERS = ("none", "pytorch", "slurm")
LVIS_VERSIONS = ("auto", "v1", "v0.5")
CHECK_IMAGES = ("all", "sample", "none")
LIKES = ("lvis-v1", "lvis-v0.5")

Split = Literal[SPLITS]
Evaluator = Literal[EVALUATORS]
ReportFormat = Literal[REPORT_FORMATS]
Launcher = Literal[LAUNCHERS]
LvisVersion = Literal[LVIS_VERSIONS]
CheckImages = Literal[CHECK_IMAGES]


def shown(values: Sequence[str]) -> str:
    """The metavar of a repeatable choice option: ``[bbox|segm]``."""
    return "[" + "|".join(values) + "]"

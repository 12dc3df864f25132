"""matplotlib set up once (the Agg backend: files, no screen) and figures saved as the tool writes files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from loce_cli.atomic import atomic_path  # noqa: E402
from loce_cli.errors import LoceUsageError  # noqa: E402

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def check_plot_path(out: Path, hint: str = "use a .png, .pdf or .svg file name") -> Path:
    """``--plot FILE``'s file type, refused before any work when matplotlib cannot write it."""
    out = Path(out)
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise LoceUsageError(f"--plot {out}: unsupported file type {out.suffix or '(none)'}", hint)
    return out


def save_figure(fig, out: Path, dpi=None) -> Path:
    """``fig`` written to ``out`` through a temporary name (an interrupted run leaves no half-written picture),
    then closed."""
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format=out.suffix.lower().lstrip(".") or "png")
    plt.close(fig)
    return out

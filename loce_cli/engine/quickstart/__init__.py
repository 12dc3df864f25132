"""``loce quickstart``: the main job on built-in synthetic data (``steps``) and its side-by-side pictures."""

from loce_cli.engine.quickstart.steps import QuickstartResult, run_quickstart

__all__ = ["QuickstartResult", "run_quickstart"]

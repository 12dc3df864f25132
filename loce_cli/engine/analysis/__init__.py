"""``loce analyze``: where each frequency group's AP goes, under LVIS's federated rules.

- ``matching``: every kept detection and object labelled once (TIDE's error types, who takes each object).
- ``errors``: the AP50 each error type costs per group; ``confusion``: cross-group confusion; ``calibration``:
  mean scores, ECE and reliability per group; ``run``: ``analyze`` (one run); ``comparison``: ``compare`` (two);
  ``tables``: the rows the cli draws and the two ``headline`` lines of a comparison.
"""

from loce_cli.engine.analysis.comparison import Comparison, compare
from loce_cli.engine.analysis.matching import ERROR_TYPES
from loce_cli.engine.analysis.run import ANALYSIS_METRICS, Analysis, analyze
from loce_cli.engine.analysis.tables import headline, tables

__all__ = ["ANALYSIS_METRICS", "ERROR_TYPES", "Analysis", "Comparison", "analyze", "compare", "headline", "tables"]

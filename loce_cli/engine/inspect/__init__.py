"""``loce inspect``: the LOCE state stored in a checkpoint (mean scores, feature memory), read without a model."""

from loce_cli.engine.inspect.state import MemoryReport, ScoresReport, inspect_memory, inspect_scores

__all__ = ["MemoryReport", "ScoresReport", "inspect_memory", "inspect_scores"]

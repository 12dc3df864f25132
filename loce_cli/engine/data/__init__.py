"""Datasets: synthetic ones (``synth``, LVIS-shaped ``synth_lvis``), real LVIS checked and indexed (``prep``), class
statistics (``stats``), a config's data checked against the disk (``checks``) and an annotation file's identity."""

from loce_cli.engine.data.checks import check_config_data
from loce_cli.engine.data.identity import annotation_sha256
from loce_cli.engine.data.stats import DatasetStats, dataset_stats, load_annotation_json
from loce_cli.engine.data.synth import SynthOptions, SynthResult, synthesize
from loce_cli.engine.data.synth_lvis import LvisLikeOptions, LvisLikeResult, synthesize_lvis_like

__all__ = ["DatasetStats", "LvisLikeOptions", "LvisLikeResult", "SynthOptions", "SynthResult", "annotation_sha256",
           "check_config_data", "dataset_stats", "load_annotation_json", "synthesize", "synthesize_lvis_like"]

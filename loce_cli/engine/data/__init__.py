"""Datasets: synthetic ones (``synth``, LVIS-shaped ``synth_lvis``), real LVIS checked and indexed (``prep``), class
statistics (``stats``), a user's COCO-format data imported (``coco_import``, checked by ``coco_checks``), a config's data
checked against the disk (``checks``) and an annotation file's identity."""

from loce_cli.engine.data.checks import check_config_data
from loce_cli.engine.data.coco_import import ImportResult, import_coco
from loce_cli.engine.data.identity import annotation_sha256
from loce_cli.engine.data.stats import DatasetStats, dataset_stats, load_annotation_json
from loce_cli.engine.data.synth import SynthOptions, SynthResult, synthesize
from loce_cli.engine.data.synth_lvis import LvisLikeOptions, LvisLikeResult, synthesize_lvis_like

__all__ = ["DatasetStats", "ImportResult", "LvisLikeOptions", "LvisLikeResult", "SynthOptions", "SynthResult",
           "annotation_sha256", "check_config_data", "dataset_stats", "import_coco", "load_annotation_json",
           "synthesize", "synthesize_lvis_like"]

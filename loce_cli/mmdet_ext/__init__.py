"""The single adapter between loce and mmdet 2.x / mmcv 1.x. Importing it registers every loce component,
so any mmdet config can use them with ``custom_imports=dict(imports=['loce_cli.mmdet_ext'])``.

It first applies :mod:`loce_cli.compat` (numpy aliases that mmdet 2.28 and lvis 0.5.3 still use).
"""

from loce_cli import compat

compat.apply()
compat.quiet_known_noise()

from loce_cli.mmdet_ext.datasets import LoceLVISDataset  # noqa: E402  (registers with mmdet's DATASETS)

__all__ = ["LoceLVISDataset"]

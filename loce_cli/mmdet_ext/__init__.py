"""The single adapter between loce and mmdet 2.x / mmcv 1.x. Importing it registers every loce component,
so any mmdet config can use them with ``custom_imports=dict(imports=['loce_cli.mmdet_ext'])``:

- ``EquilibriumLoss``, and the baselines' ``EQLv2Loss`` and ``FederatedLoss`` (LOSSES), ``ClassFrequencyHook``
  (HOOKS; the federated loss's class frequencies), ``LoceBBoxHead``, ``LoceRoIHead``, ``NormedMaskHead`` (HEADS),
  ``LoceMaskRCNN``, ``LoceFasterRCNN`` (DETECTORS), ``LoceMemoryInitHook`` (HOOKS), ``LoceLVISDataset`` (DATASETS).

It first applies :mod:`loce_cli.compat` (numpy aliases that mmdet 2.28 and lvis 0.5.3 still use), and
:func:`loce_cli.mmdet_ext.cuda_ops.install` (RoIAlign / NMS on CUDA through torchvision when mmcv-full was
built without CUDA ops), :func:`loce_cli.mmdet_ext.amp_ops.install` (those ops under autocast),
:func:`loce_cli.mmdet_ext.parallel_compat.install` (mmcv's GPU scatter on torch 2.x)
and :func:`loce_cli.mmdet_ext.checkpoint_hooks.install` (mmcv's checkpoint loads through loce's weights-only loader).
"""

from loce_cli import compat

compat.apply()
compat.quiet_known_noise()

from loce_cli.mmdet_ext import amp_ops, checkpoint_hooks, cuda_ops, parallel_compat  # noqa: E402

cuda_ops.install()
amp_ops.install()  # after cuda_ops: half-precision inputs (autocast) reach mmcv's / torchvision's kernels as fp32
parallel_compat.install()
checkpoint_hooks.install()  # every mmcv / mmdet checkpoint load: weights only, through loce's one loader

# noqa: E402 below: registration needs the compat step first.
from loce_cli.mmdet_ext.datasets import LoceLVISDataset  # noqa: E402
from loce_cli.mmdet_ext.eqlv2 import EQLv2Loss  # noqa: E402
from loce_cli.mmdet_ext.federated import ClassFrequencyHook, FederatedLoss  # noqa: E402
from loce_cli.mmdet_ext.detector import LoceFasterRCNN, LoceMaskRCNN, freeze_except  # noqa: E402
from loce_cli.mmdet_ext.heads import LoceBBoxHead, LoceRoIHead, NormedMaskHead  # noqa: E402
from loce_cli.mmdet_ext.memory_init import LoceMemoryInitHook, fill_memory  # noqa: E402
from loce_cli.mmdet_ext.losses import EquilibriumLoss  # noqa: E402

__all__ = ["ClassFrequencyHook", "EQLv2Loss", "EquilibriumLoss", "FederatedLoss", "LoceBBoxHead", "LoceFasterRCNN",
           "LoceLVISDataset", "LoceMaskRCNN", "LoceMemoryInitHook",
           "LoceRoIHead", "NormedMaskHead", "fill_memory", "freeze_except"]

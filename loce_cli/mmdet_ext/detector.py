"""``LoceMaskRCNN`` / ``LoceFasterRCNN``: mmdet's ``MaskRCNN`` / ``FasterRCNN`` with the LOCE fine-tune's freezing."""

from __future__ import annotations

from typing import List, Optional, Sequence

from torch import nn

from mmdet.models.builder import DETECTORS
from mmdet.models.detectors import FasterRCNN, MaskRCNN

DEFAULT_TRAINABLE = ("fc_cls", "fc_reg", "rpn", "mask_head")


def freeze_except(model: nn.Module, trainable: Sequence[str]) -> List[str]:
    """Set ``requires_grad=False`` on every parameter whose name contains none of ``trainable``.

    Returns the frozen parameter names. Must run before the model is wrapped for distributed training (DDP
    only reduces parameters that require gradients when it is built).
    """
    frozen = []
    for name, p in model.named_parameters():
        if any(key in name for key in trainable):
            p.requires_grad_(True)
        else:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def summarize_names(names: Sequence[str], depth: int = 2) -> str:
    """``backbone.layer1 (12), neck.fpn_convs (8)``: parameter names grouped by their first ``depth`` parts."""
    groups: dict = {}
    for name in names:
        key = ".".join(name.split(".")[:depth])
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(f"{k} ({n})" for k, n in groups.items()) or "nothing"


def set_norm_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class TrainableMixin:
    """A two-stage detector whose parameters train only where their names match ``trainable``.

    Args:
        trainable: substrings of parameter names that train (LOCE fine-tune: ``fc_cls``, ``fc_reg``, ``rpn``, and
            ``mask_head`` for Mask R-CNN); ``None`` trains everything (the base model). While freezing, every
            BatchNorm stays in eval mode, also after ``model.train()``.
    """

    def __init__(self, *args, trainable: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.trainable = tuple(trainable) if trainable is not None else None
        self.frozen_params: List[str] = []
        if self.trainable is not None:
            if not self.trainable:
                raise ValueError(f"{type(self).__name__} trainable must name at least one parameter group")
            self.frozen_params = freeze_except(self, self.trainable)

    def freeze_summary(self) -> str:
        """One line for the training log: what trains, what stays frozen (logged by the training, not here: a model
        built for evaluation or inference says nothing)."""
        n_train = sum(p.numel() for p in self.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in self.parameters())
        return (f"LOCE fine-tune: {n_train:,} of {n_all:,} weights train (names containing "
                f"{', '.join(self.trainable)}); the others keep the loaded checkpoint's values, frozen: "
                f"{summarize_names(self.frozen_params)}")

    def init_weights(self):
        super().init_weights()
        if self.trainable is not None:  # init_weights must not undo the freeze
            freeze_except(self, self.trainable)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.trainable is not None:
            set_norm_eval(self)
        return self


@DETECTORS.register_module()
class LoceMaskRCNN(TrainableMixin, MaskRCNN):
    """Mask R-CNN with ``trainable`` (see :class:`TrainableMixin`)."""


@DETECTORS.register_module()
class LoceFasterRCNN(TrainableMixin, FasterRCNN):
    """Faster R-CNN (boxes only) with ``trainable`` (see :class:`TrainableMixin`): LOCE's fine-tune trains
    ``fc_cls``, ``fc_reg`` and the RPN."""

"""``FederatedLoss`` (LOSSES) and ``ClassFrequencyHook`` (HOOKS): the federated loss for a sigmoid box classifier.

    bbox_head=dict(loss_cls=dict(_delete_=True, type='FederatedLoss', num_classes=1203, num_classes_sampled=50))
    custom_hooks=[dict(type='ClassFrequencyHook')]

The hook counts, before training, how many training images hold each class (from the training dataset's own
annotations: LVIS's ``image_count``) and gives ``count ** 0.5`` to every ``FederatedLoss`` of the model as its
negative-sampling weights (buffer ``loss_cls.state.weights``, saved in checkpoints). Inference: ``sigmoid(z_c)``.
Formulas in :mod:`loce_cli.core.losses.federated`.
"""

from __future__ import annotations

from typing import Optional

import torch
from mmcv.runner import HOOKS, Hook

from mmdet.models.builder import LOSSES

from loce_cli.core.optional_state import OptionalState
from loce_cli.core.losses.federated import (FREQ_POWER, federated_class_mask, federated_loss, federated_weights,
                                            image_counts_from_labels)
from loce_cli.mmdet_ext.sigmoid_loss import SigmoidClassifierLoss
from loce_cli.mmdet_ext.unwrap import image_labels, unwrap_dataset, unwrap_model


class FederatedState(OptionalState):
    """``weights [C]``: the negative-sampling weights (image count ** power); zeros until set."""

    weights: torch.Tensor

    def __init__(self, num_classes: int):
        super().__init__()
        self.register_buffer("weights", torch.zeros(num_classes))
        self.ready = False

    def on_state_loaded(self) -> None:
        self.ready = True


@LOSSES.register_module()
class FederatedLoss(SigmoidClassifierLoss):
    """Args:
        num_classes: ``C``; ``None`` (default) takes the box head's ``num_classes`` (the head asks the loss for its
            channel count when it is built, and the state is made then).
        num_classes_sampled: classes per step, present ones included (50 on LVIS).
        freq_power: exponent of the image counts (0.5).
        loss_weight: multiplier of the loss.
    """

    def __init__(self, num_classes: Optional[int] = None, num_classes_sampled: int = 50,
                 freq_power: float = FREQ_POWER, loss_weight: float = 1.0, use_sigmoid: bool = True):
        if num_classes_sampled < 1:
            raise ValueError(f"num_classes_sampled must be >= 1, got {num_classes_sampled}")
        self.num_classes_sampled = int(num_classes_sampled)
        self.freq_power = float(freq_power)
        super().__init__(num_classes, loss_weight, use_sigmoid)

    def make_state(self, num_classes: int) -> FederatedState:
        return FederatedState(num_classes)

    def set_image_counts(self, counts: torch.Tensor) -> None:
        """``counts [C]``: training images per class."""
        if counts.shape[0] != self.num_classes:
            raise ValueError(f"{counts.shape[0]} image counts for a {self.num_classes}-class FederatedLoss")
        self.state.weights.copy_(federated_weights(counts, self.freq_power))
        self.state.ready = True

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None, **kwargs) -> torch.Tensor:
        self.check_call(reduction_override)
        if not self.state.ready:
            raise RuntimeError("FederatedLoss has no class frequencies: add custom_hooks=[dict(type="
                               "'ClassFrequencyHook')] to the config (or call set_image_counts)")
        mask = federated_class_mask(label, self.state.weights, self.num_classes_sampled)
        return self.loss_weight * federated_loss(cls_score, label, mask, sample_weight=weight)


def federated_losses(model) -> list:
    """Every ``FederatedLoss`` inside ``model`` (the unwrapped detector)."""
    return [m for m in model.modules() if isinstance(m, FederatedLoss)]


@HOOKS.register_module()
class ClassFrequencyHook(Hook):
    """At the first epoch's start: give every ``FederatedLoss`` of the model the training set's images per class."""

    def __init__(self):
        self.counts: Optional[torch.Tensor] = None

    def before_train_epoch(self, runner) -> None:  # the first one: runner.data_loader is set from here on
        if self.counts is not None:
            return
        losses = federated_losses(unwrap_model(runner.model))
        if not losses:
            return
        dataset = unwrap_dataset(runner.data_loader.dataset)
        num_classes = len(dataset.CLASSES)
        self.counts = image_counts_from_labels(image_labels(dataset), num_classes)
        for loss in losses:
            loss.set_image_counts(self.counts)
        runner.logger.info(f"federated loss: image counts of {num_classes} classes from the training set "
                           f"({int((self.counts == 0).sum())} classes in no image)")

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
from torch import nn

from mmdet.models.builder import LOSSES
from mmdet.models.losses import accuracy

from loce_cli.core._state import OptionalState
from loce_cli.core.losses.federated import (FREQ_POWER, federated_class_mask, federated_loss, federated_weights,
                                            image_counts_from_labels)
from loce_cli.mmdet_ext.eqlv2 import sigmoid_objectness_scores


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
class FederatedLoss(nn.Module):
    """Args:
        num_classes: ``C``; ``None`` (default) takes the box head's ``num_classes`` (the head asks the loss for its
            channel count when it is built, and the state is made then).
        num_classes_sampled: classes per step, present ones included (50 on LVIS).
        freq_power: exponent of the image counts (0.5).
        loss_weight: multiplier of the loss.
    """

    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def __init__(self, num_classes: Optional[int] = None, num_classes_sampled: int = 50, freq_power: float = FREQ_POWER,
                 loss_weight: float = 1.0, use_sigmoid: bool = True):
        super().__init__()
        if not use_sigmoid:
            raise ValueError("FederatedLoss is a sigmoid loss (use_sigmoid=True)")
        if num_classes_sampled < 1:
            raise ValueError(f"num_classes_sampled must be >= 1, got {num_classes_sampled}")
        self.use_sigmoid = True
        self.num_classes = None
        self.num_classes_sampled = int(num_classes_sampled)
        self.freq_power = float(freq_power)
        self.loss_weight = float(loss_weight)
        if num_classes is not None:
            self._make_state(int(num_classes))

    def _make_state(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.state = FederatedState(num_classes)

    def set_image_counts(self, counts: torch.Tensor) -> None:
        """``counts [C]``: training images per class."""
        if counts.shape[0] != self.num_classes:
            raise ValueError(f"{counts.shape[0]} image counts for a {self.num_classes}-class FederatedLoss")
        self.state.weights.copy_(federated_weights(counts, self.freq_power))
        self.state.ready = True

    def get_cls_channels(self, num_classes: int) -> int:
        if self.num_classes is None:
            self._make_state(int(num_classes))
        elif num_classes != self.num_classes:
            raise ValueError(f"FederatedLoss num_classes={self.num_classes} but the box head has {num_classes}")
        return num_classes + 1

    def get_activation(self, cls_score: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(cls_score.float())
        return torch.cat([probs[:, :-1], probs.new_zeros((probs.shape[0], 1))], dim=1)

    def get_accuracy(self, cls_score: torch.Tensor, labels: torch.Tensor) -> dict:
        return dict(acc=accuracy(sigmoid_objectness_scores(cls_score.detach(), with_objectness=False), labels))

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None, **kwargs) -> torch.Tensor:
        if reduction_override not in (None, "mean"):
            raise ValueError("FederatedLoss supports only the mean reduction")
        if self.num_classes is None:
            raise ValueError("FederatedLoss has no class count: use it inside a box head or pass num_classes=")
        if not self.state.ready:
            raise RuntimeError("FederatedLoss has no class frequencies: add custom_hooks=[dict(type="
                               "'ClassFrequencyHook')] to the config (or call set_image_counts)")
        mask = federated_class_mask(label, self.state.weights, self.num_classes_sampled)
        return self.loss_weight * federated_loss(cls_score, label, mask, sample_weight=weight)


def _federated_losses(model) -> list:
    return [m for m in model.modules() if isinstance(m, FederatedLoss)]


@HOOKS.register_module()
class ClassFrequencyHook(Hook):
    """At the first epoch's start: give every ``FederatedLoss`` of the model the training set's images-per-class counts."""

    def __init__(self):
        self.counts: Optional[torch.Tensor] = None

    def before_train_epoch(self, runner) -> None:  # the first one: runner.data_loader is set from here on
        if self.counts is not None:
            return
        from loce_cli.mmdet_ext.hooks import _image_labels, _unwrap, unwrap_dataset

        losses = _federated_losses(_unwrap(runner.model))
        if not losses:
            return
        dataset = unwrap_dataset(runner.data_loader.dataset)
        num_classes = len(dataset.CLASSES)
        self.counts = image_counts_from_labels(_image_labels(dataset), num_classes)
        for loss in losses:
            loss.set_image_counts(self.counts)
        runner.logger.info(f"federated loss: image counts of {num_classes} classes from the training set "
                           f"({int((self.counts == 0).sum())} classes in no image)")

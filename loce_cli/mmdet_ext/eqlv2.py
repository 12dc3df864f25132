"""``EQLv2Loss`` (LOSSES): Equalization Loss v2 as an mmdet classification loss for a sigmoid box classifier.

Use it as ``loss_cls`` of mmdet's ``Shared2FCBBoxHead`` (the head asks the loss for its channel count, activation
and accuracy, so inference uses sigmoid scores: ``sigmoid(z_c) * (1 - sigmoid(z_bg))``)::

    bbox_head=dict(loss_cls=dict(_delete_=True, type='EQLv2Loss', num_classes=1203))

The running statistics are buffers of ``loss_cls.state`` (``roi_head.bbox_head.loss_cls.state.*``): saved in every
checkpoint, resumed exactly, all-reduced across ranks every step (see :class:`loce_cli.core.losses.EQLv2State`).
The formulas are in :mod:`loce_cli.core.losses.eqlv2`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mmdet.models.builder import LOSSES
from mmdet.models.losses import accuracy

from loce_cli.core.losses.eqlv2 import EQLv2State, eqlv2_gradient_stats, eqlv2_loss, eqlv2_weights


def sigmoid_objectness_scores(cls_score: torch.Tensor, with_objectness: bool = True) -> torch.Tensor:
    """``[N, C+1]`` scores of a sigmoid classifier with an objectness channel (last): classes
    ``sigmoid(z_c) * (1 - sigmoid(z_bg))`` (or plain ``sigmoid(z_c)``), last column the background probability
    (mmdet's NMS drops it)."""
    probs = torch.sigmoid(cls_score.float())
    if with_objectness:
        probs = torch.cat([probs[:, :-1] * (1.0 - probs[:, -1:]), probs[:, -1:]], dim=1)
    return probs


@LOSSES.register_module()
class EQLv2Loss(nn.Module):
    """Args:
        num_classes: ``C``; ``None`` (default) takes the box head's ``num_classes`` (the head asks the loss for its
            channel count when it is built, and the state is made then).
        gamma, mu, alpha: the paper's 12, 0.8, 4.
        loss_weight: multiplier of the loss.
        test_with_objectness: class score times ``1 - sigmoid(z_bg)`` at inference (the paper's), else
            ``sigmoid(z_c)``.
    """

    custom_cls_channels = True  # mmdet's BBoxHead then takes channels, activation and accuracy from the loss
    custom_activation = True
    custom_accuracy = True

    def __init__(self, num_classes: Optional[int] = None, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 loss_weight: float = 1.0, test_with_objectness: bool = True, use_sigmoid: bool = True):
        super().__init__()
        if not use_sigmoid:
            raise ValueError("EQLv2Loss is a sigmoid loss (use_sigmoid=True)")
        self.use_sigmoid = True
        self.num_classes = None
        self.gamma, self.mu, self.alpha = float(gamma), float(mu), float(alpha)
        self.loss_weight = float(loss_weight)
        self.test_with_objectness = bool(test_with_objectness)
        if num_classes is not None:
            self._make_state(int(num_classes))

    def _make_state(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.state = EQLv2State(num_classes)

    def get_cls_channels(self, num_classes: int) -> int:
        if self.num_classes is None:
            self._make_state(int(num_classes))
        elif num_classes != self.num_classes:
            raise ValueError(f"EQLv2Loss num_classes={self.num_classes} but the box head has {num_classes}")
        return num_classes + 1

    def get_activation(self, cls_score: torch.Tensor) -> torch.Tensor:
        return sigmoid_objectness_scores(cls_score, self.test_with_objectness)

    def get_accuracy(self, cls_score: torch.Tensor, labels: torch.Tensor) -> dict:
        return dict(acc=accuracy(sigmoid_objectness_scores(cls_score.detach()), labels))

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None, **kwargs) -> torch.Tensor:
        """``cls_score [N, C+1]``, ``label [N]`` in ``0..C``; the mean over the ``N`` RoIs (mmdet's label weights
        multiply the elements; ``avg_factor`` is not used: the paper divides by ``N``). Every call in training mode
        updates the statistics (a collective across ranks)."""
        if reduction_override not in (None, "mean"):
            raise ValueError("EQLv2Loss supports only the mean reduction")
        if self.num_classes is None:
            raise ValueError("EQLv2Loss has no class count: use it inside a box head or pass num_classes=")
        pos_w, neg_w = eqlv2_weights(self.state.ratio, self.gamma, self.mu, self.alpha)
        loss, used = eqlv2_loss(cls_score, label, pos_w, neg_w, sample_weight=weight)
        if self.training and torch.is_grad_enabled():
            self.state.update(eqlv2_gradient_stats(cls_score.detach(), label, used))
        return self.loss_weight * loss

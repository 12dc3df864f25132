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
from mmdet.models.builder import LOSSES

from loce_cli.core.losses.eqlv2 import EQLv2State, eqlv2_gradient_stats, eqlv2_loss, eqlv2_weights
from loce_cli.mmdet_ext.sigmoid_loss import SigmoidClassifierLoss


@LOSSES.register_module()
class EQLv2Loss(SigmoidClassifierLoss):
    """Args:
        num_classes: ``C``; ``None`` (default) takes the box head's ``num_classes`` (the head asks the loss for its
            channel count when it is built, and the state is made then).
        gamma, mu, alpha: the paper's 12, 0.8, 4.
        loss_weight: multiplier of the loss.
        test_with_objectness: class score times ``1 - sigmoid(z_bg)`` at inference (the paper's), else
            ``sigmoid(z_c)``.
    """

    def __init__(self, num_classes: Optional[int] = None, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 loss_weight: float = 1.0, test_with_objectness: bool = True, use_sigmoid: bool = True):
        self.gamma, self.mu, self.alpha = float(gamma), float(mu), float(alpha)
        self.with_objectness = bool(test_with_objectness)
        super().__init__(num_classes, loss_weight, use_sigmoid)

    def make_state(self, num_classes: int) -> EQLv2State:
        return EQLv2State(num_classes)

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None, **kwargs) -> torch.Tensor:
        """``cls_score [N, C+1]``, ``label [N]`` in ``0..C``; the mean over the ``N`` RoIs (mmdet's label weights
        multiply the elements; ``avg_factor`` is not used: the paper divides by ``N``). Every call in training mode
        updates the statistics (a collective across ranks)."""
        self.check_call(reduction_override)
        pos_w, neg_w = eqlv2_weights(self.state.ratio, self.gamma, self.mu, self.alpha)
        loss, used = eqlv2_loss(cls_score, label, pos_w, neg_w, sample_weight=weight)
        if self.training and torch.is_grad_enabled():
            self.state.update(eqlv2_gradient_stats(cls_score.detach(), label, used))
        return self.loss_weight * loss

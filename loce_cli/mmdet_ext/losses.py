"""``EquilibriumLoss`` registered in mmdet's LOSSES."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mmdet.models.builder import LOSSES

from loce_cli.core.equilibrium_loss import equilibrium_loss


@LOSSES.register_module()
class EquilibriumLoss(nn.Module):
    """LOCE's equilibrium loss with mmdet's loss conventions (``loss_weight``, ``reduction``,
    ``reduction_override``, ``avg_factor``).

    The mean classification scores come from the box head that owns the tracker (``LoceBBoxHead`` passes
    ``mean_scores=``); used elsewhere it needs them passed explicitly.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.loss_weight = loss_weight
        self.reduction = reduction

    def forward(self, cls_score: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None,
                mean_scores: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        if mean_scores is None:
            raise ValueError("EquilibriumLoss needs mean_scores: use it as loss_cls of LoceBBoxHead, which owns the "
                             "mean-score tracker, or pass mean_scores=")
        reduction = reduction_override or self.reduction
        return self.loss_weight * equilibrium_loss(cls_score, label, mean_scores, weight=weight,
                                                   reduction=reduction, avg_factor=avg_factor)

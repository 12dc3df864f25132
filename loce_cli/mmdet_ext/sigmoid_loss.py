"""What the sigmoid-classifier baselines (``EQLv2Loss``, ``FederatedLoss``) share: mmdet's custom-classifier
protocol (``BBoxHead`` asks the loss for its channel count, activation and accuracy, so inference uses the loss's
scores instead of a softmax) and a per-class state made when the head tells the loss its class count."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mmdet.models.losses import accuracy


def sigmoid_objectness_scores(cls_score: torch.Tensor, with_objectness: bool = True) -> torch.Tensor:
    """``[N, C+1]`` scores of a sigmoid classifier whose last channel is objectness / background: classes
    ``sigmoid(z_c) * (1 - sigmoid(z_bg))`` (or plain ``sigmoid(z_c)``), last column the background probability
    (mmdet's NMS drops it)."""
    probs = torch.sigmoid(cls_score.float())
    if with_objectness:
        probs = torch.cat([probs[:, :-1] * (1.0 - probs[:, -1:]), probs[:, -1:]], dim=1)
    return probs


class SigmoidClassifierLoss(nn.Module):
    """Base of a sigmoid classification loss over ``C + 1`` logits (``C`` classes, then background/objectness).

    ``num_classes=None`` takes the box head's: the head calls :meth:`get_cls_channels` when it is built, and
    :meth:`make_state` creates the subclass's per-class state then. Subclasses set ``with_objectness`` (the class
    score at inference is multiplied by ``1 - sigmoid(z_bg)``) and implement :meth:`make_state` and the loss.
    """

    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True
    with_objectness = False

    def __init__(self, num_classes: Optional[int] = None, loss_weight: float = 1.0, use_sigmoid: bool = True):
        super().__init__()
        if not use_sigmoid:
            raise ValueError(f"{type(self).__name__} is a sigmoid loss (use_sigmoid=True)")
        self.use_sigmoid = True
        self.loss_weight = float(loss_weight)
        self.num_classes: Optional[int] = None
        if num_classes is not None:
            self._set_classes(int(num_classes))

    def make_state(self, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def _set_classes(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.state = self.make_state(num_classes)

    def get_cls_channels(self, num_classes: int) -> int:
        if self.num_classes is None:
            self._set_classes(int(num_classes))
        elif num_classes != self.num_classes:
            raise ValueError(f"{type(self).__name__} num_classes={self.num_classes} but the box head has "
                             f"{num_classes}")
        return num_classes + 1

    def get_activation(self, cls_score: torch.Tensor) -> torch.Tensor:
        probs = sigmoid_objectness_scores(cls_score, self.with_objectness)
        if not self.with_objectness:  # the background column is not a class: never a detection
            probs[:, -1] = 0.0
        return probs

    def get_accuracy(self, cls_score: torch.Tensor, labels: torch.Tensor) -> dict:
        return dict(acc=accuracy(sigmoid_objectness_scores(cls_score.detach(), self.with_objectness), labels))

    def check_call(self, reduction_override: Optional[str]) -> None:
        if reduction_override not in (None, "mean"):
            raise ValueError(f"{type(self).__name__} supports only the mean reduction")
        if self.num_classes is None:
            raise ValueError(f"{type(self).__name__} has no class count: use it inside a box head or pass "
                             "num_classes=")

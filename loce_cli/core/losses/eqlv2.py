"""Equalization Loss v2 (Tan et al., "Equalization Loss v2: A New Gradient Balance Approach for Long-tailed Object
Detection", CVPR 2021).

A sigmoid classifier with ``C + 1`` outputs: one per class and a last objectness (background) channel. Each class
``j`` is an independent binary task. Over training, EQLv2 accumulates for every class the magnitude of the positive
and of the negative gradients its logit received (``|dL/dz| = |p - y|``, each times the weight it was trained with)
and re-weights both from their ratio ``g_j = pos_j / neg_j``::

    f(g)  = 1 / (1 + exp(-gamma * (g - mu)))      mapping,  gamma = 12, mu = 0.8
    w_neg = f(g_j)                                 a class with few positive gradients gets its negatives damped
    w_pos = 1 + alpha * (1 - f(g_j))               ... and its positives amplified,  alpha = 4

The objectness channel always has weight 1 and collects no statistics. The ratio starts at a large value (100),
so the first step trains with weights 1. The loss is ``sum_{i,j} w_ij * BCE(z_ij, y_ij) / N``. At inference a
class's score is ``sigmoid(z_j) * (1 - sigmoid(z_bg))``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from loce_cli.core.optional_state import OptionalState

INITIAL_RATIO = 100.0  # pos/neg ratio before any statistics: f(100) = 1, so w_pos = w_neg = 1
RATIO_EPS = 1e-10


def eqlv2_weights(ratio: torch.Tensor, gamma: float = 12.0, mu: float = 0.8,
                  alpha: float = 4.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel positive and negative weights ``([C+1], [C+1])`` from the per-class ratio ``ratio [C]``
    (the objectness channel, last, gets weight 1 for both)."""
    neg = torch.sigmoid(gamma * (ratio.float() - mu))  # 1 / (1 + exp(-gamma (g - mu)))
    neg = torch.cat([neg, neg.new_ones(1)])
    pos = 1.0 + alpha * (1.0 - neg)
    return pos, neg


def _one_hot(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    target = torch.zeros_like(logits)
    target[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    return target


def eqlv2_loss(logits: torch.Tensor, labels: torch.Tensor, pos_w: torch.Tensor, neg_w: torch.Tensor,
               sample_weight: Optional[torch.Tensor] = None, avg_factor=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """EQLv2 loss and the per-element weights it used.

    Args:
        logits: ``[N, C+1]`` (last column: objectness / background).
        labels: ``[N]`` in ``0..C`` (``C`` = background, which is the objectness channel's positive).
        pos_w, neg_w: ``[C+1]`` from :func:`eqlv2_weights`.
        sample_weight: optional ``[N]`` (mmdet's label weights; 1 for every sampled RoI).
        avg_factor: divisor of the weighted sum (default ``N``, as in the paper's implementation).

    Returns:
        ``(loss scalar, weight [N, C+1])``; ``weight`` already includes ``sample_weight``.
    """
    if logits.dim() != 2 or pos_w.shape[0] != logits.shape[1] or neg_w.shape[0] != logits.shape[1]:
        raise ValueError(f"logits [N, C+1] and weights [C+1] must match, got {list(logits.shape)}, "
                         f"{list(pos_w.shape)}, {list(neg_w.shape)}")
    n = logits.shape[0]
    target = _one_hot(logits, labels)
    pos_w = pos_w.to(logits.dtype)
    neg_w = neg_w.to(logits.dtype)
    weight = neg_w + target * (pos_w - neg_w)  # pos_w where y = 1, neg_w where y = 0
    if sample_weight is not None:
        weight = weight * sample_weight.to(logits.dtype).view(-1, 1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    denom = n if avg_factor is None else avg_factor
    if torch.is_tensor(denom):
        denom = denom.to(logits.dtype).clamp_min(1.0)
    else:
        denom = max(float(denom), 1.0)
    return (bce * weight).sum() / denom, weight.detach()


@torch.no_grad()
def eqlv2_gradient_stats(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[2, C]``: this step's weighted positive and negative gradient magnitudes per class, ``sum_i w_ij |p_ij -
    y_ij|`` over the samples where ``y_ij = 1`` (row 0) and ``y_ij = 0`` (row 1); the objectness channel is left out.
    ``|p - y|`` is the magnitude of the BCE gradient w.r.t. the logit, so these equal ``N`` times the gradients
    autograd gives the mean loss."""
    target = _one_hot(logits, labels)
    grad = (torch.sigmoid(logits.float()) - target).abs() * weight.float()
    pos = (grad * target).sum(0)[:-1]
    neg = (grad * (1.0 - target)).sum(0)[:-1]
    return torch.stack([pos, neg])


class EQLv2State(OptionalState):
    """EQLv2's running statistics as buffers (saved in checkpoints, so a resumed run continues them):
    ``pos_grad [C]``, ``neg_grad [C]`` (accumulated) and ``ratio [C]`` (``pos / (neg + 1e-10)``, 100 at the start).

    :meth:`update` all-reduces the step's statistics across ranks when ``torch.distributed`` is initialised, so
    every rank holds the same state (mmdet's DDP does not broadcast buffers here); it is a collective: every rank
    must call it every step. Loading a state dict without these buffers (a base model) keeps the initial state.
    """

    pos_grad: torch.Tensor
    neg_grad: torch.Tensor
    ratio: torch.Tensor

    def __init__(self, num_classes: int):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.register_buffer("pos_grad", torch.zeros(num_classes))
        self.register_buffer("neg_grad", torch.zeros(num_classes))
        self.register_buffer("ratio", torch.full((num_classes,), INITIAL_RATIO))

    @torch.no_grad()
    def update(self, stats: torch.Tensor, sync: bool = True, group: Optional[object] = None) -> None:
        """Add one step's ``[2, C]`` statistics (:func:`eqlv2_gradient_stats`), summed over ranks."""
        if tuple(stats.shape) != (2, self.num_classes):
            raise ValueError(f"stats must be [2, {self.num_classes}], got {list(stats.shape)}")
        stats = stats.to(device=self.pos_grad.device, dtype=torch.float32).contiguous()
        if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
            dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
        self.pos_grad.add_(stats[0])
        self.neg_grad.add_(stats[1])
        torch.div(self.pos_grad, self.neg_grad + RATIO_EPS, out=self.ratio)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

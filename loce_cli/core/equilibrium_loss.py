"""Equilibrium loss (EBL) of LOCE.

``L = -log( s_y e^{z_y} / sum_j s_j e^{z_j} )``: softmax cross-entropy on ``z + log s``, where ``s`` holds the
per-class mean classification scores (background included). It adds a score-guided margin
``log(s_j / s_y)`` between every pair of classes, larger for weakly classified classes.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

SCORE_FLOOR = 1e-6
# Which backward computes the loss: "inplace" (the custom function below: fewest bytes moved, the CPU's best),
# "builtin" (torch's cross-entropy on ``z + log s``: fewest kernel launches, which is what counts on a GPU at
# these sizes) or "auto" (inplace on the CPU, builtin elsewhere). Both give the same values and gradients;
# bench/bench_core.py times them side by side.
BACKWARD = "auto"


def equilibrium_logits(logits: torch.Tensor, mean_scores: torch.Tensor, floor: float = SCORE_FLOOR) -> torch.Tensor:
    """``z + log(clamp(s, floor))``: logits ``[N, C+1]``, mean_scores ``[C+1]`` -> ``[N, C+1]``."""
    if mean_scores.dim() != 1 or mean_scores.shape[0] != logits.shape[-1]:
        raise ValueError(f"mean_scores must have shape [{logits.shape[-1]}], got {list(mean_scores.shape)}")
    return logits + _log_scores(mean_scores, logits, floor)


def _log_scores(mean_scores: torch.Tensor, logits: torch.Tensor, floor: float = SCORE_FLOOR) -> torch.Tensor:
    """``log(clamp(s, floor))`` in the logits' dtype and device, without gradient. Two tensor ops when nothing
    needs converting: on a GPU the loss is bound by host work per op at LVIS sizes, so every op counts."""
    if mean_scores.requires_grad:
        mean_scores = mean_scores.detach()
    if mean_scores.dtype != logits.dtype or mean_scores.device != logits.device:
        mean_scores = mean_scores.to(dtype=logits.dtype, device=logits.device)
    return mean_scores.clamp_min(floor).log_()  # clamp_min gives a fresh tensor: log_ may write over it


class _EquilibriumCE(torch.autograd.Function):
    """Per-sample CE on ``z + log s`` with a backward that reuses the saved log-probabilities in place
    (``softmax - onehot`` without allocating): the overhead over plain CE is one broadcast add."""

    @staticmethod
    def forward(ctx, logits, log_s, labels):
        logp = torch.log_softmax(logits + log_s, dim=1)
        ctx.save_for_backward(logp, labels)
        ctx.used = False
        return -logp.gather(1, labels.unsqueeze(1)).squeeze(1)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.used:
            raise RuntimeError("equilibrium_loss supports one backward pass per forward (no retain_graph)")
        ctx.used = True
        logp, labels = ctx.saved_tensors
        grad = logp.exp_()  # softmax, written over the saved log-probabilities
        grad.scatter_add_(1, labels.unsqueeze(1), grad.new_full((labels.shape[0], 1), -1.0))
        grad.mul_(grad_out.unsqueeze(1))
        return grad, None, None


def equilibrium_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mean_scores: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    avg_factor=None,
) -> torch.Tensor:
    """Equilibrium loss.

    Args:
        logits: ``[N, C+1]`` classification logits (last column = background).
        labels: ``[N]`` int64 in ``0..C`` (``C`` = background).
        mean_scores: ``[C+1]`` mean classification scores ``s`` (no gradient flows into them).
        weight: optional ``[N]`` per-sample weights.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        avg_factor: with ``reduction="mean"``, divide the weighted sum by this instead of ``N``.

    Returns:
        ``[N]`` losses for ``reduction="none"``, else a scalar.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, C+1], got shape {list(logits.shape)}")
    if mean_scores.dim() != 1 or mean_scores.shape[0] != logits.shape[-1]:
        raise ValueError(f"mean_scores must have shape [{logits.shape[-1]}], got {list(mean_scores.shape)}")
    if labels.numel() == 0:
        loss = logits.sum(1)  # empty, keeps the graph
    else:
        log_s = _log_scores(mean_scores, logits)
        mode = BACKWARD if BACKWARD != "auto" else ("inplace" if logits.device.type == "cpu" else "builtin")
        if mode == "builtin":
            z = logits + log_s
            if weight is None and avg_factor is None and reduction == "mean":
                return F.cross_entropy(z, labels)  # one fused reduction, no extra launches
            loss = F.cross_entropy(z, labels, reduction="none")
        else:
            loss = _EquilibriumCE.apply(logits, log_s, labels)
    if weight is not None:
        loss = loss * weight.to(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction != "mean":
        raise ValueError(f"reduction must be none, mean or sum, got {reduction!r}")
    if avg_factor is None:
        return loss.mean() if loss.numel() else loss.sum()
    eps = torch.finfo(torch.float32).eps
    if torch.is_tensor(avg_factor):  # stays on the device: no host synchronisation
        return loss.sum() / avg_factor.to(loss.dtype).clamp_min(eps)
    return loss.sum() / max(float(avg_factor), eps)

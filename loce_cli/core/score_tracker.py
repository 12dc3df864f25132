"""Per-class mean classification scores of LOCE, the indicator of per-class accuracy."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.distributed as dist

from loce_cli.core.optional_state import OptionalState


class MeanScoreTracker(OptionalState):
    """Mean classification score ``s`` per class, ``.scores`` of shape ``[C+1]`` (last entry = background).

    Each step brings (class, mean probability) pairs. For class ``c`` with ``n`` pairs in the step,
    ``s_c <- a^n * s_c + (1 - a^n) * mean(pairs)``; the background entry stays at ``bg_score``.

    ``update`` reduces the pairs to two fixed-size vectors (per-class sum and count) with ``index_add_`` and,
    when ``torch.distributed`` is initialised, all-reduces them: every rank then applies the same update, so
    all ranks hold identical scores after each step. That equals gathering every rank's pairs, costs one
    collective of ``2 x C`` values, and never synchronises with the host (no data-dependent shapes).
    Every rank must call ``update`` each step (it is a collective).

    Loading a state dict without ``scores`` (a base model's checkpoint) keeps the current scores.
    """

    scores: torch.Tensor

    def __init__(self, num_classes: int, alpha: float = 0.9, init_score: float = 0.01, bg_score: float = 0.01):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.num_classes = num_classes
        self.alpha = float(alpha)
        self.bg_score = float(bg_score)
        scores = torch.full((num_classes + 1,), float(init_score), dtype=torch.float32)
        scores[-1] = bg_score
        self.register_buffer("scores", scores)

    @torch.no_grad()
    def reduce_pairs(self, labels: torch.Tensor, means: torch.Tensor,
                     weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[2, C]``: per-class sum of ``means`` and number of pairs (labels ``[P]`` in ``0..C-1``).

        ``weights [P]`` (0 or 1) masks pairs out without changing shapes (a ground truth with no positive RoI).
        """
        stats = torch.zeros(2, self.num_classes, dtype=torch.float32, device=self.scores.device)
        labels = labels.to(device=stats.device, dtype=torch.long).reshape(-1)
        means = means.to(device=stats.device, dtype=torch.float32).reshape(-1)
        if labels.shape != means.shape:
            raise ValueError(f"labels and means must match, got {list(labels.shape)} and {list(means.shape)}")
        w = torch.ones_like(means) if weights is None else weights.to(device=stats.device,
                                                                        dtype=torch.float32).reshape(-1)
        stats[0].index_add_(0, labels, means * w)
        stats[1].index_add_(0, labels, w)
        return stats

    @torch.no_grad()
    def class_pairs(self, labels: torch.Tensor,
                    values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One (class, mean) pair per distinct class among ``labels [K]`` (``0..C-1``), for :meth:`update`.

        Returns ``(classes [C], means [C], weights [C])``: ``classes`` is ``0..C-1``, ``means[c]`` the mean of
        ``values [K]`` over the items labelled ``c`` and ``weights[c]`` 1 where ``c`` occurs, else 0. So a class
        that appears several times (drawn twice from the memory in one step) counts once in ``a^n``, with the
        mean over all its items. Fixed shapes, no host synchronisation.
        """
        stats = self.reduce_pairs(labels, values)
        classes = torch.arange(self.num_classes, device=stats.device)
        return classes, stats[0] / stats[1].clamp_min(1.0), (stats[1] > 0).to(stats.dtype)

    @torch.no_grad()
    def update(self, labels: torch.Tensor, means: torch.Tensor, weights: Optional[torch.Tensor] = None,
               sync: bool = True, group: Optional[object] = None) -> None:
        """Apply one step's pairs ``labels [P]`` (class indices ``0..C-1``) and ``means [P]``."""
        stats = self.reduce_pairs(labels, means, weights)
        if sync and dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
            dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
        self.apply_stats(stats)

    @torch.no_grad()
    def apply_stats(self, stats: torch.Tensor) -> None:
        sums, counts = stats[0], stats[1]
        decay = torch.pow(torch.full_like(counts, self.alpha), counts)  # a^n (1 where n = 0)
        mean = sums / counts.clamp_min(1.0)
        fg = self.scores[: self.num_classes]
        fg.mul_(decay).add_((1.0 - decay) * mean)
        # fill_ on a view, not `scores[C] = x`: on CUDA that assignment copies a host scalar (a sync, seen on H200)
        self.scores[self.num_classes:].fill_(self.bg_score)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}, bg_score={self.bg_score}"

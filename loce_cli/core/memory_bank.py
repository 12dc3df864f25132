"""Feature memory of LOCE's memory-augmented feature sampling (MFS): a ring buffer of RoI features per class."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from loce_cli.core.optional_state import OptionalState


class FeatureMemory(OptionalState):
    """Per-class ring buffers of RoI features with their labels and box-regression targets.

    Buffers (all in ``state_dict``, so checkpoints carry them):

    - ``flat_feats``: ``[C * Q + 1, *feat_shape]`` in ``dtype``; slot ``c * Q + q`` is queue ``c``'s entry ``q``.
      The extra last row absorbs writes that a batch overwrites within itself (see ``push``).
    - ``flat_labels``: ``[C * Q + 1]`` int64; ``flat_reg``: ``[C * Q + 1, reg_dim]`` float32.
    - ``counts``: ``[C]`` filled slots per class; ``ptrs``: ``[C]`` next write position per class.

    Storage is allocated directly in ``dtype`` (fp16 LVIS v1 queues: 1203 x 80 x 256 x 49 x 2 B = 2.4 GB rather
    than 4.8 GB), uninitialised (pages are committed as they are written); slots are only read once written.
    ``push`` and ``sample`` use fixed-size index arithmetic only: no host synchronisation, no data-dependent
    shapes, no per-label Python loop. Loading a state dict without the memory (a base model's checkpoint)
    keeps the current (empty) memory.
    """

    def __init__(self, num_classes: int, queue_size: int = 80, feat_shape: Sequence[int] = (256, 7, 7),
                 dtype: torch.dtype = torch.float32, device="cpu", reg_dim: int = 4, keep_on_host: bool = False):
        super().__init__()
        # keep_on_host: stay on the CPU when the owning model moves to a GPU (``model.cuda()``); pushes then
        # copy features to the host and samples come back on the caller's device.
        self.keep_on_host = bool(keep_on_host)
        if num_classes < 1 or queue_size < 1:
            raise ValueError("num_classes and queue_size must be >= 1")
        self.num_classes = int(num_classes)
        self.queue_size = int(queue_size)
        self.feat_shape = tuple(int(s) for s in feat_shape)
        self.reg_dim = int(reg_dim)
        slots = self.num_classes * self.queue_size + 1
        self.register_buffer("flat_feats", torch.empty((slots, *self.feat_shape), dtype=dtype, device=device))
        self.register_buffer("flat_labels", torch.full((slots,), -1, dtype=torch.long, device=device))
        self.register_buffer("flat_reg", torch.zeros((slots, self.reg_dim), dtype=torch.float32, device=device))
        self.register_buffer("counts", torch.zeros(self.num_classes, dtype=torch.long, device=device))
        self.register_buffer("ptrs", torch.zeros(self.num_classes, dtype=torch.long, device=device))
        # Host-side knowledge of whether anything was stored: lets `sample` skip an empty memory without
        # reading `counts` back from the device.
        self._has_data: Optional[bool] = False

    def _apply(self, fn, *args, **kwargs):
        if self.keep_on_host:
            return self  # model.to(...)/cuda() leave the host memory where it is
        return super()._apply(fn, *args, **kwargs)

    # -- views --------------------------------------------------------------------------------------------
    @property
    def feats(self) -> torch.Tensor:
        """``[C, Q, *feat_shape]`` view of the stored features."""
        return self.flat_feats[:-1].view(self.num_classes, self.queue_size, *self.feat_shape)

    @property
    def labels(self) -> torch.Tensor:
        return self.flat_labels[:-1].view(self.num_classes, self.queue_size)

    @property
    def reg_targets(self) -> torch.Tensor:
        return self.flat_reg[:-1].view(self.num_classes, self.queue_size, self.reg_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.flat_feats.dtype

    def nbytes(self) -> int:
        """Bytes held by all buffers."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def is_empty(self) -> bool:
        """True when nothing was pushed (or loaded). May synchronise once after a state-dict load."""
        if self._has_data is None:
            self._has_data = bool(int(self.counts.sum()) > 0)
        return not self._has_data

    def on_state_loaded(self) -> None:
        self._has_data = None  # unknown until asked: decided lazily from the loaded counts

    # -- writing ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def push(self, feats: torch.Tensor, labels: torch.Tensor, reg_targets: Optional[torch.Tensor] = None) -> None:
        """Store ``feats [P, *feat_shape]`` under class ``labels [P]`` (``0..C-1``) with ``reg_targets [P, 4]``.

        Each class's items go to consecutive ring positions from its write pointer, in batch order. If one
        batch brings more than ``Q`` items of a class, only its last ``Q`` are kept (the earlier ones are
        redirected to the spare row instead of being written twice to one slot).
        """
        p = feats.shape[0]
        if p == 0:
            return
        if tuple(feats.shape[1:]) != self.feat_shape:
            raise ValueError(f"features must be [P, {', '.join(map(str, self.feat_shape))}], got {list(feats.shape)}")
        device = self.flat_feats.device
        labels = labels.to(device=device, dtype=torch.long).reshape(-1)
        q, c = self.queue_size, self.num_classes
        # destination rows, worked out in class-sorted order (stable sort: batch order within a class; no sync,
        # few ops: each is a kernel launch on a GPU)
        sorted_labels, order = torch.sort(labels, stable=True)
        first = torch.searchsorted(sorted_labels, sorted_labels)  # where each item's class starts
        rank = torch.arange(p, device=device) - first  # rank among the batch's items of its class
        slot = (self.ptrs[sorted_labels] + rank).remainder_(q).add_(sorted_labels, alpha=q)
        if p > q:  # all but the last q of a class go to the spare row: those with q more of their class after them
            slot[:-q].masked_fill_(sorted_labels[q:] == sorted_labels[:-q], c * q)
        index = torch.empty_like(slot).index_copy_(0, order, slot)  # back to batch order

        # converted to the storage dtype (fp16/bf16 memory) on the way; fp32 features into fp32 storage: as they are
        src = feats.detach().to(device=device, dtype=self.flat_feats.dtype).reshape(p, *self.feat_shape)
        self.flat_feats.index_copy_(0, index, src)
        self.flat_labels.index_copy_(0, index, labels)
        if reg_targets is None:
            reg = torch.zeros((p, self.reg_dim), dtype=torch.float32, device=device)
        else:
            reg = reg_targets.detach().to(device=device, dtype=torch.float32).reshape(p, self.reg_dim)
        self.flat_reg.index_copy_(0, index, reg)
        ones = torch.ones_like(labels)
        self.ptrs.index_add_(0, labels, ones).remainder_(q)
        self.counts.index_add_(0, labels, ones).clamp_(max=q)
        self._has_data = True

    # -- reading ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def draw_weights(self, mean_scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """``[C]``: unnormalised draw weights ``1 / (s_c + eps)`` for classes with a non-empty queue, 0 for empty
        ones (what :meth:`sample` hands to ``torch.multinomial``, which normalises by itself)."""
        s = mean_scores[: self.num_classes].to(device=self.counts.device, dtype=torch.float32)
        return (self.counts > 0) / (s + eps)

    @torch.no_grad()
    def class_probabilities(self, mean_scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """``[C]``: draw probability ``∝ 1 / (s_c + eps)`` over classes with a non-empty queue, 0 for empty."""
        weights = self.draw_weights(mean_scores, eps)
        total = weights.sum()
        # an all-empty memory would give 0/0: fall back to uniform (callers skip that case via is_empty)
        return torch.where(total > 0, weights / total.clamp_min(1e-30), torch.full_like(weights, 1.0 / weights.numel()))

    @torch.no_grad()
    def sample(self, mean_scores: torch.Tensor, num_classes: int = 8, num_features: int = 4,
               generator: Optional[torch.Generator] = None,
               out_dtype: Optional[torch.dtype] = torch.float32) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``num_classes`` classes (with replacement, ``∝ 1/(s_c + eps)``, empty queues never drawn) and
        ``num_features`` stored entries of each, uniformly among its filled slots.

        Returns ``(feats [K, *feat_shape], labels [K], reg_targets [K, reg_dim])`` with
        ``K = num_classes * num_features``, or ``K = 0`` when the memory is empty.

        Few small ops on purpose: right after a push has streamed tens of MB through the caches each op costs
        ~30 us on a CPU, and on a GPU each is a kernel launch.
        """
        device = self.flat_feats.device
        if self.is_empty() or num_classes <= 0 or num_features <= 0:
            return (torch.empty((0, *self.feat_shape), dtype=out_dtype or self.dtype, device=device),
                    torch.empty((0,), dtype=torch.long, device=device),
                    torch.empty((0, self.reg_dim), dtype=torch.float32, device=device))
        drawn = torch.multinomial(self.draw_weights(mean_scores), num_classes, replacement=True,
                                  generator=generator)  # [k]
        filled = self.counts[drawn].clamp_min_(1).unsqueeze(1)  # [k, 1]
        # uniform in 0..n-1: a 62-bit random integer mod n (bias below n / 2^62)
        pos = torch.randint(0, 1 << 62, (num_classes, num_features), device=device, generator=generator)
        index = pos.remainder_(filled).add_(drawn.unsqueeze(1), alpha=self.queue_size).reshape(-1)
        feats = self.flat_feats.index_select(0, index)
        if out_dtype is not None:
            feats = feats.to(out_dtype)  # no copy when it already is
        return feats, self.flat_labels.index_select(0, index), self.flat_reg.index_select(0, index)

    def fill_summary(self) -> dict:
        """Counts of full, partial and empty queues (reads ``counts``)."""
        counts = self.counts.cpu()
        return {"full": int((counts == self.queue_size).sum()),
                "partial": int(((counts > 0) & (counts < self.queue_size)).sum()),
                "empty": int((counts == 0).sum())}

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, queue_size={self.queue_size}, feat_shape={self.feat_shape}, "
                f"dtype={self.dtype}")

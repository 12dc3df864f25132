"""Feature memory of LOCE's memory-augmented feature sampling (MFS): a ring buffer of RoI features per class."""

from __future__ import annotations

import ctypes
import math
import sys
from typing import Optional, Sequence, Tuple

import torch

from loce_cli.core._state import OptionalState


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
        advise_huge_pages(self.flat_feats)  # before any page is touched
        self.register_buffer("flat_labels", torch.full((slots,), -1, dtype=torch.long, device=device))
        self.register_buffer("flat_reg", torch.zeros((slots, self.reg_dim), dtype=torch.float32, device=device))
        self.register_buffer("counts", torch.zeros(self.num_classes, dtype=torch.long, device=device))
        self.register_buffer("ptrs", torch.zeros(self.num_classes, dtype=torch.long, device=device))
        self._staging: Optional[torch.Tensor] = None
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

        src = feats.detach().to(device).reshape(p, *self.feat_shape)
        if device.type == "cpu" and src.dtype != self.flat_feats.dtype:
            self._copy_runs_cpu(src, index)  # converts while copying: no staging pass
        else:
            if src.dtype != self.flat_feats.dtype:
                # convert into a reused staging buffer: no fresh allocation per step
                if (self._staging is None or self._staging.shape[0] < p or self._staging.device != device
                        or self._staging.dtype != self.flat_feats.dtype):
                    self._staging = torch.empty((max(p, 1024), *self.feat_shape), dtype=self.flat_feats.dtype,
                                                device=device)
                staged = self._staging[:p]
                staged.copy_(src)
                src = staged
            dst, wide = self._rows(self.flat_feats), self._rows(src)
            if dst is self.flat_feats or wide is src:  # either side not viewable as 16-byte rows: as they are
                dst, wide = self.flat_feats, src
            dst.index_copy_(0, index, wide)
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

    def _copy_runs_cpu(self, src: torch.Tensor, index: torch.Tensor) -> None:
        """CPU write path for a storage dtype that differs from the features' (fp16/bf16 memory): one ``copy_``
        per run of consecutive destination rows (the 16 jitters of a ground truth land in consecutive ring
        slots); ``copy_`` converts on the fly, so there is no separate conversion pass. Measured here: ~1.3x a
        plain converting copy for the write, against ~2x for conversion into a staging buffer + ``index_copy_``
        (which only takes one dtype). Runs are found with tensor ops, so a batch with thousands of features
        costs a few list items per ground truth, not a Python step per feature; reading the indices costs
        nothing on the CPU (no device to wait for)."""
        spare = self.num_classes * self.queue_size
        p = index.shape[0]
        starts = torch.ones(p, dtype=torch.bool)
        torch.ne(index[1:] - index[:-1], 1, out=starts[1:])
        starts |= index == spare  # each dropped item (more than Q of its class in this batch) is a run, skipped
        first = starts.nonzero().squeeze(1)
        bounds = first.tolist() + [p]
        dsts, srcs = [], []
        for k, row in enumerate(index[first].tolist()):
            if row != spare:
                dsts.append(self.flat_feats[row: row + bounds[k + 1] - bounds[k]])
                srcs.append(src[bounds[k]: bounds[k + 1]])
        if hasattr(torch, "_foreach_copy_"):
            torch._foreach_copy_(dsts, srcs)  # one call for all runs
        else:  # pragma: no cover - torch < 2.1
            for d, s in zip(dsts, srcs):
                d.copy_(s)

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """``[n, *feat_shape]`` -> a ``[n, k]`` view of its rows in 16-byte elements when it is contiguous, its
        address is 16-byte aligned and its rows are a multiple of 16 bytes; else ``t`` itself. ``index_copy_`` /
        ``index_select`` move one element at a time, so fewer, wider elements move the same bytes faster
        (measured on the CPU: the fp32 feature write of a push ~15% faster than with 4-byte elements). Bits are
        moved, never interpreted."""
        row = math.prod(self.feat_shape)
        if (t.is_contiguous() and not t.is_complex() and (row * t.element_size()) % 16 == 0
                and t.data_ptr() % 16 == 0):
            return t.view(t.shape[0], row).view(torch.complex128)
        return t

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
        rows = self._rows(self.flat_feats)
        feats = rows.index_select(0, index)
        if rows is not self.flat_feats:
            feats = feats.view(self.dtype).view(-1, *self.feat_shape)
        if out_dtype is not None and feats.dtype != out_dtype:
            feats = feats.to(out_dtype)
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


_MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux
# glibc serves every allocation above 32 MB from its own mapping, which dies with the tensor; smaller ones may come
# from the heap, where advice would outlive the tensor and apply to whatever is allocated there next
_MIN_ADVISED = 64 << 20


def advise_huge_pages(t: torch.Tensor) -> bool:
    """Ask Linux to back a large host tensor with 2 MB pages (``madvise(MADV_HUGEPAGE)``; effective when
    ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise`` or ``always``). Pushes write 640 rows of
    50 KB to random places of a 4.8 GB store, so with 4 KB pages nearly every page they touch misses the TLB;
    measured here, push + sample took 3-5% less time. Only advice (it changes no data): returns whether it was
    given. Tensors under 64 MB, other devices and other platforms are left alone. With the default allocator
    (glibc) such a tensor has its own mapping, so the advice ends with it; an allocator that keeps and reuses
    large mappings (jemalloc, tcmalloc) may hand the advised range to a later tensor, which then also gets 2 MB
    pages: a change of speed and memory granularity, never of contents."""
    if t.device.type != "cpu" or not sys.platform.startswith("linux"):
        return False
    huge = 1 << 21
    start = (t.data_ptr() + huge - 1) & ~(huge - 1)  # whole 2 MB pages inside the tensor only
    end = (t.data_ptr() + t.numel() * t.element_size()) & ~(huge - 1)
    if end - start < _MIN_ADVISED:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc.madvise(start, end - start, _MADV_HUGEPAGE) == 0
    except (OSError, AttributeError):
        return False

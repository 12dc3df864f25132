"""A data-loader sampler that can start an epoch part-way, for exact mid-epoch resume.

:class:`ResumableSampler` wraps the sampler mmdet's ``build_dataloader`` chose (``GroupSampler``,
``DistributedGroupSampler``, or any other; a ``ClassBalancedDataset`` (RFS) is a dataset wrapper underneath them,
so it is covered too). Each epoch it asks the wrapped sampler for the whole epoch's order once, keeps it, and hands
it out. A mid-epoch checkpoint stores that order and the number of batches the *training loop* had consumed (the
runner counts them; workers and prefetching may have produced more, which do not count). On resume the wrapper
hands out the rest of the stored order without asking the wrapped sampler, so no random number is drawn that
the interrupted run had not drawn.

Random augmentation (flips, mmdet's "another image" retry) draws from the process-wide generators. In the
training process (``workers_per_gpu=0``) those are saved with every checkpoint. A worker process starts its
own streams each epoch and would start them again, at the wrong place, on resume; so with workers each sample
is fetched under generators seeded from (run seed, epoch, position in the epoch) (:class:`PositionSeeded`):
the same sample gets the same augmentation whichever worker loads it and whenever the epoch is resumed.
"""

from __future__ import annotations

import random
from typing import Iterator, List, Optional

import numpy as np
import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    """``inner``'s order, one epoch at a time; ``batch_size`` indices make one batch."""

    def __init__(self, inner, batch_size: int, seed: Optional[int] = None):
        self.inner = inner
        self.batch_size = int(batch_size)
        self.seed = seed  # set: hand out (seed, epoch, position, index) keys for PositionSeeded
        self.epoch = 0  # the runner sets it before each epoch
        self.order: List[int] = []
        self._pending: Optional[tuple] = None  # (order, batches already consumed) for the next epoch

    def __iter__(self) -> Iterator:
        if self._pending is not None:
            self.order, skip = self._pending
            self._pending = None
        else:
            self.order, skip = [int(i) for i in self.inner], 0
        start = skip * self.batch_size
        if self.seed is None:
            return iter(self.order[start:])
        return iter([(self.seed, self.epoch, pos, idx) for pos, idx in enumerate(self.order[start:], start)])

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def state(self, consumed: int) -> dict:
        """This epoch's position: its order (int64 tensor) and the batches the training loop consumed."""
        return dict(order=torch.tensor(self.order, dtype=torch.int64), consumed=int(consumed),
                    batch_size=self.batch_size, epoch=self.epoch)

    def resume_from(self, state: dict) -> int:
        """The next epoch continues ``state``'s order after its consumed batches; returns that count."""
        order = [int(i) for i in state["order"].tolist()]
        consumed = int(state["consumed"])
        if int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ValueError(f"the checkpoint's epoch was cut into batches of {int(state['batch_size'])}, this run "
                             f"uses {self.batch_size}")
        if len(order) != len(self.inner):
            raise ValueError(f"the checkpoint's epoch holds {len(order)} samples, this data loader's {len(self.inner)}")
        self._pending = (order, consumed)
        return consumed


class PositionSeeded(torch.utils.data.Dataset):
    """A dataset whose items, asked for by ``(seed, epoch, position, index)`` inside a worker process, are made
    under python / numpy / torch generators seeded from the first three (plain ``index``: as the dataset).
    Everything else is the wrapped dataset's (``flag``, ``CLASSES``, ``get_cat_ids`` ...)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            seed, epoch, pos, key = key
            if torch.utils.data.get_worker_info() is not None:  # the training process keeps its saved streams
                state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(pos)]).generate_state(2)
                np.random.seed(int(state[0]))
                random.seed(int(state[1]))
                torch.manual_seed(int(state[0]) << 32 | int(state[1]))
        return self.dataset[key]


def make_resumable(loader, seed: Optional[int] = None) -> ResumableSampler:
    """Put a :class:`ResumableSampler` between ``loader``'s batch sampler and its sampler; returns it.
    (``DataLoader.sampler`` is read-only once built; the batch sampler's is a plain attribute.) ``seed``: hand
    out :class:`PositionSeeded` keys (``loader.dataset`` must be one)."""
    batch_sampler = loader.batch_sampler
    if batch_sampler is None or not hasattr(batch_sampler, "sampler"):
        raise TypeError("exact mid-epoch resume needs a DataLoader with a batch sampler over a sampler")
    if isinstance(batch_sampler.sampler, ResumableSampler):
        return batch_sampler.sampler
    wrapped = ResumableSampler(batch_sampler.sampler, batch_sampler.batch_size, seed)
    batch_sampler.sampler = wrapped
    return wrapped

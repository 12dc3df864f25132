"""Federated loss (Zhou, Koltun, Krähenbühl, "Probabilistic two-stage detection", 2021; detectron2's
``use_fed_loss``), for federated datasets such as LVIS where an image is annotated only for some classes.

A sigmoid classifier; each step the binary cross-entropy is computed only over a subset ``S`` of the classes:
every foreground class present among the step's labels, plus negative classes drawn without replacement with
probability proportional to ``w_c = image_count_c ** 0.5`` (the number of training images holding the class)
until ``|S| = num_classes_sampled`` (50 on LVIS). A class not in ``S`` gets no gradient at all in that step; the
background column of the ``C + 1`` logits is not trained. ``L = sum_{i, c in S} BCE(z_ic, y_ic) / N``; at
inference a class's score is ``sigmoid(z_c)``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

FREQ_POWER = 0.5


def image_counts_from_labels(image_labels: Sequence[Iterable[int]], num_classes: int) -> torch.Tensor:
    """``[C]`` number of images holding each class, from each image's class labels (``0..C-1``)."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for labels in image_labels:
        for c in set(int(x) for x in labels):
            if not 0 <= c < num_classes:
                raise ValueError(f"class label {c} is outside 0..{num_classes - 1}")
            counts[c] += 1
    return counts


def federated_weights(image_counts: torch.Tensor, power: float = FREQ_POWER) -> torch.Tensor:
    """Sampling weights ``image_count ** power`` (``[C]``, float32)."""
    if (image_counts < 0).any():
        raise ValueError("image counts must be >= 0")
    return image_counts.double().pow(power).float()


def federated_class_mask(labels: torch.Tensor, weights: torch.Tensor, num_sampled: int,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``[C]`` bool: the classes the loss covers this step.

    Args:
        labels: ``[N]`` in ``0..C`` (``C`` = background, never counted).
        weights: ``[C]`` sampling weights of negatives (:func:`federated_weights`).
        num_sampled: the size of the subset (present classes are all kept, even when more than this).
        generator: RNG for the draw (default: torch's global one, saved with the run's RNG state).
    """
    num_classes = weights.shape[0]
    mask = torch.zeros(num_classes, dtype=torch.bool, device=weights.device)
    fg = labels[labels < num_classes].to(weights.device)
    mask[fg] = True
    present = int(mask.sum())
    wanted = min(num_sampled, num_classes) - present
    if wanted > 0:
        prob = weights.float().clone()
        prob[mask] = 0.0
        available = int((prob > 0).sum())
        if available:
            drawn = torch.multinomial(prob.cpu(), min(wanted, available), replacement=False, generator=generator)
            mask[drawn.to(mask.device)] = True
    return mask


def federated_loss(logits: torch.Tensor, labels: torch.Tensor, class_mask: torch.Tensor,
                   sample_weight: Optional[torch.Tensor] = None, avg_factor=None) -> torch.Tensor:
    """Sigmoid BCE over the classes in ``class_mask`` only.

    Args:
        logits: ``[N, C+1]`` (the last column, background, is not used).
        labels: ``[N]`` in ``0..C``.
        class_mask: ``[C]`` bool from :func:`federated_class_mask`.
        sample_weight: optional ``[N]`` (mmdet's label weights).
        avg_factor: divisor (default ``N``).
    """
    n, c1 = logits.shape
    num_classes = c1 - 1
    if class_mask.shape[0] != num_classes:
        raise ValueError(f"class_mask must be [{num_classes}], got {list(class_mask.shape)}")
    z = logits[:, :num_classes]
    target = torch.zeros_like(z)
    fg = labels < num_classes
    rows = torch.arange(n, device=labels.device)[fg]
    target[rows, labels[fg]] = 1.0
    weight = class_mask.to(z.dtype).view(1, -1).expand(n, num_classes)
    if sample_weight is not None:
        weight = weight * sample_weight.to(z.dtype).view(-1, 1)
    bce = F.binary_cross_entropy_with_logits(z, target, reduction="none")
    denom = n if avg_factor is None else avg_factor
    denom = denom.to(z.dtype).clamp_min(1.0) if torch.is_tensor(denom) else max(float(denom), 1.0)
    return (bce * weight).sum() / denom

"""Baseline classification losses for long-tailed detection, beside LOCE's equilibrium loss: plain PyTorch, each a
pure function plus (where the method keeps running statistics) a state module with buffers."""

from loce_cli.core.losses.eqlv2 import EQLv2State, eqlv2_gradient_stats, eqlv2_loss, eqlv2_weights
from loce_cli.core.losses.federated import (federated_class_mask, federated_loss, federated_weights,
                                            image_counts_from_labels)

__all__ = ["EQLv2State", "eqlv2_gradient_stats", "eqlv2_loss", "eqlv2_weights", "federated_class_mask",
           "federated_loss", "federated_weights", "image_counts_from_labels"]

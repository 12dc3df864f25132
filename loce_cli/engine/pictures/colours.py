"""The frequency groups' colours, one place for every plot and drawn picture."""

from __future__ import annotations

from typing import Tuple

GROUP_COLOURS = {"r": "#d62728", "c": "#ff7f0e", "f": "#1f77b4"}  # rare red, common orange, frequent blue


def group_rgb(group: str) -> Tuple[int, int, int]:
    """The group's colour as RGB (0-255)."""
    h = GROUP_COLOURS[group].lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)

"""Columns of a parsed annotation file as numpy arrays, with the items that break a column reported one by one."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from loce_cli.engine.data.prep.problems import Problems


def int_column(items: list, key: str, what: str, kind: str, problems: Problems,
                id_of=None) -> Tuple[np.ndarray, np.ndarray]:
    """``items[i][key]`` as int64 and a validity mask; invalid entries are reported one by one."""
    n = len(items)
    try:
        vals = [it[key] for it in items]
        arr = np.asarray(vals) if n else np.zeros(0, np.int64)
        if arr.ndim == 1 and arr.dtype.kind in "iu":
            return arr.astype(np.int64, copy=False), np.ones(n, bool)
    except (KeyError, TypeError, IndexError, ValueError, OverflowError):
        pass
    out = np.full(n, -1, np.int64)
    ok = np.zeros(n, bool)
    for i, it in enumerate(items):
        v = it.get(key) if isinstance(it, dict) else None
        if type(v) is int and -2 ** 63 <= v < 2 ** 63:
            out[i], ok[i] = v, True
        else:
            label = f"{what} #{i}" + (f" (id {id_of(it)})" if id_of and isinstance(it, dict) and key != "id" else "")
            problems.add(kind, f"{label}: {key} is {shown(it, key, v)}")
    return out, ok


def num_column(items: list, key: str, what: str, kind: str, problems: Problems) -> np.ndarray:
    """``items[i][key]`` as float64 (NaN where missing or not a number, reported)."""
    try:
        arr = np.asarray([it[key] for it in items], dtype=np.float64) if items else np.zeros(0)
        if arr.ndim == 1:
            return arr
    except (KeyError, TypeError, ValueError):
        pass
    out = np.full(len(items), np.nan)
    for i, it in enumerate(items):
        v = it.get(key) if isinstance(it, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = v
        else:
            problems.add(kind, f"{what} #{i}: {key} is {shown(it, key, v)}")
    return out


def shown(item: Any, key: str, value: Any) -> str:
    return "missing" if not isinstance(item, dict) or key not in item else repr(value)[:40]


def duplicates(ids: np.ndarray, ok: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(duplicated values, how often each occurs) among the valid ``ids``."""
    vals, counts = np.unique(ids[ok], return_counts=True)
    return vals[counts > 1], counts[counts > 1]

"""``loce analyze``'s tables as plain rows (title, header, rows), for one analysis or a comparison (each figure of
the run, of the other run and the delta side by side); the cli only draws them."""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

from loce_cli.engine.analysis.comparison import Comparison
from loce_cli.engine.analysis.matching import ERROR_TYPES
from loce_cli.engine.analysis.run import Analysis

Table = Tuple[str, List[str], List[List[str]]]
ROWS = ("all", "r", "c", "f")


def _num(v: Optional[float], pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def _delta(v: Optional[float], pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:+.1f}" if pct else f"{v:+.3f}"


def _cells(a: Analysis, b: Optional[Analysis], get, pct: bool = True, integer: bool = False) -> List[str]:
    fmt = (lambda v: "-" if v is None else str(v)) if integer else (lambda v: _num(v, pct))
    if b is None:
        return [fmt(get(a))]
    va, vb = get(a), get(b)
    d = None if va is None or vb is None else va - vb
    dtext = ("-" if d is None else f"{d:+d}") if integer else _delta(d, pct)
    return [fmt(va), fmt(vb), dtext]


def _head(names: List[str], b: Optional[Analysis]) -> List[str]:
    if b is None:
        return names
    return [f"{n} {s}".strip() for n in names for s in ("", "other", "Δ")]


def tables(result: Union[Analysis, Comparison]) -> List[Table]:
    """The error, confusion and calibration tables of ``result``."""
    a, b = (result.run, result.other) if isinstance(result, Comparison) else (result, None)
    names = f"{a.label}" + (f" vs {b.label}" if b else "")
    out: List[Table] = []
    rows = []
    for g in ROWS:
        row = [g] + _cells(a, b, lambda x: x.errors[g]["ap50"])
        for t in ERROR_TYPES:
            row += _cells(a, b, lambda x: x.errors[g]["gain"][t])
        rows.append(row)
    out.append((f"{names}: AP50 and the AP50 each error type costs ({a.metric}, x100)",
                ["group"] + _head(["AP50"] + list(ERROR_TYPES), b), rows))
    rows = [[g] + [c for t in ERROR_TYPES for c in _cells(a, b, lambda x: x.errors[g]["count"][t], integer=True)]
            for g in ROWS]
    out.append((f"{names}: errors (count)", ["group"] + _head(list(ERROR_TYPES), b), rows))
    keys = ("own", "r", "c", "f", "none")
    rows = [[g] + [c for k in keys for c in _cells(a, b, lambda x: x.confusion[g][k], integer=True)]
            for g in ("r", "c", "f")]
    out.append((f"{names}: who takes each object (rows: object group; own class, another class of r / c / f, none)",
                ["objects"] + _head(list(keys), b), rows))
    rows = [[f"{p['gt']} ({p['gt_group']})", f"{p['det']} ({p['det_group']})", str(p["count"])]
            for p in a.top_confusions[:20]]
    out.append((f"{a.label}: most frequent confusions", ["object class", "taken by", "count"], rows))
    rows = []
    for g in ROWS:
        c = lambda x, k: x.calibration[g][k]  # noqa: E731
        rows.append([g] + _cells(a, b, lambda x: c(x, "tp_mean_score"), False)
                    + _cells(a, b, lambda x: c(x, "fp_mean_score"), False) + _cells(a, b, lambda x: c(x, "ece"), False))
    out.append((f"{names}: calibration at IoU 0.5 (10 equal-width score bins)",
                ["group"] + _head(["TP mean score", "FP mean score", "ECE"], b), rows))
    return out


def headline(result: Comparison) -> List[str]:
    """Two lines that say where the run's gain over the other came from: rare objects taken by their own class vs
    by frequent classes, and the rare group's AP50 with the classification error's share."""
    a, b = result.run, result.other
    ra, rb = a.confusion["r"], b.confusion["r"]
    ea, eb = a.errors["r"], b.errors["r"]
    ap = _delta(None if ea["ap50"] is None or eb["ap50"] is None else ea["ap50"] - eb["ap50"])
    cls = _delta(None if ea["gain"]["cls"] is None or eb["gain"]["cls"] is None
                 else ea["gain"]["cls"] - eb["gain"]["cls"])
    return [f"rare objects taken by their own class: {ra['own']} vs {rb['own']} ({ra['own'] - rb['own']:+d}); "
            f"by a frequent class: {ra['f']} vs {rb['f']} ({ra['f'] - rb['f']:+d}) [{a.label} vs {b.label}]",
            f"rare AP50 {ap} points; AP50 lost to classification errors on rare classes {cls} points"]

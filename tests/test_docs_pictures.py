"""The README's pictures (docs/img/quickstart_*.png, made by `make pictures`): present, referenced, and of the
size the code that makes them gives (a picture drawn by older code of another layout fails here)."""

import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
PICTURES = ("quickstart_predictions.png", "quickstart_report.png", "quickstart_report_groups.png",
            "quickstart_memory.png", "quickstart_analysis.png")


def _png_size(path: Path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_pictures_exist_are_small_and_have_their_layout():
    for name in PICTURES:
        path = IMG / name
        assert path.is_file(), f"{path} missing: run make pictures"
        assert 10_000 < path.stat().st_size < 300_000, (name, path.stat().st_size)
    from loce_cli.engine.quickstart.pictures import SCALE

    # ground truth | base | LOCE: three panels of a 128 px synthetic image drawn SCALE times larger, 8 px gaps
    w, h = _png_size(IMG / "quickstart_predictions.png")
    assert w == 3 * SCALE * 128 + 4 * 8 and SCALE * 128 + 8 < h < SCALE * 128 + 80, (w, h)
    assert _png_size(IMG / "quickstart_memory.png") == (960, 540)  # plot_memory: 8 x 4.5 in at 120 dpi
    # plot_analysis of a comparison: two rows (LOCE, base) of three panels, 15 x 8.4 in at 120 dpi
    assert _png_size(IMG / "quickstart_analysis.png") == (1800, 1008)
    for name in ("quickstart_report.png", "quickstart_report_groups.png"):
        w, h = _png_size(IMG / name)
        assert 500 < w < 2500 and 300 < h < 1500, (name, w, h)


def test_readme_and_docs_show_them():
    readme = (ROOT / "README.md").read_text()
    shown = set(re.findall(r"!\[[^\]]*\]\((docs/img/[^)]+)\)", readme))
    assert "docs/img/quickstart_predictions.png" in shown  # the README's one picture
    commands = (ROOT / "docs" / "COMMANDS.md").read_text()
    in_docs = set(re.findall(r"!\[[^\]]*\]\((img/[^)]+)\)", commands))
    assert {"img/quickstart_predictions.png", "img/quickstart_report.png"} <= in_docs
    evaluation = (ROOT / "docs" / "EVALUATION.md").read_text()
    in_evaluation = set(re.findall(r"!\[[^\]]*\]\((img/[^)]+)\)", evaluation))
    assert "img/quickstart_analysis.png" in in_evaluation
    in_docs |= in_evaluation
    for ref in shown:
        assert (ROOT / ref).is_file(), ref
    for ref in in_docs:
        assert (ROOT / "docs" / ref).is_file(), ref

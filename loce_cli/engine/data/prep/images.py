"""The image files an annotation file names: folders present, files readable images of the annotated size
(all, a seeded sample, or none)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from loce_cli.engine.data.prep.problems import Problems
from loce_cli.engine.data.prep.reports import FileReport

CHECK_IMAGES = ("all", "sample", "none")  # --check-images
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF")


def check_image_files(root: Path, images: list, relpaths: List[Optional[str]], widths: np.ndarray,
                       heights: np.ndarray, img_ids: np.ndarray, image_dirs: List[str], mode: str, sample: int,
                       seed: int, problems: Problems, report: FileReport) -> None:
    missing_dirs = [d for d in image_dirs if not (root / d).is_dir()]
    for d in missing_dirs:
        problems.add("image-dir-missing", f"{root / d}/ (images of this file resolve there)")
    if mode == "none" or missing_dirs:
        return
    idx = [i for i, p in enumerate(relpaths) if p]
    if mode == "sample" and len(idx) > sample:
        rng = np.random.default_rng(seed)
        idx = sorted(int(i) for i in rng.choice(idx, size=sample, replace=False))
    def check(i: int) -> Optional[Tuple[str, str]]:
        p = root / relpaths[i]
        try:
            with open(p, "rb") as f:
                head = f.read(16)
                if not any(head.startswith(m) for m in IMAGE_MAGIC):
                    return "image-unreadable", f"{p}: not a JPEG/PNG/GIF/BMP/WebP file"
                f.seek(0)
                with Image.open(f) as im:
                    w, h = im.size
        except FileNotFoundError:
            return "image-file-missing", f"{p} (image id {img_ids[i]})"
        except Exception as e:  # noqa: BLE001 - any failure to read is what we report
            return "image-unreadable", f"{p}: {type(e).__name__}: {str(e)[:60]}"
        if (w, h) != (widths[i], heights[i]):
            return "image-size", f"{p}: {w} x {h}, annotated as {widths[i]:g} x {heights[i]:g}"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        for found in pool.map(check, idx, chunksize=64):
            if found:
                problems.add(*found)
    report.images_checked = len(idx)

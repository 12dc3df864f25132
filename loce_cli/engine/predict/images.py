"""``loce predict``: a trained model on the user's own images: one annotated picture per image and
``predictions.json`` (LVIS results format, the same detections ``loce eval`` gives for the image)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image, UnidentifiedImageError

import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
from loce_cli.core.frequency import GROUP_NAMES, GROUPS, parse_split
from loce_cli.engine.checkpoint_heads import check_head_types
from loce_cli.engine.checkpoints import checkpoint_classes, read_checkpoint
from loce_cli.engine.config.loading import load_config
from loce_cli.engine.json_files import atomic_path
from loce_cli.engine.pictures.drawing import draw_detections, drawn_from_lvis, write_png
from loce_cli.engine.runtime.amp import check_inference
from loce_cli.engine.runtime.launch import LaunchOptions, check_launch
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError
from loce_cli.mmdet_ext.image_inference import ImageDetector

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PREDICTIONS = "predictions.json"


@dataclass
class PredictRequest:
    config: str
    checkpoint: str
    inputs: List[str]
    out: str
    score_thr: float = 0.3
    max_dets: int = 100
    device: Optional[str] = None  # cpu | cuda; None: cuda when available, else cpu
    split: str = "all"  # draw only this group's detections (predictions.json keeps all)
    cfg_options: List[str] = field(default_factory=list)
    force: bool = False
    amp: Optional[str] = None  # inference under autocast: bf16 / fp16 (CUDA); engine/amp.py


@dataclass
class ImagePrediction:
    input: str
    output: str
    image_id: int
    width: int
    height: int
    detections: int
    drawn: int
    per_group: Dict[str, int]  # detections per group name


@dataclass
class Failure:
    input: str
    message: str


@dataclass
class PredictReport:
    out: str
    predictions_file: Optional[str]
    checkpoint: str
    config: str
    score_thr: float
    max_dets: int
    split: str
    device: str
    images: List[ImagePrediction] = field(default_factory=list)
    failed: List[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def resolve_inputs(inputs: Sequence[str]) -> List[Path]:
    """Image files named by ``inputs``: files as given, a folder's image files (by suffix, sorted, not
    recursive), a glob's matches (``**`` recursive); each file once, in the order given."""
    if not inputs:
        raise LoceUsageError("no INPUT given", "name image files, a folder or a quoted glob")
    seen, files = set(), []

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)

    for text in inputs:
        p = Path(text)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)})",
                                "pass a folder of JPEG or PNG images")
            for q in found:
                add(q)
        elif p.is_file():
            add(p)
        elif _has_magic(text):
            found = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not found:
                raise DataError(f"no file matches {text!r}", "check the pattern (quote it so the shell passes it on)")
            for q in found:
                add(q)
        else:
            raise DataError(f"input {p} does not exist", "pass an image file, a folder or a quoted glob")
    return files


def check_image(path: Path) -> None:
    """Refuse, with one line, a file that is not a complete image: empty, another kind of file, truncated."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes): it holds no image at all",
                        "copy or download it again (an interrupted transfer leaves empty files)")
    try:
        with Image.open(path) as im:
            im.load()  # decodes every pixel: a truncated file fails here
    except UnidentifiedImageError:
        raise DataError(f"{path} is not an image", "pass a JPEG or PNG image") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's ways of saying damaged / truncated
        raise DataError(f"{path} is damaged or truncated ({str(e).splitlines()[0][:80]})",
                        "pass a complete image file") from None


def _output_names(files: Sequence[Path], out: Path) -> List[Path]:
    """``OUT/<stem>.png`` per input, ``<stem>-2.png`` ... where stems repeat; never the path of an input."""
    inputs = {os.path.realpath(f) for f in files}
    taken, names = set(), []
    for f in files:
        n, name = 1, f"{f.stem}.png"
        while name in taken or os.path.realpath(out / name) in inputs:
            n += 1
            name = f"{f.stem}-{n}.png"
        taken.add(name)
        names.append(out / name)
    return names


def read_classes(checkpoint: Path, cfg=None) -> Tuple[Tuple[str, ...], Tuple[str, ...], Optional[Tuple[int, ...]]]:
    """Class names, frequency groups and (when recorded) category ids from a checkpoint's meta, or (a checkpoint
    from elsewhere, with ``cfg``) from the config's training data; a checkpoint whose heads are of another kind
    than ``cfg``'s is refused (:mod:`loce_cli.engine.checkpoint_heads`)."""
    ckpt = read_checkpoint(Path(checkpoint))
    if cfg is not None:
        check_head_types(ckpt, cfg, Path(checkpoint), Path(getattr(cfg, "filename", None) or "the config").name)
    num = int(cfg.model.roi_head.bbox_head.num_classes) if cfg is not None else None
    classes = checkpoint_classes(ckpt, Path(checkpoint), num, cfg)
    return classes.names, classes.groups, classes.ids


class _PredictionsWriter:
    """``predictions.json`` streamed detection by detection into ``atomic_path``'s temporary file (opened with
    the first image), renamed when the ``ExitStack`` it was entered on closes without an error."""

    def __init__(self, path: Path, stack):
        self.f = stack.enter_context(open(stack.enter_context(atomic_path(path)), "w", encoding="utf-8"))
        self.f.write("[")
        self.count = 0

    def add(self, dets: Sequence[dict]) -> None:
        for d in dets:
            self.f.write(("\n" if self.count == 0 else ",\n") + json.dumps(d))
            self.count += 1

    def finish(self) -> None:
        self.f.write("\n]\n")


def _check_request(req: PredictRequest) -> Tuple[List[str], str]:
    try:
        split = parse_split(req.split)
    except ValueError as e:
        raise LoceUsageError(str(e), "--split all|rare|common|frequent") from None
    if not 0.0 <= req.score_thr <= 1.0:
        raise LoceUsageError(f"--score-thr {req.score_thr} is outside 0..1", "e.g. --score-thr 0.3")
    if req.max_dets < 1:
        raise LoceUsageError("--max-dets must be >= 1", "e.g. --max-dets 100")
    device = req.device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_launch(LaunchOptions(device=device))
    check_inference(req.amp, device)
    out = Path(req.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file", "pass a folder for the pictures and predictions.json")
    if out.is_dir() and any(out.iterdir()) and not req.force:
        raise OutputExistsError(f"--out {out} already exists and is not empty", "pass --force or another --out")
    return split, device


def predict(req: PredictRequest, progress: Optional[Callable[[int, int], None]] = None,
            warn: Optional[Callable[[str], None]] = None) -> PredictReport:
    """Detect in every input image, write ``OUT/<stem>.png`` (the input with its detections drawn) and
    ``OUT/predictions.json``. A bad image is reported through ``warn`` and skipped (nothing written for it);
    with one input it raises. Inputs are only read."""
    start = time.perf_counter()
    warn = warn or (lambda _msg: None)
    split, device = _check_request(req)
    files = resolve_inputs(req.inputs)
    cfg = load_config(Path(req.config), req.cfg_options)
    names, groups, ids = read_classes(Path(req.checkpoint), cfg)
    want = int(cfg.model.roi_head.bbox_head.num_classes)
    if want != len(names):
        raise DataError(f"{req.checkpoint} has {len(names)} classes, the config {want}",
                        "pass the config the checkpoint was trained with")
    out = Path(req.out)
    detector = ImageDetector(cfg, Path(req.checkpoint), device, req.score_thr, req.max_dets,
                             ids or tuple(range(1, len(names) + 1)), amp=req.amp)
    report = PredictReport(str(out), None, str(req.checkpoint), str(req.config), req.score_thr, req.max_dets,
                           req.split, device)
    writer = None
    with contextlib.ExitStack() as stack:  # predictions.json: renamed into place at the end, removed on error
        for n, (path, target) in enumerate(zip(files, _output_names(files, out)), start=1):
            try:
                check_image(path)
                loaded = detector.load(path)
            except DataError as e:
                if len(files) == 1:
                    raise
                report.failed.append(Failure(str(path), e.one_line()))
                warn(e.one_line())
                if progress is not None:
                    progress(n, len(files))
                continue
            rgb, dets, labels = detector.detect(loaded, n)
            order = sorted(range(len(dets)), key=lambda i: -dets[i]["score"])  # as loce eval's results.json
            dets, labels = [dets[i] for i in order], [labels[i] for i in order]
            height, width = rgb.shape[:2]
            drawn = drawn_from_lvis(dets, labels, names, groups, height, width, split)
            write_png(draw_detections(rgb, drawn), target)
            if writer is None:
                writer = _PredictionsWriter(out / PREDICTIONS, stack)
            writer.add([dict(d, file_name=str(path), category_name=names[lab]) for d, lab in zip(dets, labels)])
            per_group = {GROUP_NAMES[g]: sum(1 for lab in labels if groups[lab] == g) for g in GROUPS}
            report.images.append(ImagePrediction(str(path), str(target), n, width, height, len(dets), len(drawn),
                                                 per_group))
            if progress is not None:
                progress(n, len(files))
        if writer is not None:
            writer.finish()
            report.predictions_file = str(out / PREDICTIONS)
    report.seconds = time.perf_counter() - start
    return report

"""``loce data prep --root DIR``: find a dataset's annotation files, validate each, compare them, and write
``loce_meta.json`` when nothing is wrong."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from loce_cli.core.frequency import COMMON_MAX_IMAGES, GROUPS, RARE_MAX_IMAGES, frequency_group
from loce_cli.engine.data.prep.annotations import SAMPLE_IMAGES, ParsedFile, validate_annotation_file
from loce_cli.engine.data.prep.formats import FILE_NAMES, META_NAME, OFFICIAL, VERSIONS
from loce_cli.engine.data.prep.images import CHECK_IMAGES
from loce_cli.engine.data.prep.meta import build_meta, write_atomic
from loce_cli.engine.data.prep.problems import Problems
from loce_cli.engine.data.prep.reports import FileReport, MissingDataError, PrepResult
from loce_cli.errors import LoceUsageError

DOWNLOAD_GUIDE = """\
expected layout (mmdet's):
  {root}/
    annotations/
      lvis_{v}_train.json     LVIS {V} train annotations
      lvis_{v}_val.json       LVIS {V} val annotations
      loce_meta.json          written by `loce data prep`
    train2017/                COCO 2017 train images (000000000009.jpg, ...)
    val2017/                  COCO 2017 val images
how to get it:
  annotations: the LVIS dataset's download page (lvisdataset.org, "Download": LVIS {V} train / val
    annotation zips), unzipped into {root}/annotations/
  images: COCO 2017 "2017 Train images" and "2017 Val images" (cocodataset.org, "Download"), unzipped into
    {root}/ (LVIS resolves each image from its coco_url: train2017/... or val2017/...; LVIS v1 val also uses
    train2017 images)
  your own data: any LVIS-format *.json under {root}/annotations/ with images resolved from coco_url or
    file_name under {root}/"""


def find_annotation_files(root: Path, version: str = "auto") -> Tuple[Optional[str], Dict[str, Path], List[str]]:
    """(version, {role: path}, missing file names) of the annotation files under ``root``.

    Looks in ``root/annotations/`` then ``root/``: the official names of ``version`` (auto: v1, then v0.5),
    else (auto only) any other ``*.json`` there (roles from 'train' / 'val' in the name)."""
    dirs = [root / "annotations", root]
    versions = VERSIONS if version == "auto" else (version,)
    for v in versions:
        found = {}
        for role, fname in FILE_NAMES[v].items():
            for d in dirs:
                if (d / fname).is_file():
                    found[role] = d / fname
                    break
        if found:
            missing = [fname for role, fname in FILE_NAMES[v].items() if role not in found]
            return v, found, missing
    if version == "auto":
        for d in dirs:
            others = sorted(p for p in d.glob("*.json") if p.name != META_NAME and not p.name.startswith("."))
            if others:
                found = {}
                for p in others:
                    role = "train" if "train" in p.name else "val" if "val" in p.name else p.stem
                    found.setdefault(role, p)
                return None, found, []
    return (None if version == "auto" else version), {}, list(FILE_NAMES.get(version, FILE_NAMES["v1"]).values())


def layout_help(root: Path, version: Optional[str]) -> str:
    v = version or "v1"
    return DOWNLOAD_GUIDE.format(root=str(root).rstrip("/"), v=v, V=v)


def prep_dataset(root: Path, version: str = "auto", check_images: str = "sample", sample: int = SAMPLE_IMAGES,
                 seed: int = 0, write: bool = True, _subset: Optional[dict] = None,
                 cutoffs: Optional[Tuple[int, int]] = None,
                 parsed_already: Optional[Dict[str, tuple]] = None) -> PrepResult:
    """Validate the LVIS-format dataset under ``root``; with no errors, write ``loce_meta.json``. ``cutoffs``: most
    training images of a rare / common class (default: the ones ``loce data import`` recorded in the train file, else
    LVIS's 10 / 100); ``parsed_already``: {name: (content, size, sha256)} just written."""
    start = time.perf_counter()
    root = Path(root)
    if version not in VERSIONS + ("auto",):
        raise LoceUsageError(f"--version must be v1, v0.5 or auto, got {version!r}", "auto detects it")
    if check_images not in CHECK_IMAGES:
        raise LoceUsageError(f"--check-images must be all, sample or none, got {check_images!r}",
                             "sample checks a random sample of images per file")
    if not root.is_dir():
        raise MissingDataError(f"--root {root} is not a directory", "point --root at the dataset folder "
                               "(e.g. data/lvis_v1)", layout_help(root, None if version == "auto" else version))
    found_version, files, missing = find_annotation_files(root, version)
    if not files:
        other = "" if version == "auto" else _other_versions_note(root, version)
        raise MissingDataError(
            f"no {'LVIS ' + version + ' ' if version != 'auto' else ''}annotation files under {root} "
            f"(looked for {', '.join(missing) if missing else 'annotations/*.json'} in {root / 'annotations'}/ "
            f"and {root}/){other}",
            "download them as shown above, or pass --root of the folder holding annotations/",
            layout_help(root, None if version == "auto" else version))
    expected = None if version == "auto" else version
    problems = Problems()
    for fname in missing:
        problems.add("file-missing", f"{root / 'annotations' / fname}")
    reports: List[FileReport] = []
    parsed: Dict[str, ParsedFile] = {}
    for role, path in files.items():
        rep, p = validate_annotation_file(path, role, expected or found_version, root, check_images, sample, seed,
                                          (parsed_already or {}).pop(path.name, None))
        reports.append(rep)
        if p is not None:
            parsed[role] = p
    versions = {r.version for r in reports if r.version}
    result_version = found_version or (versions.pop() if len(versions) == 1 else None)
    result = PrepResult(root=str(root), version=result_version, check_images=check_images, files=reports,
                        problems=[])
    if any(r.errors for r in reports) or not parsed:
        result.problems = problems.list()
        result.layout_help = layout_help(root, result_version) if any(
            p.kind.startswith("image-") for r in reports for p in r.problems) else None
        result.seconds = time.perf_counter() - start
        return result

    # ---- dataset level: same categories everywhere, groups
    roles = list(parsed)
    ref_role = "train" if "train" in parsed else roles[0]
    ref = parsed[ref_role]
    for role in roles:
        p = parsed[role]
        if (p.cat_ids, p.names, p.frequency) != (ref.cat_ids, ref.names, ref.frequency):
            problems.add("categories-differ", f"{files[role].name} vs {files[ref_role].name}: "
                                              f"{_first_difference(p, ref)}")
    groups = {g: sum(1 for f in ref.frequency if f == g) for g in GROUPS}
    if "train" in parsed and _subset is None:
        _check_frequency(parsed["train"], ref, cutoffs, problems)
    official = OFFICIAL.get(result_version or "")
    if official and len(ref.names) == official[0] and groups != official[1]:
        problems.add("official-groups", f"rare/common/frequent {groups['r']}/{groups['c']}/{groups['f']}, "
                                        f"LVIS {result_version}: {'/'.join(str(official[1][g]) for g in GROUPS)}")
    result.problems = problems.list()
    result.num_classes = len(ref.names)
    result.classes_per_group = groups
    if result.ok and write:
        meta = build_meta(root, result, files, parsed, ref, _subset)
        meta_path = files[ref_role].parent / META_NAME
        write_atomic(meta_path, json.dumps(meta).encode() + b"\n")
        result.meta_path = str(meta_path)
    result.seconds = time.perf_counter() - start
    return result


def _check_frequency(train: ParsedFile, ref: ParsedFile, cutoffs: Optional[Tuple[int, int]],
                     problems: Problems) -> None:
    """A frequency-mismatch problem where a class's group is not the one its training images give under ``cutoffs``
    (default: the ones the train file records from ``loce data import``, else LVIS's)."""
    cutoffs = cutoffs or train.cutoffs or (RARE_MAX_IMAGES, COMMON_MAX_IMAGES)
    derived = [frequency_group(int(n), *cutoffs) for n in train.image_count]
    diff = [i for i, (a, b) in enumerate(zip(derived, ref.frequency)) if a != b]
    if diff:
        i = diff[0]
        problems.add("frequency-mismatch", f"{ref.names[i]}: frequency {ref.frequency[i]!r} but "
                                           f"{int(train.image_count[i])} training images ({derived[i]!r})", len(diff))


def _other_versions_note(root: Path, version: str) -> str:
    others = [v for v in VERSIONS if v != version and find_annotation_files(root, v)[1]]
    return f"; found LVIS {others[0]} files instead (pass --version {others[0]} or auto)" if others else ""


def _first_difference(a: ParsedFile, b: ParsedFile) -> str:
    if len(a.cat_ids) != len(b.cat_ids):
        return f"{len(a.cat_ids)} vs {len(b.cat_ids)} categories"
    for i in range(len(a.cat_ids)):
        if (a.cat_ids[i], a.names[i], a.frequency[i]) != (b.cat_ids[i], b.names[i], b.frequency[i]):
            return (f"category #{i}: {a.cat_ids[i]} {a.names[i]!r} ({a.frequency[i]}) vs "
                    f"{b.cat_ids[i]} {b.names[i]!r} ({b.frequency[i]})")
    return "same"

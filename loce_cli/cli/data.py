"""``loce data ...``: datasets (synthetic long-tailed data, LVIS preparation, statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from loce_cli.cli.failures import fail
from loce_cli.cli.options import JSON_OUTPUT, LIKES, CheckImages, LvisVersion, check_plot_path, shown
from loce_cli.cli.render import counts, err, group_label, out, print_json, status, table

app = typer.Typer(help="Datasets: synthetic long-tailed data, LVIS validation and indexing (prep), COCO import, "
                       "statistics.",
                  no_args_is_help=True)

# loce data synth
SYNTH_OUT = typer.Option(..., "--out", "-o", help="Directory to write the dataset into (new or empty).")
LIKE = typer.Option(
    None, "--like", metavar=shown(LIKES),
    help="Write an LVIS-shaped dataset instead: lvis-v1 (1203 classes, 337/461/405 rare/common/frequent) or "
         "lvis-v0.5 (1230 classes, 454/461/315), real layout and COCO image names; 1000 train + 100 val "
         "images unless --train-images / --val-images say otherwise.")
NUM_CLASSES = typer.Option(40, "--num-classes", min=2, help="Number of classes (at most 192).")
TRAIN_IMAGES = typer.Option(600, "--train-images", min=1, help="Training images.")
VAL_IMAGES = typer.Option(200, "--val-images", min=1, help="Validation images (every class appears).")
IMAGE_SIZE = typer.Option(128, "--image-size", min=48, max=1024, help="Square image side in pixels.")
TAIL_EXPONENT = typer.Option(
    1.0, "--tail-exponent", min=0.1, max=10.0,
    help="Shape of the long tail: 1 = log-linear in rank; < 1 more rare classes, > 1 fatter head.")
MAX_OBJECTS = typer.Option(6, "--max-objects", min=1, max=30, help="Most objects in one image.")
SYNTH_SEED = typer.Option(0, "--seed", help="Random seed; the same options and seed give identical files.")
SYNTH_FORCE = typer.Option(False, "--force", help="Replace the dataset in a non-empty --out.")
NO_MASKS = typer.Option(False, "--no-masks", help="Box-only annotations (no segmentation), as a COCO export without "
                        "masks: train it with a Faster R-CNN config (synthetic/faster_rcnn_r18_fpn_synth).")
# --like fixes these (the LVIS release's); it takes --train-images, --val-images and --seed
NOT_WITH_LIKE = ("num_classes", "image_size", "tail_exponent", "max_objects")

# loce data stats
ANNOTATION_JSON = typer.Argument(..., help="An LVIS-format annotation file (e.g. lvis_v1_train.json).")
STATS_JSON = typer.Option(False, "--json", help="Machine-readable output (includes per-class counts).")
PLOT = typer.Option(None, "--plot", help="Write a log-scale instances-per-class plot (.png).")

# loce data prep
ROOT = typer.Option(..., "--root", help="Dataset folder holding annotations/ (and the image folders).")
VERSION = typer.Option("auto", "--version", help="LVIS version (auto: detect).")
CHECK = typer.Option("sample", "--check-images",
                     help="Image files to open and check: all, sample (200 random per annotation file) or none.")
SUBSET = typer.Option(None, "--subset", help="Write a smaller train file with this fraction of the images (0-1] "
                                             "to --out.")
PREP_SEED = typer.Option(0, "--seed", help="Random seed of the image sample and of --subset.")
PREP_OUT = typer.Option(None, "--out", help="With --subset: the new dataset folder.")
PREP_FORCE = typer.Option(False, "--force", help="With --subset: replace a non-empty --out.")


@app.command("synth")
def synth(ctx: typer.Context, out_dir: Path = SYNTH_OUT, like: Optional[str] = LIKE, num_classes: int = NUM_CLASSES,
          train_images: int = TRAIN_IMAGES, val_images: int = VAL_IMAGES, image_size: int = IMAGE_SIZE,
          tail_exponent: float = TAIL_EXPONENT, max_objects: int = MAX_OBJECTS, seed: int = SYNTH_SEED,
          force: bool = SYNTH_FORCE, no_masks: bool = NO_MASKS, json_out: bool = JSON_OUTPUT) -> None:
    """Generate a synthetic long-tailed detection + segmentation dataset in LVIS v1 format.

    With --like lvis-v1 / lvis-v0.5: an LVIS-shaped dataset (official class count and frequency groups,
    annotations/lvis_*_{train,val}.json, COCO-named images under train2017/ and val2017/) for running the
    shipped configs/lvis/ configs offline; run `loce data prep --root OUT` on it next.
    """
    if like is not None:
        if no_masks:
            raise fail("--no-masks works without --like only", 2)
        return _synth_like(ctx, out_dir, like, train_images, val_images, seed, force, json_out)
    from loce_cli.engine.data.synth import SynthOptions, synthesize

    opts = SynthOptions(num_classes=num_classes, train_images=train_images, val_images=val_images,
                        image_size=image_size, tail_exponent=tail_exponent, max_objects=max_objects, seed=seed,
                        masks=not no_masks)
    with status(f"drawing {train_images + val_images} images...", json_out):
        result = synthesize(out_dir, opts, force=force)
    if json_out:
        print_json(result.to_dict())
        return
    kind = "synthetic LVIS v1 dataset" + (" (boxes only)" if no_masks else "")
    splits = table(f"{kind} in {result.out_dir}", ("split", "images", "instances",
                                                                       "annotation file"),
                   left=("split", "annotation file"))
    for name, s in (("train", result.train), ("val", result.val)):
        splits.add_row(name, f"{s.images:,}", f"{s.instances:,}", s.annotation_file)
    out.print(splits)
    out.print(f"{opts.num_classes} classes by training-image frequency: {counts(result.classes_per_group)}")
    _print_written(result)


def _synth_like(ctx, out_dir: Path, like: str, train_images: int, val_images: int, seed: int, force: bool,
                json_out: bool) -> None:
    """``--like lvis-v1|lvis-v0.5``: the LVIS-shaped generator (loce_cli.engine.data.synth_lvis)."""
    given = _check_like(ctx, like)
    from loce_cli.engine.data.synth_lvis import DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES, LvisLikeOptions, \
        synthesize_lvis_like

    opts = LvisLikeOptions(like=like, train_images=train_images if "train_images" in given else DEFAULT_TRAIN_IMAGES,
                           val_images=val_images if "val_images" in given else DEFAULT_VAL_IMAGES, seed=seed)
    with status(f"drawing {opts.train_images + opts.val_images} LVIS {opts.version}-shaped images...", json_out):
        result = synthesize_lvis_like(out_dir, opts, force=force)
    if json_out:
        print_json(result.to_dict())
        return
    splits = table(f"LVIS {result.version}-shaped synthetic dataset in {result.out_dir}",
                   ("split", "images", "instances", "image folders", "annotation file"),
                   left=("split", "image folders", "annotation file"))
    for name, s in (("train", result.train), ("val", result.val)):
        folders = ", ".join(f"{k}/ {v:,}" for k, v in s.image_folders.items())
        splits.add_row(name, f"{s.images:,}", f"{s.instances:,}", folders, s.annotation_file)
    out.print(splits)
    out.print(f"{result.num_classes:,} classes by training-image frequency: {counts(result.classes_per_group)}")
    _print_written(result, soft_wrap=True)


def _check_like(ctx, like: str) -> set:
    """Refuse (usage error) an unknown --like or an option it fixes; the options given on the command line."""
    likes = ("lvis-v1", "lvis-v0.5")
    if like not in likes:
        raise fail(f"--like must be one of {', '.join(likes)}, got {like!r}", 2)
    given = {name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}
    fixed = given.intersection(NOT_WITH_LIKE)
    if fixed:
        names = ", ".join("--" + n.replace("_", "-") for n in sorted(fixed))
        raise fail(f"{names} cannot be combined with --like (hint: --like fixes the classes, image sizes and "
                   "frequency groups of the LVIS release; only --train-images, --val-images and --seed apply)", 2)
    return given


def _print_written(result, soft_wrap: Optional[bool] = None) -> None:
    out.print(f"{result.files_written:,} files, {result.bytes_written / 1e6:.1f} MB in {result.seconds:.1f} s")
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", soft_wrap=soft_wrap)


@app.command("stats")
def stats(annotation_json: Path = ANNOTATION_JSON, json_out: bool = STATS_JSON, plot: Optional[Path] = PLOT) -> None:
    """Class-frequency distribution of an annotation file: counts per rare/common/frequent group."""
    from loce_cli.engine.data.stats import dataset_stats
    from loce_cli.engine.pictures.stats_plot import plot_stats

    check_plot_path(plot)
    result = dataset_stats(annotation_json)
    if plot is not None:
        plot_stats(result, plot)
    if json_out:
        print_json(result.to_dict())
        return
    _print_stats(result, annotation_json.name)
    if plot is not None:
        out.print(f"plot written to {plot}")


def _print_stats(result, name: str) -> None:
    groups = table(f"{name}: {result.num_images:,} images, {result.num_annotations:,} instances, "
                   f"{result.num_classes:,} classes", ("group", "classes", "images", "instances",
                                                        "share of instances", "classes w/o instances"),
                   left=("group",))
    total = max(result.num_annotations, 1)
    for g, s in result.groups.items():
        groups.add_row(group_label(g), f"{s.classes:,}", f"{s.images:,}",
                       f"{s.instances:,}", f"{100 * s.instances / total:.1f}%", f"{s.classes_without_instances:,}")
    out.print(groups)
    if result.head_tail_ratio is not None:
        out.print(f"head/tail ratio (instances of the largest / smallest non-empty class): "
                  f"{result.head_tail_ratio:,.1f}")
    source = ("the file's category 'frequency' fields (LVIS: from training-image counts)"
              if result.frequency_source == "categories"
              else "this file's own image counts (no 'frequency' fields: right for a training file)")
    out.print(f"groups from {source}")


@app.command("prep")
def prep(root: Path = ROOT, version: LvisVersion = VERSION, check_images: CheckImages = CHECK,
         subset: Optional[float] = SUBSET, seed: int = PREP_SEED, out_dir: Optional[Path] = PREP_OUT,
         force: bool = PREP_FORCE, json_out: bool = JSON_OUTPUT) -> None:
    """Validate LVIS (v1, v0.5) or LVIS-format data under --root and write annotations/loce_meta.json.

    Checks every annotation file (JSON, keys, unique ids, references, boxes, segmentations, frequency groups,
    image files); exit 1 on errors (nothing written), 0 with warnings for tolerable oddities. The meta file
    (class names in label order, frequency groups, per-class counts, checksums) is what training reads.
    """
    _check_prep_options(version, check_images, subset, out_dir)
    from loce_cli.engine.data import prep as engine

    try:
        with status(f"validating {root}...", json_out):
            if subset is not None:
                sub = engine.make_subset(root, out_dir, subset, seed=seed, version=version, force=force,
                                         check_images=check_images)
                result = sub.prep
            else:
                sub = None
                result = engine.prep_dataset(root, version=version, check_images=check_images, seed=seed)
    except engine.MissingDataError as e:
        if not json_out:
            err.print(e.layout, markup=False, highlight=False)
        raise
    if json_out:
        print_json(sub.to_dict() if sub is not None else result.to_dict())
    else:
        _print_prep(result, sub)
    if not result.ok:
        files = sum(1 for f in result.files if f.errors) or 1
        raise fail(f"{result.errors:,} problem(s) in {files} file(s) under {result.root}; nothing written (hint: "
                   "fix the files as listed above, or download them again, then rerun loce data prep)")


def _check_prep_options(version: str, check_images: str, subset, out_dir) -> None:
    choices = {"version": (version, ("v1", "v0.5", "auto")), "check-images": (check_images, ("all", "sample", "none"))}
    for opt, (value, allowed) in choices.items():
        if value not in allowed:
            raise fail(f"--{opt} must be one of {', '.join(allowed)}, got {value!r}", 2)
    if (subset is None) != (out_dir is None):
        raise fail("--subset and --out go together (hint: loce data prep --root DIR --subset 0.1 --out DIR_SMALL)", 2)


def _print_prep(result, sub) -> None:
    title = f"LVIS {result.version}" if result.version else "LVIS-format data"
    out.print(f"[bold]{title}[/] under {result.root}", soft_wrap=True, highlight=False)
    files = table(None, ("file", "images", "instances", "classes", "result"), left=("file", "result"),
                  no_wrap=("file",))
    for f in result.files:
        verdict = "[red]errors[/]" if f.errors else ("[yellow]warnings[/]" if f.problems else "[green]ok[/]")
        files.add_row(Path(f.path).name, f"{f.images:,}", f"{f.annotations:,}", f"{f.categories:,}", verdict)
    out.print(files)
    checked = sum(f.images_checked for f in result.files)
    out.print(f"image files checked: {checked:,} ({result.check_images})" if result.check_images != "none"
              else "image files: not checked (--check-images none)")
    for where, p in result.all_problems():
        colour = "red" if p.severity == "error" else "yellow"
        out.print(f"[{colour}]{p.severity}[/] {Path(where).name}: {p.message} ({p.count:,})", highlight=False,
                  soft_wrap=True)
        for ex in p.examples:
            out.print(f"    e.g. {ex}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"    fix: {p.hint}", markup=False, highlight=False, soft_wrap=True)
    if result.layout_help:
        out.print(result.layout_help, markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        return
    out.print(f"{result.num_classes:,} classes: {counts(result.classes_per_group)}")
    if sub is not None:
        out.print(f"subset: {sub.images:,} of {sub.source_images:,} images, {sub.annotations:,} of "
                  f"{sub.source_annotations:,} instances (fraction {sub.fraction:g}, seed {sub.seed}); "
                  f"{sub.classes_without_instances:,} classes without instances", soft_wrap=True)
    out.print(f"wrote {result.meta_path} in {result.seconds:.1f} s"
              + (f" ({result.warnings_listed:,} warning(s) above)" if result.warnings_listed else ""), soft_wrap=True)


import_app = typer.Typer(help="Import other formats as an LVIS-format dataset folder.", no_args_is_help=True)
app.add_typer(import_app, name="import")

IMPORT_OUT = typer.Argument(..., help="The dataset folder to write (new or empty; --force replaces an import).")
COCO_TRAIN = typer.Option(..., "--train", help="COCO-format training annotation file.")
COCO_TRAIN_IMAGES = typer.Option(..., "--train-images", help="Folder its file_name fields are relative to.")
COCO_VAL = typer.Option(..., "--val", help="COCO-format validation annotation file.")
COCO_VAL_IMAGES = typer.Option(..., "--val-images", help="Folder the val file's file_name fields are relative to.")
COPY = typer.Option(False, "--copy", help="Copy the listed images into OUT instead of linking the folders.")
RARE_MAX = typer.Option(10, "--rare-max", help="Most training images of a rare class (LVIS: 10).")
COMMON_MAX = typer.Option(100, "--common-max", help="Most training images of a common class (LVIS: 100).")
IMPORT_FORCE = typer.Option(False, "--force", help="Replace the dataset in a non-empty OUT.")


@import_app.command("coco")
def import_coco(out_dir: Path = IMPORT_OUT, train: Path = COCO_TRAIN, train_images: Path = COCO_TRAIN_IMAGES,
                val: Path = COCO_VAL, val_images: Path = COCO_VAL_IMAGES, copy: bool = COPY,
                rare_max: int = RARE_MAX, common_max: int = COMMON_MAX, force: bool = IMPORT_FORCE,
                json_out: bool = JSON_OUTPUT) -> None:
    """A COCO-format train + val pair (masks or boxes only) as an LVIS-format dataset folder.

    Keeps every id and name; adds each class's frequency group from its training images (rare <= --rare-max,
    common <= --common-max, frequent above), image_count and instance_count. COCO is exhaustive: each val image
    gets neg_category_ids (every class not annotated in it), so loce's AP on the val file is COCO's AP; the
    train file says so once (info.all_categories_exhaustive). iscrowd regions stay ignored regions; an object
    with 'ignore' but not iscrowd is an ordinary object, as in pycocotools' COCOeval. Images are linked, not
    copied, unless --copy. Runs `loce data prep` on the result (annotations/loce_meta.json), so every command
    reads it.
    """
    from loce_cli.engine.data.coco_import import import_coco as run_import

    with status(f"importing {train.name} and {val.name}...", json_out):
        result = run_import(out_dir, train, train_images, val, val_images, rare_max=rare_max,
                            common_max=common_max, copy=copy, force=force)
    if json_out:
        print_json(result.to_dict())
        return
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True, highlight=False)
    for n in result.notes:
        err.print(f"note: {n}", soft_wrap=True, highlight=False)
    splits = table(f"COCO data imported into {result.out_dir}", ("split", "images", "instances", "crowd regions",
                                                                  "annotation file", "images from"),
                   left=("split", "annotation file", "images from"))
    for name, s in (("train", result.train), ("val", result.val)):
        splits.add_row(name, f"{s.images:,}", f"{s.annotations - s.crowd:,}", f"{s.crowd:,}", s.annotation_file,
                       ("copied from " if result.copied else "linked to ") + s.images_from)
    out.print(splits)
    _print_stats(result.stats, "train.json")
    by_group = {}
    for c in result.stats.classes:
        by_group.setdefault(c.group, []).append(f"{c.name} ({c.images})")
    for g in ("r", "c", "f"):
        names = by_group.get(g, [])
        if names:
            shown_names = ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "")
            out.print(f"{group_label(g)} (training images): {shown_names}", soft_wrap=True, highlight=False)
    out.print(f"groups: rare <= {result.rare_max} training images, common <= {result.common_max}, frequent above; "
              f"{'masks' if result.masks else 'boxes only'}; wrote {result.meta_path} in {result.seconds:.1f} s",
              soft_wrap=True)

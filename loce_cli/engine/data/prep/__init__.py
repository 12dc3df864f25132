"""``loce data prep``: find, validate and index real LVIS (or LVIS-format) data.

``prep_dataset(root)`` finds the annotation files under ``root`` (``annotations/lvis_v1_{train,val}.json``,
``lvis_v0.5_*`` or any other LVIS-format ``*.json``), validates each one (JSON, keys, ids, references,
boxes, segmentations, frequency groups, image files) and, when nothing is wrong, writes ``loce_meta.json``
next to the annotations: the dataset's version, class names in label order, frequency groups, per-class
image / instance counts of every file and the files' checksums. Training (``LoceLVISDataset``), ``report``
and ``inspect`` read class names and groups from that one file.

Speed: the file is parsed with ``msgspec`` (the least peak memory of json / orjson / msgspec, and about 2x
the standard library's ``json``; ``bench/bench_prep.py --parsers``) while a second thread hashes its bytes,
with Python's cyclic garbage collector paused (JSON makes no cycles; the collector would walk the growing
heap again and again). The checks over 1.27M annotations are column-wise numpy work, with a per-item pass
only over a column that failed the fast check (to name every bad item). ``bench/bench_prep.py`` measures it
against a plain ``lvis.LVIS(...)`` load.

The modules, by concern: ``formats`` (LVIS releases, file names, the meta's format), ``problems`` (kinds,
counts, examples), ``reports`` (what prep and subset return), ``reading`` (parsing and hashing a file),
``annotations`` (validating one file, section by section), ``columns`` (a file's fields as checked numpy
columns), ``item_checks`` (category lists, boxes and segmentations item by item), ``images`` (the image files it
names), ``dataset`` (a dataset root: its files found, validated, compared; the meta written), ``meta``
(``loce_meta.json`` built, found, read, required), ``subset`` (``--subset``).
"""

from loce_cli.engine.data.prep.annotations import (SAMPLE_IMAGES, ParsedFile, detect_version, image_relpath,
                                                   validate_annotation_file)
from loce_cli.engine.data.prep.dataset import DOWNLOAD_GUIDE, find_annotation_files, layout_help, prep_dataset
from loce_cli.engine.data.prep.formats import FILE_NAMES, META_FORMAT, META_NAME, OFFICIAL, VERSIONS
from loce_cli.engine.data.prep.images import CHECK_IMAGES, IMAGE_MAGIC
from loce_cli.engine.data.prep.item_checks import CHUNK
from loce_cli.engine.data.prep.meta import build_meta, check_prepared, dataset_root_of, find_meta, read_meta
from loce_cli.engine.data.prep.problems import EXAMPLES, KINDS, Problem, Problems
from loce_cli.engine.data.prep.reading import read_json_file, size_is_empty
from loce_cli.engine.data.prep.reports import FileReport, MissingDataError, PrepResult, SubsetResult
from loce_cli.engine.data.prep.subset import make_subset

__all__ = [
    "CHECK_IMAGES", "CHUNK", "DOWNLOAD_GUIDE", "EXAMPLES", "FILE_NAMES", "IMAGE_MAGIC", "KINDS", "META_FORMAT",
    "META_NAME", "OFFICIAL", "SAMPLE_IMAGES", "VERSIONS", "FileReport", "MissingDataError", "ParsedFile",
    "PrepResult", "Problem", "Problems", "SubsetResult", "build_meta", "check_prepared", "dataset_root_of",
    "detect_version", "find_annotation_files", "find_meta", "image_relpath", "layout_help", "make_subset",
    "prep_dataset", "read_json_file", "read_meta", "size_is_empty", "validate_annotation_file",
]

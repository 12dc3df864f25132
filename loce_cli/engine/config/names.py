"""The configs shipped with loce, and CONFIG arguments given by name.

The shipped tree is ``loce_cli/configs`` inside the package: in a checkout a link to the checkout's ``configs/``
(the one copy), in an installed wheel the files themselves (``pyproject.toml`` ships them as package data).
Its complete configs live in ``lvis/`` and ``synthetic/``; ``_base_/`` holds the pieces they inherit.

Every command that takes a CONFIG accepts a file path or a shipped name: ``lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1``
(the path under the tree without ``.py``; with ``.py`` or a leading ``configs/`` too), or a file name alone when
one shipped config has it. A file that exists wins over a name. :func:`resolve_config` is the one place that
turns the argument into a file; ``loce configs`` lists :func:`shipped_configs`.

Each complete config starts with a line ``# Stage N | DATASET | BACKBONE | what it is`` (tests keep every
shipped config described, and the description true to the config's contents)."""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from loce_cli.errors import DataError

GROUPS = ("lvis", "synthetic")  # folders of complete configs, in the order `loce configs` lists them
HEADER = re.compile(r"^#\s*Stage\s+([12])\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*(.+?)\s*$")
STAGES = {1: "base", 2: "finetune"}


@dataclass
class ShippedConfig:
    name: str  # e.g. lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1
    path: str
    stage: Optional[int]  # 1 (loce train base) or 2 (loce finetune); None without a header line
    dataset: str
    backbone: str
    summary: str

    @property
    def command(self) -> str:
        """The command that trains it."""
        return "loce finetune" if self.stage == 2 else "loce train base"

    def to_dict(self) -> dict:
        return dict(asdict(self), command=self.command)


def configs_root() -> Path:
    """The shipped config tree (the checkout's ``configs/`` when run from a checkout)."""
    return (Path(__file__).resolve().parents[2] / "configs").resolve()  # loce_cli/configs


def read_header(path: Path) -> Optional[tuple]:
    """``(stage, dataset, backbone, summary)`` from the config's first line, or None when it has none."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    m = HEADER.match(first)
    return (int(m.group(1)), m.group(2), m.group(3), m.group(4)) if m else None


def shipped_configs(root: Optional[Path] = None) -> List[ShippedConfig]:
    """Every complete shipped config, by group then name."""
    root = root or configs_root()
    found = []
    for group in GROUPS:
        for path in sorted((root / group).glob("*.py")):
            stage, dataset, backbone, summary = read_header(path) or (None, "", "", "")
            found.append(ShippedConfig(f"{group}/{path.stem}", str(path), stage, dataset, backbone, summary))
    return found


def _key(text: str) -> str:
    """The argument as a name: POSIX separators, no ``./``, no leading ``configs/``, no ``.py``."""
    key = text.replace("\\", "/").strip()
    while key.startswith("./"):
        key = key[2:]
    if key.startswith("configs/"):
        key = key[len("configs/"):]
    return key[:-3] if key.endswith(".py") else key


def shipped_file(name: str, root: Optional[Path] = None) -> Optional[Path]:
    """The shipped file ``name`` stands for (any file of the tree, ``_base_`` pieces included), or None."""
    root = root or configs_root()
    key = _key(name)
    if not key or key.startswith("/") or ".." in key.split("/"):
        return None
    if "/" in key:
        path = root / f"{key}.py"
        return path if path.is_file() else None
    alone = [p for group in GROUPS for p in (root / group).glob(f"{key}.py")]
    return alone[0] if len(alone) == 1 else None


def nearest_names(name: str, root: Optional[Path] = None, n: int = 3) -> List[str]:
    """The shipped names closest to ``name`` (full names and bare file names both count)."""
    key = _key(name)
    full: Dict[str, str] = {}
    for c in shipped_configs(root):
        full[c.name] = c.name
        full.setdefault(c.name.split("/", 1)[1], c.name)
    picks = difflib.get_close_matches(key, list(full), n=3 * n, cutoff=0.5)
    # among the close spellings, the names sharing most of the typed words first (mask_rcnn is not faster_rcnn),
    # then difflib's order
    words = set(re.split(r"[/_.]", key))
    ranked = sorted(enumerate(picks), key=lambda ip: (-len(words & set(re.split(r"[/_.]", ip[1]))), ip[0]))
    return list(dict.fromkeys(full[p] for _, p in ranked))[:n]


def resolve_config(config: Union[str, Path], root: Optional[Path] = None) -> Path:
    """The config file ``config`` names: the file when it exists, else the shipped config of that name; one
    line naming the nearest shipped names otherwise."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise DataError(f"config {config} is a directory", "pass a .py config in it, or a name from `loce configs`")
    found = shipped_file(str(config), root)
    if found is not None:
        return found
    near = nearest_names(str(config), root)
    hint = (f"nearest shipped names: {', '.join(near)}; `loce configs` lists them all" if near else
            "`loce configs` lists the shipped names (e.g. synthetic/mask_rcnn_r18_fpn_normed_synth)")
    raise DataError(f"config {config} does not exist (no such file, and no shipped config of that name)", hint)


def config_file_name(config: Union[str, Path]) -> str:
    """The file name of the config ``config`` names (for the copy a run writes into its work dir); the
    argument's own name, with ``.py``, when it names nothing (a resume whose config file has gone)."""
    try:
        return resolve_config(config).name
    except DataError:
        name = Path(str(config)).name
        return name if name.endswith(".py") else f"{name}.py"

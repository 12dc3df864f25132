"""What ``loce data prep`` and ``--subset`` return: per-file reports, the dataset's result, the subset's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

from loce_cli.core.frequency import GROUP_NAMES
from loce_cli.engine.data.prep.problems import Problem
from loce_cli.errors import DataError


@dataclass
class FileReport:
    path: str
    role: str  # train | val | other
    version: Optional[str] = None  # v1 | v0.5 | None (not recognised: LVIS format of one's own)
    size: int = 0
    sha256: Optional[str] = None
    images: int = 0
    annotations: int = 0
    categories: int = 0
    seconds: float = 0.0
    images_checked: int = 0
    problems: List[Problem] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(p.count for p in self.problems if p.severity == "error")


@dataclass
class PrepResult:
    root: str
    version: Optional[str]
    check_images: str
    files: List[FileReport]
    problems: List[Problem]  # dataset-level (layout, files that disagree, groups)
    num_classes: int = 0
    classes_per_group: Dict[str, int] = field(default_factory=dict)
    frequency_source: str = "categories"
    meta_path: Optional[str] = None
    seconds: float = 0.0
    layout_help: Optional[str] = None

    @property
    def errors(self) -> int:
        return sum(p.count for p in self.problems if p.severity == "error") + sum(f.errors for f in self.files)

    @property
    def warnings(self) -> int:
        """Items warned about (a warning's count is the images / classes / ... it concerns)."""
        return sum(p.count for _, p in self.all_problems() if p.severity == "warning")

    @property
    def warnings_listed(self) -> int:
        """Warnings listed (one per kind of problem and file), what the report's last line counts."""
        return sum(1 for _, p in self.all_problems() if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def all_problems(self) -> List[Tuple[str, Problem]]:
        out = [(self.root, p) for p in self.problems]
        for f in self.files:
            out.extend((f.path, p) for p in f.problems)
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ok=self.ok, errors=self.errors, warnings=self.warnings)
        d["classes_per_group"] = {GROUP_NAMES[g]: n for g, n in self.classes_per_group.items()}
        return d


@dataclass
class SubsetResult:
    source: str
    out_dir: str
    fraction: float
    seed: int
    images: int
    annotations: int
    source_images: int
    source_annotations: int
    classes_without_instances: int
    prep: PrepResult

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prep"] = self.prep.to_dict()
        return d


class MissingDataError(DataError):
    """Annotation files not found; ``layout`` is the expected tree and where to get the data."""

    def __init__(self, message: str, hint: str, layout: str):
        super().__init__(message, hint)
        self.layout = layout

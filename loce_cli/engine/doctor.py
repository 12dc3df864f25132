"""Environment check behind ``loce doctor``: what is installed, whether it works, and how to fix it if not."""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

SETUP_HINT = "run scripts/dev/setup.sh (or `make setup`) from the loce checkout"


@dataclass
class Check:
    name: str
    ok: bool
    required: bool
    version: Optional[str] = None
    detail: str = ""
    hint: str = ""


@dataclass
class DoctorReport:
    checks: List[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    @property
    def problems(self) -> List[Check]:
        return [c for c in self.checks if c.required and not c.ok]

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _dist_version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _check(name: str, required: bool, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as e:  # a broken install raises anything: report it, never crash the doctor
        return Check(name=name, ok=False, required=required, detail=f"{type(e).__name__}: {e}".strip(),
                     hint=SETUP_HINT)


def check_python() -> Check:
    ok = sys.version_info >= (3, 9)
    return Check("python", ok, True, platform.python_version(), sys.executable,
                 "" if ok else "loce needs Python >= 3.9")


def check_torch() -> Check:
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        detail = f"CUDA {torch.version.cuda} available: {len(names)} device(s): " + ", ".join(names)
    else:
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
        detail = f"no CUDA device ({built}); training and evaluation run on CPU"
    # A tiny real computation: catches broken builds that import but cannot run.
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    if float((x @ x.t()).sum()) != 83.0:  # [[5, 14], [14, 50]]
        return Check("torch", False, True, torch.__version__, "matrix product gave a wrong result", SETUP_HINT)
    return Check("torch", True, True, torch.__version__, detail)


def check_torchvision() -> Check:
    import torch
    import torchvision
    from torchvision.ops import nms

    keep = nms(torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10]]), torch.tensor([0.9, 0.8]), 0.5)
    ok = keep.tolist() == [0]
    return Check("torchvision", ok, True, torchvision.__version__, "ops load" if ok else "nms gave a wrong result",
                 "" if ok else SETUP_HINT)


def check_mmcv() -> Check:
    import mmcv
    import torch

    major = int(mmcv.__version__.split(".")[0])
    if major != 1:
        return Check("mmcv-full", False, True, mmcv.__version__, "loce needs mmcv-full 1.x (mmdet 2.x)",
                     "install mmcv-full 1.7.2: " + SETUP_HINT)
    try:
        from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms
    except (ImportError, ModuleNotFoundError) as e:
        return Check("mmcv-full", False, True, mmcv.__version__,
                     f"compiled ops do not load ({e}); this is mmcv without ops, or built for another torch",
                     "rebuild mmcv-full with MMCV_WITH_OPS=1: " + SETUP_HINT)
    devices = []
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, 0.5)
    feats = torch.ones(1, 2, 8, 8)
    rois = torch.tensor([[0.0, 0, 0, 4, 4]])
    pooled = RoIAlign((2, 2), 1.0, 2)(feats, rois)
    if keep.tolist() != [0, 2] or not torch.allclose(pooled, torch.ones(1, 2, 2, 2)):
        return Check("mmcv-full", False, True, mmcv.__version__, "CPU ops gave wrong results", SETUP_HINT)
    devices.append("cpu")
    cuda_built = get_compiling_cuda_version()
    detail_cuda = ""
    if cuda_built and cuda_built != "not available":
        if torch.cuda.is_available():
            _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
            if keep_cuda.cpu().tolist() == [0, 2]:
                devices.append("cuda")
            else:
                detail_cuda = "; CUDA ops gave wrong results"
        else:
            detail_cuda = f"; CUDA ops compiled (CUDA {cuda_built}) but no GPU to run them"
    elif torch.cuda.is_available():
        # no CUDA build of mmcv: loce runs RoIAlign and NMS on CUDA through torchvision (mmdet_ext.cuda_ops)
        from loce_cli.mmdet_ext import cuda_ops

        cuda_ops.install()
        _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
        pooled_cuda = RoIAlign((2, 2), 1.0, 2)(feats.cuda(), rois.cuda())
        if keep_cuda.cpu().tolist() != [0, 2] or not torch.allclose(pooled_cuda.cpu(), pooled):
            return Check("mmcv-full", False, True, mmcv.__version__,
                         "mmcv-full has no CUDA ops and torchvision's CUDA RoIAlign/NMS gave wrong results",
                         "rebuild with LOCE_CUDA=1 scripts/dev/setup.sh (nvcc matching torch's CUDA)")
        devices.append("cuda (RoIAlign and NMS through torchvision: mmcv built without CUDA ops)")
    return Check("mmcv-full", True, True, mmcv.__version__,
                 f"compiled ops load and run on: {', '.join(devices)}{detail_cuda}")


def check_mmcv_config() -> Check:
    # mmcv 1.x formats configs with yapf and passes `verify`, which yapf 0.40.2 removed.
    import yapf
    from mmcv import Config

    Config(dict(model=dict(type="X", n=1))).pretty_text
    return Check("mmcv Config (yapf)", True, True, getattr(yapf, "__version__", "unknown"),
                 "config files format and dump")


def check_mmdet() -> Check:
    import mmdet

    major = int(mmdet.__version__.split(".")[0])
    if major != 2:
        return Check("mmdet", False, True, mmdet.__version__, "loce needs mmdet 2.x",
                     "pip install --no-deps mmdet==2.28.2")
    from mmdet.apis import init_detector  # noqa: F401  (the API layer imports: models, datasets, mmcv ops)
    from mmdet.datasets import LVISV1Dataset  # noqa: F401

    return Check("mmdet", True, True, mmdet.__version__, "models and LVIS datasets import")


def check_lvis() -> Check:
    from loce_cli import compat

    compat.apply()
    from lvis import LVIS, LVISEval  # noqa: F401

    return Check("lvis", True, True, _dist_version("lvis"), "official LVIS API (reference evaluator) imports")


def check_numpy() -> Check:
    import numpy as np

    from loce_cli import compat

    missing = compat.missing_aliases()
    compat.apply()
    still = compat.missing_aliases()
    if still:
        return Check("numpy", False, True, np.__version__, f"could not restore aliases {', '.join(still)}",
                     "pin numpy<2 (requirements/runtime.txt)")
    if missing:
        detail = (f"removed aliases np.{', np.'.join(missing)} are restored by loce_cli.compat "
                  "(lvis 0.5.3 and mmdet 2.28 still use them)")
    else:
        detail = "this numpy still has np.float/np.int etc.; loce_cli.compat has nothing to do"
    return Check("numpy", True, True, np.__version__, detail)


def check_pycocotools() -> Check:
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.ones((4, 4), dtype=np.uint8)))
    ok = int(mask_utils.area(rle)) == 16
    return Check("pycocotools", ok, True, _dist_version("pycocotools"),
                 "mask RLE encode works" if ok else "mask area is wrong", "" if ok else SETUP_HINT)


def check_streaming_evaluator() -> Check:
    """numba compiles the streaming evaluator's matching kernel (or loads it from its cache) and runs it."""
    import numpy as np

    from loce_cli.engine.evaluation.matching import match_groups

    one = np.array([[0, 1]], np.int64)
    box = np.array([[0.0, 0.0, 4.0, 4.0]])
    tp, fp = match_groups(one, one, box, np.full(1, 16.0), np.zeros(1, np.bool_), box, np.full(1, 16.0),
                          np.zeros(1, np.bool_))
    ok = int(tp[0, 0]) == (1 << 10) - 1 and int(fp.sum()) == 0  # a perfect match at every IoU threshold
    return Check("numba", ok, True, _dist_version("numba"),
                 "streaming evaluator's matching compiles and runs" if ok else "matching gave a wrong result",
                 "" if ok else SETUP_HINT)


def check_backbone_weights() -> Check:
    """Whether the shipped configs' backbone weights (``torchvision://resnet50`` ...) are in torch's hub cache: a
    `train base` without network needs them there (or --backbone-weights); fine-tunes, eval and predict never do."""
    from mmcv import Config

    from loce_cli.engine.config.names import shipped_configs
    from loce_cli.mmdet_ext.backbone_weights import resolve, weights_name

    found = {}
    for shipped in shipped_configs():
        weights = resolve(weights_name(Config.fromfile(shipped.path).model))
        if weights is not None:
            found.setdefault(weights.name, weights)
    missing = [w for w in found.values() if not w.cached]
    detail = "; ".join(f"{w.name}: {'cached' if w.cached else 'not cached'} ({w.path.name})" for w in found.values())
    hint = ""
    if missing:
        folder = missing[0].path.parent
        hint = (f"`loce train base` downloads them; offline, put {', '.join(w.path.name for w in missing)} into "
                f"{folder}/ ({', '.join(w.url for w in missing)}) or pass --backbone-weights PATH")
    return Check("backbone weights", not missing, False, None, detail or "no shipped config names any", hint)


def run_doctor() -> DoctorReport:
    """Run every check; never raises (a failing check is reported, with a hint)."""
    from loce_cli import compat

    compat.quiet_known_noise()
    report = DoctorReport()
    report.checks.append(_check("python", True, check_python))
    report.checks.append(_check("numpy", True, check_numpy))
    report.checks.append(_check("torch", True, check_torch))
    report.checks.append(_check("torchvision", True, check_torchvision))
    report.checks.append(_check("mmcv-full", True, check_mmcv))
    report.checks.append(_check("mmcv Config (yapf)", True, check_mmcv_config))
    report.checks.append(_check("mmdet", True, check_mmdet))
    report.checks.append(_check("pycocotools", True, check_pycocotools))
    report.checks.append(_check("lvis", True, check_lvis))
    report.checks.append(_check("numba", True, check_streaming_evaluator))
    report.checks.append(_check("backbone weights", False, check_backbone_weights))
    return report

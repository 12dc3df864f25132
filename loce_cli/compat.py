"""The one answer to numpy >= 1.24 having removed the scalar aliases ``np.float``, ``np.int``, ``np.bool``,
``np.object``, ``np.str`` (deprecated in 1.20): lvis 0.5.3 (``eval.py``: ``dtype=np.float``) and mmdet 2.28
(``datasets/custom.py``, ``get_cat_ids``: ``np.int``) still use them at call time.

``apply()`` puts the aliases back, pointing at the builtins they always meant. It is idempotent, is called
by ``loce_cli.mmdet_ext`` on import (so any mmdet config with ``custom_imports`` gets it) and by every engine
function that touches lvis or mmdet. Nothing else in numpy is changed.
"""

from __future__ import annotations

import builtins
import logging
import warnings

import numpy as np

ALIASES = ("float", "int", "bool", "object", "str", "complex")


def missing_aliases() -> list[str]:
    """Names of the removed aliases that are currently absent from numpy."""
    return [name for name in ALIASES if name not in np.__dict__]


def apply() -> list[str]:
    """Restore the removed aliases; return the names that were restored by this call."""
    restored = []
    for name in missing_aliases():
        setattr(np, name, getattr(builtins, name))
        restored.append(name)
    return restored


def quiet_known_noise() -> None:
    """Silence import-time noise that says nothing to loce users: mmcv 1.x's notice about its 2.0
    renaming, torch's "No CUDA runtime is found" log line when mmcv imports ``torch.utils.cpp_extension``
    on a machine without a GPU, and the root-logger handler that importing lvis installs."""
    warnings.filterwarnings("ignore", message=r"On January 1, 2023, MMCV will release v2\.0\.0", category=UserWarning)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # lvis 0.5.3 calls logging.basicConfig() when imported, which prints every library's INFO messages a
    # second time through the root logger: import it once here and take that handler back off.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import lvis  # noqa: F401  (here, not at the top: the handler it installs is taken off below)
    except ImportError:
        return
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)

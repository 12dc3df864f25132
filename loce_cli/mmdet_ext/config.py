"""mmcv config loading with one-line errors, and ``--cfg-options KEY=VALUE`` that must name existing keys."""

from __future__ import annotations

from pathlib import Path
import ast
from typing import Any, Dict, Sequence

from loce_cli.errors import DataError, LoceUsageError


def parse_value(text: str) -> Any:
    """``KEY=VALUE`` value: a Python literal (number, bool, None, list, tuple, dict, quoted string) or a plain
    string; ``a,b,c`` becomes a list."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text in ("true", "false"):
        return text == "true"
    if "," in text and not text.startswith(("[", "(", "{")):
        return [parse_value(part) for part in text.split(",")]
    return text


def parse_cfg_options(options: Sequence[str]) -> Dict[str, Any]:
    parsed: Dict[str, Any] = {}
    for item in options or []:
        if "=" not in item:
            raise LoceUsageError(f"--cfg-options {item!r} is not KEY=VALUE", "e.g. --cfg-options runner.max_epochs=2")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise LoceUsageError(f"--cfg-options {item!r} has an empty key", "e.g. --cfg-options optimizer.lr=0.01")
        parsed[key] = parse_value(value.strip())
    return parsed


def _check_key(cfg, key: str) -> None:
    node: Any = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not hasattr(node, "keys") or part not in node:
            where = ".".join(parts[:depth]) or "the config's top level"
            options = sorted(node.keys())[:12] if hasattr(node, "keys") else []
            raise LoceUsageError(
                f"--cfg-options key {key!r} does not exist ({part!r} is not in {where})",
                f"keys there: {', '.join(options)}" if options else "check the key against the config")
        node = node[part]


def load_config(path: Path, cfg_options: Sequence[str] = ()):
    """An ``mmcv.Config`` from ``path`` with ``cfg_options`` merged; every option must name an existing key."""
    from mmcv import Config

    path = Path(path)
    if not path.is_file():
        raise DataError(f"config {path} does not exist", "pass a config file, e.g. configs/synthetic/"
                        "mask_rcnn_r18_fpn_normed_synth.py")
    if path.suffix != ".py":
        raise DataError(f"config {path} is not a Python config (.py)", "mmdet 2.x configs are .py files")
    try:
        cfg = Config.fromfile(str(path))
    except SyntaxError as e:
        raise DataError(f"config {path} has a syntax error (line {e.lineno}: {e.msg})", "fix the config") from None
    except FileNotFoundError as e:
        raise DataError(f"config {path} refers to a missing file: {e}", "check its _base_ paths") from None
    except Exception as e:  # mmcv raises many kinds for malformed configs
        raise DataError(f"config {path} cannot be loaded: {type(e).__name__}: {e}", "fix the config") from None
    options = parse_cfg_options(cfg_options)
    for key in options:
        _check_key(cfg, key)
    if options:
        cfg.merge_from_dict(options)
    return cfg


def load_config_text(text: str, cfg_options: Sequence[str] = (), source: str = "the checkpoint's config"):
    """An ``mmcv.Config`` from the text of a dumped config (a checkpoint's ``meta['config']``), with
    ``cfg_options`` merged as :func:`load_config` does."""
    import tempfile

    from mmcv import Config

    try:  # through a file of our own (mmcv's fromstring leaves a warning about its temporary file at exit)
        with tempfile.TemporaryDirectory(prefix="loce_cfg_") as folder:
            path = Path(folder) / "saved_config.py"
            path.write_text(text, encoding="utf-8")
            cfg = Config.fromfile(str(path))
    except Exception as e:
        raise DataError(f"{source} cannot be loaded: {type(e).__name__}: {str(e)[:200]}",
                        "resume with the config file instead (--resume-from an older checkpoint)") from None
    options = parse_cfg_options(cfg_options)
    for key in options:
        _check_key(cfg, key)
    if options:
        cfg.merge_from_dict(options)
    return cfg

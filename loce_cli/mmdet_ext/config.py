"""mmcv config loading with one-line errors, and ``--cfg-options KEY=VALUE``: parsed as mmdet parses them,
naming existing keys, each value of the type the key already has."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from mmcv import Config, DictAction

from loce_cli.errors import DataError, LoceUsageError
from loce_cli.mmdet_ext.authors_config import AUTHORS_KEY, AuthorsConfigError, is_authors_config, translate


_EXAMPLE = "e.g. --cfg-options runner.max_epochs=2 optimizer.lr=0.01"


def parse_value(text: str) -> Any:
    """``KEY=VALUE`` value as mmdet's tools parse it (mmcv's ``DictAction``): int, float, true/false (any case),
    None, ``a,b,c`` or ``[a,b]`` a list, ``(a,b)`` a tuple (nested brackets too), otherwise the string."""
    try:
        return DictAction._parse_iterable(text)
    except AssertionError:  # mmcv asserts on unbalanced brackets
        raise LoceUsageError(f"--cfg-options value {text!r} has unbalanced brackets", _EXAMPLE) from None


def parse_cfg_options(options: Sequence[str]) -> Dict[str, Tuple[str, Any]]:
    """``{key: (the value's text, the parsed value)}``; later options win, as in mmdet."""
    parsed: Dict[str, Tuple[str, Any]] = {}
    for item in options or []:
        if "=" not in item:
            raise LoceUsageError(f"--cfg-options {item!r} is not KEY=VALUE", _EXAMPLE)
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise LoceUsageError(f"--cfg-options {item!r} has an empty key", _EXAMPLE)
        parsed[key] = (value.strip(), parse_value(value.strip()))
    return parsed


def _existing(cfg, key: str) -> Any:
    """The current value at ``key``; a one-line usage error when the key does not exist."""
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
    return node


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "a bool (true or false)"
    if isinstance(value, int):
        return "an int"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__}"
    if hasattr(value, "keys"):
        return "a dict"
    return "a string"


def typed_value(key: str, text: str, value: Any, current: Any) -> Any:
    """``value`` checked against the type of the key's ``current`` value (None accepts anything): an int key
    takes an int, a number key an int or float, a bool key true/false, a list or tuple key a list or tuple
    (given back as the key's own type; a number alone makes a list of one), a string key the text as given; None unsets a dict, list or string key;
    a dict is otherwise set key by key."""
    def refuse(example: str) -> LoceUsageError:
        return LoceUsageError(f"--cfg-options {key}={text}: {key} is {_kind(current)} in the config "
                              f"(now {current!r}), not {_kind(value)}", f"e.g. --cfg-options {key}={example}")

    if current is None:
        return value
    if value is None and not isinstance(current, (bool, int, float)):  # e.g. optimizer_config.grad_clip=None
        return None
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise refuse("true")
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise refuse(str(current))
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise refuse(repr(current))
    if isinstance(current, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return type(current)(value)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and (isinstance(current, list) or len(current) == 1):  # lr_config.step=3 -> [3]
            return type(current)([value])
        raise refuse(",".join(str(v) for v in current) if current else "[a,b]")
    if isinstance(current, str):
        return text.strip("'\"")
    if hasattr(current, "keys"):
        raise LoceUsageError(f"--cfg-options {key}={text}: {key} is a dict in the config",
                             f"set its keys one by one, e.g. --cfg-options {key}.{next(iter(current), 'KEY')}=VALUE")
    return value


def load_config(path: Path, cfg_options: Sequence[str] = ()):
    """An ``mmcv.Config`` from ``path`` with ``cfg_options`` merged; every option must name an existing key."""
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
    return apply_cfg_options(from_authors_layout(cfg, f"config {path}"), cfg_options)


def from_authors_layout(cfg, source: str):
    """``cfg`` itself, translated in place when it is in the LOCE authors' layout
    (:mod:`loce_cli.mmdet_ext.authors_config`); the translations are recorded under ``AUTHORS_KEY``."""
    if not is_authors_config(cfg):
        return cfg
    try:
        done = translate(cfg)
    except AuthorsConfigError as e:
        raise DataError(f"{source} (the LOCE authors' layout): {e}",
                        "remove or change that key, or start from a shipped config (`loce configs`)") from None
    cfg[AUTHORS_KEY] = dict(source=source, translated=done)
    return cfg


def apply_cfg_options(cfg, cfg_options: Sequence[str]):
    """``cfg`` with ``--cfg-options`` merged: each key must exist and each value have the type of the value
    there (:func:`typed_value`); one usage error otherwise."""
    options = {key: typed_value(key, text, value, _existing(cfg, key))
               for key, (text, value) in parse_cfg_options(cfg_options).items()}
    if options:
        cfg.merge_from_dict(options)
        mask_head = ((cfg.get("model") or {}).get("roi_head") or {}).get("mask_head")
        if "model.roi_head.mask_head.type" in options and mask_head is not None \
                and mask_head.get("type") == "FCNMaskHead" and "scale" in mask_head:
            mask_head.pop("scale")  # the normed head's cosine scale: mmdet's standard head has none
    return cfg


def load_config_text(text: str, cfg_options: Sequence[str] = (), source: str = "the checkpoint's config",
                     filename: Optional[str] = None):
    """An ``mmcv.Config`` from the text of a dumped config (a checkpoint's ``meta['config']``), with
    ``cfg_options`` merged as :func:`load_config` does; ``filename``: the name it reports (its ``.filename``,
    which messages and logs show), instead of the temporary file it was parsed from."""
    try:  # through a file of our own (mmcv's fromstring leaves a warning about its temporary file at exit)
        with tempfile.TemporaryDirectory(prefix="loce_cfg_") as folder:
            path = Path(folder) / "saved_config.py"
            path.write_text(text, encoding="utf-8")
            cfg = Config.fromfile(str(path))
            if filename:
                super(Config, cfg).__setattr__("_filename", str(filename))  # mmcv keeps it in _filename
    except Exception as e:
        raise DataError(f"{source} cannot be loaded: {type(e).__name__}: {str(e)[:200]}",
                        "resume with the config file instead (--resume-from an older checkpoint)") from None
    return apply_cfg_options(from_authors_layout(cfg, source), cfg_options)

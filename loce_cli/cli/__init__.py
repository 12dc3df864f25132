"""Typer command-line interface. Thin: parse, call ``loce_cli.engine`` (imported lazily), render.

Importing this package must not import torch, mmcv or mmdet: ``loce --help`` and TAB completion stay fast.
"""

from loce_cli.cli.app import app, main

__all__ = ["app", "main"]

"""Reading a top-level variable of an mmcv config's text (a checkpoint's ``meta['config']``) without running it: the
text is parsed, never executed, and only literals and ``dict(...)`` calls are read (anything else reads as None)."""

from __future__ import annotations

import ast
from typing import Any, Optional

_NOTHING = object()


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(n) for n in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {kw.arg: _value(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    return None


def config_variable(text: str, name: str) -> Optional[Any]:
    """The value of the top-level assignment ``name = ...`` in config ``text`` (the last one), or None when the text
    does not parse or has none."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    found = _NOTHING
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            found = _value(stmt.value)
    return None if found is _NOTHING else found

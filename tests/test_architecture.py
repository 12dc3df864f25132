"""The package's structure as DESIGN.md states it, checked on the code as it is: the import contracts in
.importlinter (layers, engine sub-packages, where mmdet may be imported), no import cycles, no private names
taken from another module, imports at the top of modules outside cli/, and functions and files of one job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "loce_cli"
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400
# Imports inside functions outside cli/, each with its reason (None: every import of the file). doctor's job is to
# try importing each dependency; compat imports lvis where it can take off the root-logger handler lvis installs.
LAZY_ALLOWED = {"loce_cli/engine/doctor.py": None, "loce_cli/compat.py": {"lvis"}}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "configs" in path.relative_to(PACKAGE).parts:
            continue
        yield path, ast.parse(path.read_text(), str(path))


def test_import_contracts_hold():
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True, no_logo=True) == 0, \
        "an import contract is broken: run `.venv/bin/lint-imports` for the chain"


def _import_graph():
    import grimp

    return grimp.build_graph("loce_cli", cache_dir=None)


def _cycles(graph) -> list:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(m for m in graph.modules if m.startswith("loce_cli"))
    edges = {m: sorted(x for x in graph.find_modules_directly_imported_by(m) if x.startswith("loce_cli"))
             for m in modules}
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(edges.get(child, ()))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        modules = {"loce_cli.a", "loce_cli.b", "loce_cli.c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"loce_cli.a": {"loce_cli.b"}, "loce_cli.b": {"loce_cli.a"}, "loce_cli.c": {"loce_cli.a"}}[m]

    assert _cycles(Graph()) == [["loce_cli.a", "loce_cli.b"]]


def test_no_private_names_imported_from_another_module():
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loce_cli"):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_imports_sit_at_the_top_outside_cli():
    found = []
    for path, tree in _modules():
        rel = path.relative_to(ROOT).as_posix()
        allowed = LAZY_ALLOWED.get(rel, set())
        if rel.startswith("loce_cli/cli/") or allowed is None:
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(fn):
                    if isinstance(n, ast.Import):
                        found += [f"{rel}:{n.lineno} {a.name}" for a in n.names if a.name not in allowed]
                    elif isinstance(n, ast.ImportFrom) and n.module not in allowed:
                        found.append(f"{rel}:{n.lineno} {n.module}")
    assert found == []


@pytest.mark.parametrize("limit_kind", ["function", "file"])
def test_functions_and_files_of_one_job(limit_kind):
    found = []
    for path, tree in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if limit_kind == "file":
            lines = path.read_text().count("\n")
            if lines > MAX_FILE_LINES:
                found.append(f"{rel}: {lines} lines")
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = fn.end_lineno - fn.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{fn.lineno} {fn.name}: {length} lines")
    assert found == []

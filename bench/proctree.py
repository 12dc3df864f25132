"""The process tree of a benchmarked command and its memory, from Linux /proc (shared by the benches that sample
memory while a child runs)."""

from __future__ import annotations

import os


def parents() -> dict:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return parent


def descendants(root_pid: int, parent: dict) -> set:
    children = {}
    for c, p in parent.items():
        children.setdefault(p, []).append(c)
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        for c in children.get(frontier.pop(), ()):
            if c not in tree:
                tree.add(c)
                frontier.append(c)
    return tree


def memory_kb(pid: int) -> tuple:
    """(Rss, Pss, VmHWM) of ``pid`` in kB; None where the process is gone."""
    rss = pss = hwm = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                    break
    except (OSError, ValueError):
        return None
    return rss, pss, hwm


def tree_pss_kb(root_pid: int) -> int:
    """Sum of the proportional set size (shared pages counted once) of ``root_pid`` and its descendants."""
    total = 0
    for pid in descendants(root_pid, parents()):
        mem = memory_kb(pid)
        if mem is not None and mem[1] is not None:
            total += mem[1]
    return total

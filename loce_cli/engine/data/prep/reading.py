"""Reading an annotation file: parsed with ``msgspec`` while a second thread hashes its bytes; the standard
library only for NaN/Infinity literals (reported)."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import msgspec

from loce_cli.engine.data.prep.problems import Problems
from loce_cli.errors import DataError


def _sha256_thread(data: bytes) -> Tuple[threading.Thread, Dict[str, str]]:
    box: Dict[str, str] = {}

    def run() -> None:  # hashlib releases the GIL: this runs beside the parser on a second core
        box["sha256"] = hashlib.sha256(data).hexdigest()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def read_json_file(path: Path, problems: Problems) -> Tuple[Any, int, Optional[str]]:
    """Parse ``path`` (msgspec; the standard library only for NaN/Infinity literals); also its size and sha256.

    Returns ``(data, size, sha256)``; ``data`` is None after a ``not-json`` problem.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}", "check the file's permissions") from None
    size = len(raw)
    thread, box = _sha256_thread(raw)
    try:
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            data = _fallback_parse(raw, e, path, problems)
    finally:
        thread.join()
    return data, size, box.get("sha256")


def _fallback_parse(raw: bytes, first: Exception, path: Path, problems: Problems) -> Any:
    """msgspec rejects NaN/Infinity (which Python's json writes); read those with json and say so."""
    if size_is_empty(raw):
        problems.add("not-json", f"{Path(path).name} is empty")
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        where = (f"line {e.lineno}, column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e))
        # the parser stopped at the end, or inside a string that runs to the end of the file
        truncated = isinstance(e, json.JSONDecodeError) and (e.pos >= len(raw.rstrip()) - 1
                                                             or e.msg.startswith("Unterminated string"))
        problems.add("not-json", f"{Path(path).name}: {where}" + (" (the file ends early: truncated?)"
                                                                   if truncated else ""))
        return None
    problems.add("non-standard-json", f"{Path(path).name}: {str(first).splitlines()[0][:100]}")
    return data


def size_is_empty(raw: bytes) -> bool:
    return not raw.strip()

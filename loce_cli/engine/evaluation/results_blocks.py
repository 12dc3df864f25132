"""An LVIS results JSON's top-level array cut into blocks of whole detections and decoded by msgspec into typed
records, so a file of any size is read in bounded memory; and the count of its NaN / Infinity literals.

A block ends at a cut: after a ``}`` that is followed by ``,`` and ``{``. A cut that is not between two top-level
objects cannot decode, so the block is cut earlier or read further. The file's own errors (not an array,
truncated, not JSON, records that do not validate, non-finite numbers) are refused here in one line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import msgspec

from loce_cli.errors import DataError

BLOCK_BYTES = 32 << 20
CUT = re.compile(rb"\}\s*,\s*\{")  # between two detections (mask counts and polygons hold no braces)
NON_FINITE = re.compile(rb"[:,\[]\s*(NaN|-?Infinity)\b")
_WS = b" \t\r\n"
HINT = "expected a JSON array [{image_id, category_id, bbox, score[, segmentation]}, ...]"


class Rle(msgspec.Struct):
    size: List[int]
    counts: Union[str, List[int]]


class Det(msgspec.Struct):
    """The record msgspec decodes each detection into (other keys are skipped): a typed RLE makes the usual
    case fast; polygons and uncompressed RLEs still decode (a list, or ``Rle.counts`` as a list)."""

    image_id: int
    category_id: int
    score: float
    bbox: Optional[List[float]] = None
    segmentation: Union[Rle, List[Any], None] = None


class Scored(msgspec.Struct):
    """Only what choosing detections needs (image, category, score)."""

    image_id: int
    category_id: int
    score: float


def _error_position(msg: str, first: int) -> str:
    """msgspec's ``$[i]`` paths made absolute (the detection's index in the file)."""
    return re.sub(r"\$\[(\d+)\]", lambda m: f"detection {first + int(m.group(1))}", msg)


def iter_blocks(path: Path, block_bytes: Optional[int] = None, record: type = None) -> Iterator[Tuple[int, list]]:
    """``(index of the first detection, decoded detections)`` for consecutive blocks of the top-level array
    (each detection decoded into ``record``, by default ``Det``; blocks of about ``block_bytes``, by default
    ``BLOCK_BYTES``).

    The buffer is one ``bytearray``: a block is decoded in place by turning the comma after its last detection
    into ``]`` (and then into ``[``, the opening of the next block), so no block is copied."""
    block_bytes = block_bytes or BLOCK_BYTES
    decoder = msgspec.json.Decoder(List[record or Det])
    with open(path, "rb") as f:
        buf = bytearray(f.read(block_bytes))
        start = len(buf) - len(buf.lstrip(_WS))
        if start == len(buf):
            raise DataError(f"{path} is empty", HINT)
        if buf[start] != ord("["):
            raise DataError(f"{path} is not an LVIS results list (it does not start with '[')", HINT)
        first, consumed, eof = 0, 0, False
        while True:
            if start:
                consumed += start
                del buf[:start]
                start = 0
            while not eof and len(buf) < block_bytes:
                more = f.read(block_bytes)
                eof = not more
                buf += more
            items, cut = (None, -1) if eof else _decode_before_last_cut(decoder, buf, first, path, consumed)
            if items is None and not eof:
                more = f.read(block_bytes)  # no usable cut yet (one huge detection?): read further
                eof = not more
                buf += more
                continue
            if items is None:  # the rest of the file: detections and the closing bracket
                items = _decode_last(decoder, buf, first, path, consumed)
                if items:
                    yield first, items
                return
            yield first, items
            first += len(items)
            buf[cut] = ord("[")
            start = cut


def _decode_last(decoder, buf: bytearray, first: int, path: Path, consumed: int) -> list:
    """The detections of the file's last block, which must end with the closing bracket."""
    end = len(buf.rstrip(_WS))
    if not end or buf[end - 1] != ord("]"):
        raise DataError(f"{path} is not valid JSON: it stops after {consumed + len(buf):,} bytes without "
                        "the closing ']'", "the file is truncated; write it again")
    with memoryview(buf) as view:
        return _decode(decoder, view[:end], first, path, consumed)


def _decode_before_last_cut(decoder, buf: bytearray, first: int, path: Path, consumed: int, tries: int = 3):
    """Decode the detections before the last cut point of ``buf`` that gives valid JSON: ``(items, position of
    the comma after them)``, or ``(None, -1)`` when none of the last ``tries`` cut points does. A record that
    does not validate, or a NaN, is an error at once (reading further could not fix it)."""
    base = max(0, len(buf) - (1 << 20))
    cuts = [m.start() for m in CUT.finditer(buf, base)][-tries:]
    for cut in reversed(cuts):
        comma = buf.index(b",", cut)
        buf[comma] = ord("]")
        try:
            with memoryview(buf) as view:
                items = decoder.decode(view[:comma + 1])
            return items, comma
        except msgspec.ValidationError:
            with memoryview(buf) as view:
                _decode(decoder, view[:comma + 1], first, path, consumed)  # raises the message
        except msgspec.DecodeError:
            _refuse_non_finite(buf[:comma + 1], path)
        finally:
            buf[comma] = ord(",")
    return None, -1


def _refuse_non_finite(raw: bytes, path: Path) -> None:
    if NON_FINITE.search(raw):
        first, count = scan_non_finite(path)
        raise DataError(f"{path}: {count:,} non-finite number{'s' if count > 1 else ''} (NaN or Infinity) (the "
                        f"first: detection {first})", "scores and boxes must be finite numbers; fix the model output")


def _decode(decoder, raw, first: int, path: Path, consumed: int) -> list:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise DataError(f"{path}: {_error_position(str(e), first)}", HINT) from None
    except msgspec.DecodeError as e:
        _refuse_non_finite(raw, path)
        raise DataError(f"{path} is not valid JSON after byte {consumed:,} ({e})",
                        "the file may be truncated or corrupted; write it again") from None


def scan_non_finite(path: Path, chunk: int = 32 << 20) -> Tuple[int, int]:
    """``(index of the first detection holding a NaN / Infinity literal, how many such literals the file
    holds)`` in one streaming pass; a detection's index is the number of ``}, {`` boundaries before it (the
    cut points: mask counts and polygons hold no braces)."""
    first, count, cuts, carry = -1, 0, 0, b""
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            buf = carry + data
            limit = len(buf) if not data else max(0, len(buf) - 64)  # matches starting later: next round
            events = sorted([(m.start(), 0) for m in CUT.finditer(buf) if m.start() < limit]
                            + [(m.start(), 1) for m in NON_FINITE.finditer(buf) if m.start() < limit])
            for _pos, kind in events:
                if kind == 0:
                    cuts += 1
                else:
                    count += 1
                    first = cuts if first < 0 else first
            carry = buf[limit:]
            if not data:
                break
    return max(first, 0), count

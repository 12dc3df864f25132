"""What the LVIS releases and loce's dataset meta look like: versions, official class counts, file names."""

from __future__ import annotations

META_NAME = "loce_meta.json"
META_FORMAT = "loce-meta/1"
VERSIONS = ("v1", "v0.5")
OFFICIAL = {  # classes and classes per frequency group (r, c, f) of the official releases
    "v1": (1203, {"r": 337, "c": 461, "f": 405}),
    "v0.5": (1230, {"r": 454, "c": 461, "f": 315}),
}
FILE_NAMES = {v: {"train": f"lvis_{v}_train.json", "val": f"lvis_{v}_val.json"} for v in VERSIONS}

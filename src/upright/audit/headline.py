"""A finding in one line that names the class and the value, for places too small for its
message: "'diet': 100% stored sideways (tag 6), by 3 camera models; 'zero': 0%". The studio's
live audit shows it, and a model card (model.json "training"."audit_warnings"); the full
message stays in the reports.
"""

from __future__ import annotations

from typing import Iterable

from ..words import count
from .leakage import describe_value, others, pct

MAX_CHARS = 200


def headline(finding: dict, cameras: Iterable[str | None] = ()) -> str:
    """`finding`: an audit finding's JSON. `cameras`: the camera (EXIF Make and Model, None when
    absent) of the photos of the cell a per-class finding names (its "cells"[0]: the first
    "count" of its "paths"), when the caller knows them."""
    if finding.get("kind") == "label_leak" and finding.get("test") == "per_class":
        label, attribute = finding["class"], finding["attribute"]
        words = describe_value(attribute, finding["value"])
        cams = _cameras(cameras) if attribute != "camera" else ""
        labels = (finding.get("table") or {}).get("labels", [])
        return (f"'{label}': {pct(finding['share_in_class'])} {words}{cams}; "
                f"{others(labels, label)}: {pct(finding['share_elsewhere'])}")
    first = str(finding.get("message", "")).split(". ", 1)[0].rstrip(".")
    return first if len(first) <= MAX_CHARS else first[:MAX_CHARS - 3] + "..."


def named_cell(finding: dict) -> int:
    """How many of a finding's "paths" (first) are the photos of the cell it names."""
    cells = finding.get("cells") or []
    return int(cells[0].get("count") or 0) if cells else len(finding.get("paths") or [])


def _cameras(cameras: Iterable[str | None]) -> str:
    """', by 3 camera models' ('' when no photo names its camera)."""
    known = sorted({c for c in cameras if c})
    if not known:
        return ""
    return f", by {count(len(known), 'camera model')}" + (f" ({known[0]})" if len(known) == 1 else "")

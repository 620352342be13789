"""`upright predict MODEL IMAGE...`: files or folders -> top-k labels (table or JSON Lines)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UprightError
from .files import image_files
from .model import DEFAULT_TOP_K


def expand(images) -> list[str]:
    """Files as given, folders searched recursively for image files (sorted, hidden skipped)."""
    out: list[str] = []
    for item in images:
        p = Path(item)
        if p.is_dir():
            out.extend(str(f) for f in image_files(p))
        else:
            out.append(str(p))
    return out


def run_predict(model_dir, images, *, top_k: int = DEFAULT_TOP_K, json_out: bool = False, cache_dir=None) -> int:
    """Print predictions; returns the exit code (0 when at least one image was read)."""
    from .model import load_model

    if top_k < 1:
        raise UprightError(f"--top-k must be at least 1, got {top_k}")
    model = load_model(model_dir, cache_dir=cache_dir)
    paths = expand(images)
    if not paths:
        raise UprightError("no image files found in " + ", ".join(str(i) for i in images))
    preds = model.predict(paths, top_k=top_k, errors="keep", progress=not json_out and len(paths) > 16)
    if all(p.error for p in preds):
        more = f" (and {len(preds) - 1} more unreadable)" if len(preds) > 1 else ""
        raise UprightError(f"{preds[0].path}: {preds[0].error}{more}")
    if json_out:
        for p in preds:
            print(json.dumps(p.to_dict()), flush=False)
    else:
        from rich.table import Table

        from .console import err, out

        t = Table(title=f"upright predict ({model.backbone}, {len(model.labels)} labels)")
        t.add_column("image", overflow="fold")
        t.add_column("orientation", justify="right")
        t.add_column("prediction")
        for p in preds:
            if p.error:
                err.print(f"[yellow]unreadable[/] {p.path}: {p.error}")
                continue
            t.add_row(p.path, str(p.orientation or "-"),
                      ", ".join(f"{lab} {s:.3f}" for lab, s in p.predictions))
        if t.row_count:
            out.print(t)
    return 0

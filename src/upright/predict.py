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


def run_predict(model_dir, images, *, top_k: int = DEFAULT_TOP_K, cache_dir=None, progress: bool = True) -> list:
    """Predict files and folders -> one Prediction per image (`error` set for unreadable ones).

    Raises UprightError for usage errors only (no model, --top-k < 1, no image files found).
    """
    from .model import load_model

    if top_k < 1:
        raise UprightError(f"--top-k must be at least 1, got {top_k}")
    model = load_model(model_dir, cache_dir=cache_dir)
    paths = expand(images)
    if not paths:
        raise UprightError("no image files found in " + ", ".join(str(i) for i in images))
    return model.predict(paths, top_k=top_k, errors="keep", progress=progress and len(paths) > 16)


def _top(p) -> str:
    return "; ".join(f"{lab} {s:.4f}" for lab, s in p.predictions)


def write_csv(preds, path) -> None:
    """One row per image: path, orientation, label, score, top (label score; ...), error."""
    import csv
    import io

    from .atomic import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "orientation", "label", "score", "top", "error"])
    for p in preds:
        best = p.predictions[0] if p.predictions else ("", None)
        w.writerow([p.path or "", "" if p.orientation is None else p.orientation, best[0],
                    "" if best[1] is None else f"{best[1]:.4f}", _top(p), p.error or ""])
    _write(atomic_write_text, path, buf.getvalue())


def write_jsonl(preds, path) -> None:
    """The JSON Lines `--json` prints, to a file (written atomically)."""
    from .atomic import atomic_write_text

    _write(atomic_write_text, path, "".join(json.dumps(p.to_dict()) + "\n" for p in preds))


def _write(write, path, text: str) -> None:
    try:
        write(path, text)
    except OSError as exc:
        raise UprightError(f"cannot write {path}: {exc.strerror or exc}") from exc


def print_table(preds) -> None:
    """Human output: a table of predictions; unreadable inputs on stderr, one line each."""
    from rich.markup import escape
    from rich.table import Table

    from .console import err, out

    t = Table(title=f"upright predict ({len(preds)} image{'s' if len(preds) != 1 else ''})")
    t.add_column("image", overflow="fold")
    t.add_column("orientation", justify="right")
    t.add_column("prediction")
    for p in preds:
        if p.error:
            err.print(f"[yellow]unreadable[/] {escape(str(p.path))}: {escape(p.error)}")
            continue
        t.add_row(escape(str(p.path)), str(p.orientation or "-"),
                  escape(", ".join(f"{lab} {s:.3f}" for lab, s in p.predictions)))
    if t.row_count:
        out.print(t)

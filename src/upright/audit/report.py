"""The audit as one self-contained HTML page: findings, plots, thumbnails (stored vs upright).

Plots (matplotlib, inlined as PNG data URLs): orientation by class (stacked bars), an
attribute-by-label heat map (share of each class with each attribute value), class counts.
Flagged files are shown twice: the pixels as stored (what EXIF-ignoring tools see) and the
upright picture (what upright sees). Pixels are read through imaging.py only.
The page is the template report/templates/audit.html; this module prepares its data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UnreadableImage
from ..report.html import figure_data_url, image_data_url
from ..report.templating import render as render_template
from ..imaging import open_image
from .leakage import ATTRIBUTE_WORDS

MAX_THUMBS = 8
ORIENTATION_NAMES = {
    "1": "1 upright", "2": "2 mirrored", "3": "3 upside down", "4": "4 mirrored upside down",
    "5": "5 sideways mirrored", "6": "6 sideways (turn 90° cw)", "7": "7 sideways mirrored",
    "8": "8 sideways (turn 90° ccw)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def orientation_plot(table: dict) -> str | None:
    """Stacked horizontal bars: for each class, the share of files per orientation."""
    if not table or not table["labels"]:
        return None
    plt = _plt()
    values, labels = table["values"], table["labels"]
    counts = np.array(table["counts"], dtype=float).reshape(len(values), len(labels))
    shares = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    order = sorted(range(len(values)), key=lambda i: int(values[i]) if values[i].isdigit() else 99)
    colours = {"1": "#9aa5b1", "2": "#8e6c8a", "3": "#c62828", "4": "#6d4c41", "5": "#00897b",
               "6": "#ef8f00", "7": "#5e35b1", "8": "#1e88e5"}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.4))
    left = np.zeros(len(labels))
    for i in order:
        v = values[i]
        ax.barh(labels, shares[i], left=left, color=colours.get(v, "#444"), label=ORIENTATION_NAMES.get(v, v))
        for j, s in enumerate(shares[i]):
            if s >= 0.08:
                ax.text(left[j] + s / 2, j, f"{s:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += shares[i]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of the class's files")
    ax.set_title("Orientation by class (the transform a viewer applies)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(labels) < 4 else -0.12), ncol=4,
              fontsize=8, frameon=False)
    return figure_data_url(fig)


def heatmap_plot(attributes: dict, flagged: set[str], max_values: int = 6) -> str | None:
    """Rows: attribute = value; columns: labels; colour: share of the class with that value."""
    rows, names = [], []
    labels = None
    for attr in ATTRIBUTE_WORDS:
        t = attributes.get(attr)
        if not t or len(t["values"]) < 2:
            continue
        labels = t["labels"]
        counts = np.array(t["counts"], dtype=float).reshape(len(t["values"]), len(labels))
        shares = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
        order = np.argsort(-counts.sum(axis=1))[:max_values]
        for i in order:
            rows.append(shares[i])
            mark = " ◀" if attr in flagged else ""
            names.append(f"{attr} = {t['values'][i]}{mark}")
    if not rows or labels is None:
        return None
    plt = _plt()
    data = np.array(rows)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels) + 3.5), 0.32 * len(rows) + 1.6))
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if len(labels) * len(names) <= 400:
        for r in range(data.shape[0]):
            for c in range(data.shape[1]):
                ax.text(c, r, f"{data[r, c]:.0%}", ha="center", va="center", fontsize=7,
                        color="black" if data[r, c] > 0.6 else "white")
    ax.set_title("Attribute values by class (share of each class; ◀ = predicts the label)")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return figure_data_url(fig)


def counts_plot(classes: dict) -> str | None:
    if not classes:
        return None
    plt = _plt()
    labels = list(classes)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(labels) + 2), 2.8))
    bars = ax.bar(labels, [classes[k] for k in labels], color="#1e88e5")
    ax.bar_label(bars, fontsize=8)
    ax.set_ylabel("readable images")
    ax.set_title("Images per class")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return figure_data_url(fig)


def _thumb(path: str, caption: str, turned: int = 0) -> dict:
    """As stored | upright (| turned back, for sideways pictures), for macros.thumb_pair."""
    from PIL import Image

    view = {"name": os.path.basename(path), "path": path, "caption": caption, "error": None,
            "stored": None, "seen": None, "turned": None}
    try:
        stored = open_image(path, size=160, orient=False).image
        upright = open_image(path, size=160).image
    except UnreadableImage as exc:
        view["error"] = exc.reason
        return view
    view["stored"], view["seen"] = image_data_url(stored, 120), image_data_url(upright, 120)
    if turned:
        back = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
        view["turned"] = image_data_url(upright.transpose(back[turned]), 120)
    return view


def _finding(f: dict, root: str | None) -> dict:
    """One finding as plain data for its card: text, unreadable rows, leak table, thumbnails."""
    kind = f["kind"]
    view = {"severity": f["severity"], "title": kind + (f" · {f['attribute']}" if f.get("attribute") else ""),
            "message": f["message"], "score": f.get("score", 0), "n_files": len(f["paths"]),
            "attribute": f.get("attribute") or "", "unreadable": [], "table": None, "thumbs": [], "more": 0}
    if kind == "unreadable":
        view["unreadable"] = [{"file": _rel(it["path"], root), "reason": it["reason"]}
                              for it in f.get("items", [])[:50]]
    elif kind == "label_leak" and f.get("table"):
        view["table"] = f["table"]
    if f["paths"] and kind in ("label_leak", "sideways", "duplicate", "tiny"):
        items = f.get("items", []) if kind == "sideways" else []
        captions = {it["path"]: f"looks turned {it['rotation']}° cw · p={it['confidence']:.2f}" for it in items}
        turns = {it["path"]: it["rotation"] for it in items}
        paths = f["paths"]
        if kind == "duplicate" and f.get("groups"):
            paths = [p for g in f["groups"][:4] for p in g[:2]]
        view["thumbs"] = [_thumb(p, captions.get(p, _rel(os.path.dirname(p), root)), turns.get(p, 0))
                          for p in paths[:MAX_THUMBS]]
        view["more"] = max(len(f["paths"]) - len(view["thumbs"]), 0)
    return view


def _rel(path: str, root: str | None) -> str:
    if root:
        try:
            return os.path.relpath(path, root)
        except ValueError:
            pass
    return path


def render(result: dict, data=None) -> str:
    root = os.fspath(data) if data is not None else result.get("data")
    c = result.get("counts", {})
    attrs = result.get("attributes") or {}
    flagged = {f["attribute"] for f in result["findings"] if f["kind"] == "label_leak"}
    for f in result["findings"]:
        flagged.update(f.get("also") or [])
    scores = [{"name": ATTRIBUTE_WORDS.get(attr, attr), "accuracy": t["accuracy"], "baseline": t["baseline"],
               "score": t["score"], "p_value": t["p_value"]}
              for attr, t in attrs.items() if t.get("accuracy") is not None]
    checks = [{"name": k, "value": v if v is not None else "not run"} for k, v in (result.get("checks") or {}).items()]
    return render_template(
        "audit.html", title="upright audit", subtitle=f"{root}",
        n_images=result["n_images"], n_readable=result.get("n_readable", result["n_images"]),
        n_classes=len(result["classes"]),
        counts={sev: c.get(sev, 0) for sev in ("error", "warning", "info")},
        findings=[_finding(f, root) for f in result["findings"]],
        orientation_plot=orientation_plot(attrs.get("exif_orientation")),
        heatmap_plot=heatmap_plot(attrs, flagged),
        attribute_scores=scores,
        counts_plot=counts_plot(result["classes"]),
        checks=checks, seconds=result.get("seconds", 0), n_skipped=len(result.get("skipped") or []),
    )


def write_report(result: dict, path, data=None) -> Path:
    """Write the audit page (atomically) and return its path."""
    path = Path(path)
    atomic_write_text(path, render(result, data))
    return path

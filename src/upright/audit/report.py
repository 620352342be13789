"""The audit as one self-contained HTML page: findings, plots, thumbnails (stored vs upright).

Plots (matplotlib, inlined as PNG data URLs): orientation by class (stacked bars), an
attribute-by-label heat map (share of each class with each attribute value), class counts.
Flagged files are shown twice: the pixels as stored (what EXIF-ignoring tools see) and the
upright picture (what upright sees). Pixels are read through imaging.py only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UnreadableImage
from ..report.html import esc, figure_data_url, image_data_url, page
from ..imaging import open_image
from ..orientation import EXIF_UPRIGHT, STORED_WORDS, turn_back
from .leakage import ATTRIBUTE_WORDS

MAX_THUMBS = 8
_VIEWER_TURN = {"r90": " (turn 90° cw)", "r270": " (turn 90° ccw)"}
ORIENTATION_NAMES = {str(e): f"{e} {words}{_VIEWER_TURN.get(EXIF_UPRIGHT[e], '')}" for e, words in STORED_WORDS.items()}


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


def _figure(img, alt: str) -> str:
    return (f'<figure style="margin:0"><img src="{image_data_url(img, 120)}" alt="{esc(alt)}">'
            f"<figcaption>{esc(alt)}</figcaption></figure>")


def _thumb_pair(path: str, caption: str, turned: int = 0) -> str:
    """As stored | upright (| turned back, for sideways pictures)."""
    try:
        stored = open_image(path, size=160, orient=False).image
        upright = open_image(path, size=160).image
    except UnreadableImage as exc:
        return f'<div class="thumb"><b>{esc(os.path.basename(path))}</b><br>{esc(exc.reason)}</div>'
    figs = _figure(stored, "as stored") + _figure(upright, "upright")
    if turned:
        figs += _figure(turn_back(upright, turned), "turned back")
    width = ' style="max-width:390px"' if turned else ""
    return (
        f'<div class="thumb"{width}><div class="pair">{figs}</div>'
        f'<div title="{esc(path)}"><b>{esc(os.path.basename(path))}</b><br>{esc(caption)}</div></div>'
    )


def _finding_card(f: dict, root: str | None) -> str:
    sev = f["severity"]
    title = f["kind"] + (f" · {f['attribute']}" if f.get("attribute") else "")
    parts = [f'<div class="card {sev}"><span class="badge {sev}">{esc(sev)}</span><b>{esc(title)}</b>'
             f' <span class="sub">score {f.get("score", 0):.2f} · {len(f["paths"])} file(s)</span>'
             f'<p>{esc(f["message"])}</p>']
    if f["kind"] == "unreadable":
        parts.append("<table><tr><th>file</th><th>reason</th></tr>" + "".join(
            f"<tr><td>{esc(_rel(it['path'], root))}</td><td>{esc(it['reason'])}</td></tr>"
            for it in f.get("items", [])[:50]) + "</table>")
    elif f["kind"] == "label_leak" and f.get("table"):
        t = f["table"]
        head = "".join(f"<th>{esc(lab)}</th>" for lab in t["labels"])
        body = "".join(
            f"<tr><th>{esc(v)}</th>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
            for v, row in zip(t["values"], t["counts"]))
        parts.append(f"<table><tr><th>{esc(f['attribute'])} \\ class</th>{head}</tr>{body}</table>")
    if f["paths"] and f["kind"] in ("label_leak", "sideways", "duplicate", "tiny"):
        captions = {}
        if f["kind"] == "sideways":
            captions = {it["path"]: f"looks turned {it['rotation']}° cw · p={it['confidence']:.2f}"
                        for it in f.get("items", [])}
        paths = f["paths"]
        if f["kind"] == "duplicate" and f.get("groups"):
            paths = [p for g in f["groups"][:4] for p in g[:2]]
        turns = {it["path"]: it["rotation"] for it in f.get("items", [])} if f["kind"] == "sideways" else {}
        thumbs = [_thumb_pair(p, captions.get(p, _rel(os.path.dirname(p), root)), turns.get(p, 0))
                  for p in paths[:MAX_THUMBS]]
        more = f'<p class="sub">and {len(f["paths"]) - len(thumbs)} more</p>' if len(f["paths"]) > len(thumbs) else ""
        parts.append(f'<div class="grid">{"".join(thumbs)}</div>{more}')
    parts.append("</div>")
    return "".join(parts)


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
    body = [
        '<div class="card"><span class="big">{}</span> images · {} readable · {} classes · '
        '<b style="color:#c62828">{} error(s)</b> · <b style="color:#ef8f00">{} warning(s)</b> · {} info'
        '</div>'.format(result["n_images"], result.get("n_readable", result["n_images"]), len(result["classes"]),
                        c.get("error", 0), c.get("warning", 0), c.get("info", 0)),
        "<h2>Findings</h2>",
    ]
    if result["findings"]:
        body += [_finding_card(f, root) for f in result["findings"]]
    else:
        body.append('<div class="card">No findings: no file attribute predicts the label, no duplicates, '
                    'nothing unreadable.</div>')
    attrs = result.get("attributes") or {}
    flagged = {f["attribute"] for f in result["findings"] if f["kind"] == "label_leak"}
    for f in result["findings"]:
        flagged.update(f.get("also") or [])
    body.append("<h2>Orientation by class</h2>")
    op = orientation_plot(attrs.get("exif_orientation"))
    body.append(f'<img class="plot" src="{op}" alt="orientation by class">' if op else
                '<p class="sub">No readable images.</p>')
    body.append("<h2>File attributes by class</h2>")
    hp = heatmap_plot(attrs, flagged)
    body.append(f'<img class="plot" src="{hp}" alt="attribute by label heat map">' if hp else
                '<p class="sub">Every attribute has a single value across the dataset: nothing to predict from.</p>')
    rows = []
    for attr, t in attrs.items():
        if t.get("accuracy") is None:
            continue
        rows.append(f"<tr><td>{esc(ATTRIBUTE_WORDS.get(attr, attr))}</td><td>{t['accuracy']:.0%}</td>"
                    f"<td>{t['baseline']:.0%}</td><td>{t['score']:.2f}</td><td>{t['p_value']:.3g}</td></tr>")
    if rows:
        body.append('<p class="sub">How well each attribute alone guesses the class (leave-one-out), against '
                    "always guessing the biggest class; score 0 = no information, 1 = perfect; p from 1999 "
                    "label permutations.</p><table><tr><th>attribute</th><th>accuracy</th><th>baseline</th>"
                    "<th>score</th><th>p</th></tr>" + "".join(rows) + "</table>")
    body.append("<h2>Class counts</h2>")
    cp = counts_plot(result["classes"])
    if cp:
        body.append(f'<img class="plot" src="{cp}" alt="class counts">')
    checks = result.get("checks") or {}
    body.append("<h2>Checks run</h2><table>" + "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v if v is not None else 'not run')}</td></tr>" for k, v in checks.items())
        + f"<tr><th>time</th><td>{result.get('seconds', 0):.1f} s</td></tr></table>")
    if result.get("skipped"):
        body.append(f'<p class="sub">{len(result["skipped"])} path(s) skipped by the scan (hidden, not images, '
                    "outside class folders).</p>")
    return page("upright audit", body, subtitle=f"{root}")


def write_report(result: dict, path, data=None) -> Path:
    """Write the audit page (atomically) and return its path."""
    path = Path(path)
    atomic_write_text(path, render(result, data))
    return path

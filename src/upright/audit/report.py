"""The audit as one self-contained HTML page: findings, plots, thumbnails (stored vs upright).

Plots (matplotlib, inlined as PNG data URLs): orientation by class (stacked bars, the classes a
finding names marked), an attribute-by-class heat map in plain words (share of each class with
each value, the cells a finding stands on boxed in red), class counts; past a couple of dozen
classes the ones a finding names are shown and the rest summed. Every number in the page's
tables comes from the same cells the findings do. Flagged files are shown twice, the pixels
as stored (what EXIF-ignoring tools see) and the upright picture, or once when the two are
the same. Pixels are read through imaging.py only.
The page is the template report/templates/audit.html; this module prepares its data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import UnreadableImage
from ..report.html import figure_data_url, image_data_url
from ..report.paths import below, shown_root, unrooted
from ..report.templating import render as render_template
from ..imaging import open_image
from ..orientation import EXIF_UPRIGHT, STORED_WORDS, turn_back
from ..words import count
from .leakage import ATTRIBUTE_WORDS, describe_value, pct, short_words

MAX_THUMBS = 8
_VIEWER_TURN = {"r90": " (turn 90° cw)", "r270": " (turn 90° ccw)"}
ORIENTATION_NAMES = {str(e): f"{e} {words}{_VIEWER_TURN.get(EXIF_UPRIGHT[e], '')}" for e, words in STORED_WORDS.items()}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


HEAT_COLOURS = "viridis"  # the heat map's colour scale, plot and table alike
MAX_BARS, MAX_HEAT, MAX_TABLE = 24, 16, 8  # classes shown one by one; the rest are summed in one column


def _columns(labels: list[str], counts: np.ndarray, keep: set[str], limit: int = MAX_BARS
             ) -> tuple[list[str], np.ndarray]:
    """At most `limit` classes: the flagged ones first, then the rest in order, then one
    'other N classes' column summing what did not fit. counts: [values, classes]."""
    if len(labels) <= limit:
        return list(labels), counts
    shown = [lab for lab in labels if lab in keep][:limit - 1]
    shown += [lab for lab in labels if lab not in shown][:limit - 1 - len(shown)]
    idx = [labels.index(lab) for lab in shown]
    rest = [i for i in range(len(labels)) if i not in idx]
    out = np.concatenate([counts[:, idx], counts[:, rest].sum(axis=1, keepdims=True)], axis=1)
    return shown + [f"other {len(rest)} classes"], out


def orientation_plot(table: dict, flagged: set[str] | None = None) -> str | None:
    """Stacked horizontal bars: for each class, the share of files per orientation.
    Classes a finding names are marked with an arrow."""
    if not table or not table["labels"]:
        return None
    plt = _plt()
    flagged = flagged or set()
    values = table["values"]
    counts = np.array(table["counts"], dtype=float).reshape(len(values), len(table["labels"]))
    labels, counts = _columns(list(table["labels"]), counts, flagged)
    shares = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    names = [f"{lab} ◀" if lab in flagged else lab for lab in labels]
    order = sorted(range(len(values)), key=lambda i: int(values[i]) if values[i].isdigit() else 99)
    colours = {"1": "#9aa5b1", "2": "#8e6c8a", "3": "#c62828", "4": "#6d4c41", "5": "#00897b",
               "6": "#ef8f00", "7": "#5e35b1", "8": "#1e88e5"}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.4))
    left = np.zeros(len(labels))
    for i in order:
        v = values[i]
        ax.barh(names, shares[i], left=left, color=colours.get(v, "#444"), label=ORIENTATION_NAMES.get(v, v))
        for j, s in enumerate(shares[i]):
            if s >= 0.08:
                ax.text(left[j] + s / 2, j, f"{s:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += shares[i]
    for tick, lab in zip(ax.get_yticklabels(), labels):
        if lab in flagged:
            tick.set_fontweight("bold")
            tick.set_color("#c62828")
    ax.set_xlim(0, 1)
    ax.margins(y=0.01)
    ax.invert_yaxis()
    ax.set_xlabel("share of the class's files")
    ax.set_title("Orientation by class (the transform a viewer applies; ◀ = named by a finding)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(labels) < 4 else -0.12), ncol=4,
              fontsize=8, frameon=False)
    return figure_data_url(fig)


def _short_value(attribute: str, value: str) -> str:
    """A value in few words for a heat-map row (the attribute's own words come first there)."""
    if attribute == "jpeg_quality" and value.startswith("q"):
        text = value[1:].replace("<=", "at most ")
    elif attribute in ("color_profile", "software", "capture_date", "camera"):
        text = "none" if value == "none" else value
    else:
        text = describe_value(attribute, value)
    return text if len(text) <= 38 else text[:37] + "…"


def flagged_cells(result: dict) -> set[tuple[str, str, str]]:
    """(attribute, class, value) of every cell the findings stand on, folded attributes included."""
    attrs = result.get("attributes") or {}
    cells = set()
    for f in result["findings"]:
        if f["kind"] != "label_leak":
            continue
        for c in f.get("classes") or []:
            cells.add((f["attribute"], c["class"], c["value"]))
        for a in f.get("also") or []:
            for lab, value in (attrs.get(a) or {}).get("flagged") or []:
                cells.add((a, lab, value))
    return cells


def heatmap_rows(attributes: dict, flagged: set, max_values: int = 5) -> tuple[list[str], list[dict]]:
    """The heat map's content, drawn as a plot or as a table: the classes, and per row
    {"attribute", "value" in words (◀ after the value when a finding stands on it), "shares":
    share of each class with the value, "hot": column indices of the cells a finding stands on}.
    `flagged`: (attribute, class, value) cells, or attribute names (whole rows marked)."""
    cells = {c for c in flagged if isinstance(c, tuple)}
    whole = {a for a in flagged if isinstance(a, str)}
    keep = {lab for _, lab, _ in cells}
    rows: list[dict] = []
    labels: list[str] = []
    for attr in ATTRIBUTE_WORDS:
        t = attributes.get(attr)
        if not t or len(t["values"]) < 2:
            continue
        counts = np.array(t["counts"], dtype=float).reshape(len(t["values"]), len(t["labels"]))
        labels, counts = _columns(list(t["labels"]), counts, keep, MAX_HEAT)
        shares = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
        hot = [i for i, v in enumerate(t["values"]) if any((attr, lab, v) in cells for lab in t["labels"])]
        order = hot + [int(i) for i in np.argsort(-counts.sum(axis=1)) if int(i) not in hot]
        for i in order[:max(max_values, len(hot))]:
            value = t["values"][i]
            row_hot = [j for j, lab in enumerate(labels) if (attr, lab, value) in cells]
            mark = " ◀" if row_hot or attr in whole else ""
            rows.append({"attribute": short_words(attr), "value": f"{_short_value(attr, value)}{mark}",
                         "shares": shares[i], "hot": row_hot})
    return labels, rows


def heatmap_plot(labels: list[str], rows: list[dict]) -> str | None:
    """heatmap_rows drawn. Rows: attribute: value (plain words); columns: classes; colour: share of
    the class with that value. Cells a finding stands on are outlined in red, their rows marked ◀."""
    if not rows:
        return None
    plt = _plt()
    data = np.array([r["shares"] for r in rows])
    names = [f"{r['attribute']}: {r['value']}" for r in rows]
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 0.9 * len(labels) + 5.0)), 0.32 * len(rows) + 1.8))
    im = ax.imshow(data, cmap=HEAT_COLOURS, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for r, row in enumerate(rows):
        for c in row["hot"]:
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#ff1744", linewidth=2.2))
    if len(labels) * len(names) <= 600:
        for r in range(data.shape[0]):
            for c in range(data.shape[1]):
                ax.text(c, r, f"{data[r, c]:.0%}", ha="center", va="center", fontsize=7,
                        color="black" if data[r, c] > 0.6 else "white")
    ax.set_title("File attributes by class (share of each class with the value; red box = the shortcut a finding names)",
                 fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    return figure_data_url(fig)


def heatmap_table(labels: list[str], rows: list[dict]) -> dict | None:
    """heatmap_rows as a table for narrow screens (a phone shrinks the plot's words past
    reading): the same rows and colours grouped by attribute, each cell's share in words, the
    named cells marked."""
    if not rows:
        return None
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps[HEAT_COLOURS]
    groups: list[dict] = []
    for r in rows:
        if not groups or groups[-1]["attribute"] != r["attribute"]:
            groups.append({"attribute": r["attribute"], "rows": []})
        groups[-1]["rows"].append({"value": r["value"], "cells": [
            {"text": pct(float(x)), "bg": to_hex(cmap(float(x))), "fg": "#000" if x > 0.6 else "#fff",
             "hot": j in r["hot"]} for j, x in enumerate(r["shares"])]})
    return {"labels": labels, "groups": groups}


def counts_plot(classes: dict) -> str | None:
    if not classes:
        return None
    plt = _plt()
    labels = list(classes)
    fig, ax = plt.subplots(figsize=(min(24.0, max(4.0, 0.8 * len(labels) + 2)), 2.8))
    bars = ax.bar(labels, [classes[k] for k in labels], color="#1e88e5")
    if len(labels) <= 40:
        ax.bar_label(bars, fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(labels)} classes")
    ax.set_ylabel("readable images")
    ax.set_title("Images per class")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return figure_data_url(fig)


def _thumb(path: str, caption: str, turned: int = 0, root: str | None = None) -> dict:
    """As stored | upright (| turned back, for sideways pictures), for macros.thumb_pair.
    A file whose stored pixels are already upright is shown once (`single`). The file is named
    by its path below DATA (the same name is often in every class)."""
    view = {"name": below(path, root), "path": below(path, root), "caption": caption, "error": None,
            "stored": None, "seen": None, "turned": None, "single": None}
    try:
        seen = open_image(path, size=160)
        upright = seen.image
        o = seen.orientation
        as_stored = o.tag in (None, 1) or bool(o.problem)
        stored = None if as_stored else open_image(path, size=160, orient=False).image
    except UnreadableImage as exc:
        view["error"] = exc.reason
        return view
    if stored is None and not turned:
        view["single"] = image_data_url(upright, 120)
        return view
    view["stored"] = image_data_url(stored if stored is not None else upright, 120)
    view["seen"] = image_data_url(upright, 120) if stored is not None else None  # else: as stored = upright
    if turned:
        view["turned"] = image_data_url(turn_back(upright, turned), 120)
    return view


def _leak_table(f: dict) -> dict:
    """The finding's value x class table in words: counts with shares, the named cells marked."""
    t = f["table"]
    attr = f["attribute"]
    hot = {(c["class"], c["value"]) for c in f.get("classes") or []}
    counts = np.array(t["counts"], dtype=float).reshape(len(t["values"]), len(t["labels"]))
    labels, counts = _columns(list(t["labels"]), counts, {lab for lab, _ in hot}, MAX_TABLE)
    totals = counts.sum(axis=0)
    rows = []
    for i, value in enumerate(t["values"]):
        cells = [{"count": int(counts[i, j]), "share": counts[i, j] / totals[j] if totals[j] else 0.0,
                  "hot": (lab, value) in hot} for j, lab in enumerate(labels)]
        rows.append({"value": describe_value(attr, value), "cells": cells})
    return {"words": short_words(attr), "labels": labels, "rows": rows[:12], "more": max(0, len(rows) - 12)}


def _leak_note(f: dict) -> str:
    """The card's grey line for a label_leak finding: what its score means, in words."""
    n = count(len(f["paths"]), "file")
    if f.get("class") is None:
        return f"overall: alone it guesses {pct(f.get('accuracy') or 0)} right · {n}"
    label, q = f["class"], f.get("q_value")
    inside, elsewhere = f.get("share_in_class") or 0.0, f.get("share_elsewhere") or 0.0
    why = (f"{pct(inside)} of them have it and no other class does" if elsewhere <= 0 else
           f"{pct(inside)} of them have it, but so do {pct(elsewhere)} of the other photos")
    return (f"the value alone picks out {pct(max(f.get('score') or 0.0, 0.0))} of '{label}' photos: {why}"
            + (f" · q={q:.2g}" if q is not None else "") + f" · {n}")


def _cell_picks(f: dict, limit: int = MAX_THUMBS) -> list[tuple[str, str]]:
    """(path, caption) of example photos from the cells a label_leak finding names, a share of
    `limit` for each (in the finding's order), spread over each cell's files instead of its first."""
    cells = f.get("cells") or [{"class": f.get("class"), "value": f.get("value"), "count": len(f["paths"])}]
    cells = cells[:max(1, limit // 2)]
    picks, start = [], 0
    for k, cell in enumerate(cells):
        files = f["paths"][start:start + int(cell["count"])]
        start += int(cell["count"])
        share = (limit - len(picks)) // (len(cells) - k)
        idx = np.unique(np.linspace(0, len(files) - 1, num=min(share, len(files))).round().astype(int)) if files else []
        words = f"'{cell['class']}' · {describe_value(f['attribute'], cell['value'])}"
        picks += [(files[i], words) for i in idx]
    return picks


def _thumbs(f: dict, root: str | None) -> list[dict]:
    """The pictures under a finding: each leak cell's own photos, sideways pictures with how they
    look turned, duplicates two of each group, tiny ones as listed."""
    kind, paths = f["kind"], f["paths"]
    if kind == "label_leak":
        return [_thumb(p, caption, root=root) for p, caption in _cell_picks(f)]
    items = f.get("items", []) if kind == "sideways" else []
    captions = {it["path"]: f"looks turned {it['rotation']}° cw · p={it['confidence']:.2f}" for it in items}
    turns = {it["path"]: it["rotation"] for it in items}
    if kind == "duplicate" and f.get("groups"):
        paths = [p for g in f["groups"][:4] for p in g[:2]]
    return [_thumb(p, captions.get(p, ""), turns.get(p, 0), root) for p in paths[:MAX_THUMBS]]


def _finding(f: dict, root: str | None) -> dict:
    """One finding as plain data for its card: text, unreadable rows, leak table, thumbnails."""
    kind = f["kind"]
    view = {"severity": f["severity"], "title": kind.replace("_", " ") + (
                f" · {short_words(f['attribute'])}" if f.get("attribute") else ""),
            "message": unrooted(f["message"], root),
            "note": f"score {f.get('score', 0):.2f} · {count(len(f['paths']), 'file')}",
            "unreadable": [], "table": None, "thumbs": [], "more": 0}
    if kind == "label_leak":
        view["note"] = _leak_note(f)
    if kind == "unreadable":
        view["unreadable"] = [{"file": below(it["path"], root), "reason": it["reason"]}
                              for it in f.get("items", [])[:50]]
    elif kind == "label_leak" and f.get("table"):
        view["table"] = _leak_table(f)
    if f["paths"] and kind in ("label_leak", "sideways", "duplicate", "tiny"):
        view["thumbs"] = _thumbs(f, root)
        view["more"] = max(len(f["paths"]) - len(view["thumbs"]), 0)
    return view


def attribute_rows(result: dict) -> list[dict]:
    """The 'how each attribute splits the classes' table: one row per tested attribute, in words.

    It reads the same numbers the findings do (the most uneven class and value, the share of the
    class that value alone picks out: leakage's identifiable share, the adjusted p), so the table cannot contradict a finding."""
    attrs = result.get("attributes") or {}
    by_attr = {f["attribute"]: f for f in result["findings"] if f["kind"] == "label_leak"}
    rows = []
    for attr, t in attrs.items():
        if not t.get("tested"):
            continue
        b = t.get("best") or {}
        f = by_attr.get(attr)
        if f is not None:
            verdict = f["severity"]
        elif t.get("folded_into"):
            verdict = f"in the {short_words(t['folded_into'])} finding"
        else:
            verdict = "no finding"
        q = b.get("q_value")
        aq = t.get("attribute_q")
        rows.append({
            "name": short_words(attr), "attribute": attr,
            "contrast": (f"{pct(b['share_in_class'])} of '{b['class']}' {describe_value(attr, b['value'])} "
                         f"vs {pct(b['share_elsewhere'])} elsewhere") if b else "",
            "picked_out": pct(max(b.get("score") or 0.0, 0.0)) if b else "0%",
            "q": f"{q:.2g}" if q is not None else (f"n.s. ({aq:.2g})" if aq is not None else "–"),
            "verdict": verdict, "severity": f["severity"] if f is not None else "",
        })
    rank = {"error": 0, "warning": 1, "info": 2, "": 3}
    rows.sort(key=lambda r: (rank[r["severity"]], r["verdict"] == "no finding"))
    return rows


def render(result: dict, data=None) -> str:
    root = os.fspath(data) if data is not None else result.get("data")
    c = result.get("counts", {})
    attrs = result.get("attributes") or {}
    cells = flagged_cells(result)
    heat = heatmap_rows(attrs, cells)
    leak_classes = {lab for a, lab, _ in cells if a == "exif_orientation"}
    checks = [{"name": k, "value": v if v is not None else "not run: " + (result.get("checks_not_run") or {}).get(
        k, "not needed")} for k, v in (result.get("checks") or {}).items()]
    run = result.get("checks_run") or []
    return render_template(
        "audit.html", title="upright audit", subtitle=shown_root(root),
        n_images=result["n_images"], n_readable=result.get("n_readable", result["n_images"]),
        n_classes=len(result["classes"]),
        counts={sev: c.get(sev, 0) for sev in ("error", "warning", "info")},
        findings=[_finding(f, root) for f in result["findings"]],
        no_findings=f"No findings from the {count(len(run), 'check')} run ({', '.join(run)})." if run else "No checks run.",
        orientation_plot=orientation_plot(attrs.get("exif_orientation"), leak_classes),
        heatmap_plot=heatmap_plot(*heat), heatmap_table=heatmap_table(*heat),
        attribute_rows=attribute_rows(result),
        counts_plot=counts_plot(result["classes"]),
        checks=checks, seconds=result.get("seconds", 0), n_skipped=len(result.get("skipped") or []),
    )


def write_report(result: dict, path, data=None) -> Path:
    """Write the audit page (atomically) and return its path."""
    path = Path(path)
    atomic_write_text(path, render(result, data))
    return path

"""`upright audit DATA`: find the shortcuts and broken files before anyone trains on them.

Checks, cheapest first:

- metadata (headers only, `metadata.describe`; no pixel is decoded): label_leak for eight
  file attributes (see leakage.py), tiny pictures, class imbalance, exact duplicates (the
  scan's sha256);
- readability: every file must decode. With content checks on, the embedding pass decodes
  every file not already in the cache and reports the failures; files served from the cache
  decoded before, and their bytes (sha256) have not changed since. With content=False a cheap
  decode at 32 px (`open_image(path, size=32)`: JPEG decoded at 1/8 scale in the DCT domain)
  finds truncated and corrupt files that a header read cannot;
- content (embeddings, cached by content hash): sideways pictures (sideways.py) and near
  duplicates (duplicates.py).

`run_audit` returns the contracts' audit JSON (plus extra keys); `print_summary` writes the terminal
summary, most severe first.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

from . import duplicates, leakage, sideways
from .severity import SEVERITY_RANK
from .. import backbones
from ..console import progress as progress_bar
from ..dataset import DEFAULT_VAL_FRACTION, scan
from ..errors import UnreadableImage, one_line
from ..imaging import open_image
from ..metadata import describe

TINY_SHORT_SIDE = 96  # pixels: upscaled more than 2.3x to reach a 224 input


def _imbalance(classes: dict[str, int]) -> dict | None:
    counts = {k: v for k, v in classes.items()}
    if len(counts) < 2:
        return None
    big_label = max(counts, key=counts.get)
    small_label = min(counts, key=counts.get)
    big, small = counts[big_label], counts[small_label]
    if small == 0:
        return {"kind": "class_imbalance", "severity": "error", "attribute": None, "score": float(big),
                "message": f"class '{small_label}' has no readable images; add some or remove the folder.",
                "paths": [], "ratio": None}
    ratio = big / small
    if ratio >= 10:
        sev = "error"
    elif ratio >= 3:
        sev = "warning"
    elif ratio >= 1.5:
        sev = "info"
    else:
        sev = None
    few = [k for k, v in counts.items() if v < 10]
    if few and sev is None:
        sev = "info"
    if sev is None:
        return None
    msg = (f"classes are imbalanced: '{big_label}' has {big} images, '{small_label}' {small} "
           f"({ratio:.1f}x). A model can score well by favouring the big class; balance the classes "
           f"or weigh them.")
    if few:
        msg += f" Classes with fewer than 10 images: {', '.join(repr(k) for k in few)}."
    return {"kind": "class_imbalance", "severity": sev, "attribute": None, "score": round(ratio, 3),
            "message": msg, "paths": [], "ratio": round(ratio, 3)}


def _tiny(facts_rows) -> dict | None:
    small = [(f.path, f.upright_size) for f, _ in facts_rows if f.upright_size and min(f.upright_size) < TINY_SHORT_SIDE]
    if not small:
        return None
    ex = ", ".join(f"{p} ({s[0]}x{s[1]})" for p, s in small[:3])
    return {"kind": "tiny", "severity": "warning", "attribute": None,
            "score": round(len(small) / max(1, len(facts_rows)), 4),
            "message": f"{len(small)} image(s) have a short side under {TINY_SHORT_SIDE} px and will be blown up "
                       f"several times to reach the network's input; check they belong. Example: {ex}.",
            "paths": [p for p, _ in small]}


def _decode_check(paths, show: bool) -> dict[str, str]:
    """Cheap full decode at 32 px (DCT-scaled for JPEG): {path: reason} for files that fail."""
    bad = {}
    with progress_bar(len(paths), "checking decode", show) as advance:
        for p in paths:
            try:
                open_image(p, size=32)
            except UnreadableImage as exc:
                bad[p] = exc.reason
            except Exception as exc:  # never let one file stop the audit
                bad[p] = f"cannot decode: {one_line(exc, 160)}"
            advance()
    return bad


def _attribute_tables(tested, rows) -> dict:
    """Every attribute's value x label table, tested or not (for the report's plots)."""
    out = {}
    by_attr = {r.attribute: r for r in tested}
    labels = sorted({lab for _, lab, _ in rows})
    for attr in leakage.ATTRIBUTES:
        r = by_attr.get(attr)
        if r is not None:
            out[attr] = {"values": r.values, "labels": r.labels, "counts": r.table.astype(int).tolist(),
                         "accuracy": round(r.accuracy, 4), "baseline": round(r.prior_accuracy, 4),
                         "score": round(r.score, 4), "p_value": float(f"{r.p_value:.4g}")}
        else:
            c = Counter((a[attr], lab) for _, lab, a in rows)
            values = sorted({v for v, _ in c})
            out[attr] = {"values": values, "labels": labels,
                         "counts": [[c.get((v, lab), 0) for lab in labels] for v in values],
                         "accuracy": None, "baseline": None, "score": None, "p_value": None}
    return out


def run_audit(data, *, cache_dir=None, progress: bool = True, content: bool = True,
              val_split: float = DEFAULT_VAL_FRACTION,
              backbone: str = backbones.DEFAULT, sideways_threshold: float = sideways.DEFAULT_THRESHOLD,
              near_duplicate_threshold: float = duplicates.NEAR_THRESHOLD, workers: int | None = None) -> dict:
    """Audit a folder-per-class dataset. Returns the contracts' audit JSON (with extra keys)."""
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ds = scan(data, val_split)
    records = ds.records
    paths = [os.fspath(r.path) for r in records]
    timings["scan"] = time.perf_counter() - t0

    t = time.perf_counter()
    facts = []
    with progress_bar(len(paths), "reading headers", progress) as advance:
        for p in paths:
            facts.append(describe(p))
            advance()
    timings["headers"] = time.perf_counter() - t

    unreadable: dict[str, str] = {f.path: f.unreadable for f in facts if f.unreadable}
    checks = {"metadata": "done", "decode": None, "sideways": None, "near_duplicates": None}
    emb = None
    sw_items: list[dict] = []
    sw_info: dict | None = None
    findings: list[dict] = []

    header_ok = [i for i, f in enumerate(facts) if not f.unreadable]
    t = time.perf_counter()
    if content:
        from ..features import embed_paths

        idx = header_ok
        emb = embed_paths([paths[i] for i in idx], backbone=backbone, variants=sideways.VARIANTS,
                          cache_dir=cache_dir, progress=progress, workers=workers,
                          hashes=[records[i].sha256 for i in idx], description="embedding (4 rotations)")
        for j, reason in emb.errors.items():
            unreadable[paths[idx[j]]] = reason
        checks["decode"] = "embedding pass (cached files decoded in an earlier run)"
        timings["embeddings"] = time.perf_counter() - t
    else:
        unreadable.update(_decode_check([paths[i] for i in header_ok], progress))
        checks["decode"] = "32 px decode"
        timings["decode_check"] = time.perf_counter() - t

    ok = [i for i in range(len(paths)) if paths[i] not in unreadable]
    classes = {lab: 0 for lab in ds.labels}
    for i in ok:
        classes[records[i].label] += 1

    # unreadable
    if unreadable:
        items = [{"path": p, "reason": r} for p, r in unreadable.items()]
        ex = "; ".join(f"{it['path']}: {it['reason']}" for it in items[:3])
        findings.append({"kind": "unreadable", "severity": "error", "attribute": None,
                         "score": round(len(items) / max(1, len(paths)), 4),
                         "message": f"{len(items)} file(s) cannot be read and are left out of training: {ex}.",
                         "paths": [it["path"] for it in items], "items": items})

    # label leaks (metadata of readable files)
    t = time.perf_counter()
    rows = [(paths[i], records[i].label, leakage.attributes_of(facts[i])) for i in ok]
    leaks, tested = leakage.find_leaks(rows) if len({r[1] for r in rows}) > 1 else ([], [])
    findings += [r.to_finding() for r in leaks]
    timings["leakage"] = time.perf_counter() - t

    tiny = _tiny([(facts[i], None) for i in ok])
    if tiny:
        findings.append(tiny)
    imb = _imbalance(classes)
    if imb:
        findings.append(imb)

    # duplicates
    items = [duplicates.Item(paths[i], records[i].label, records[i].split, records[i].sha256) for i in ok]
    vectors = None
    if emb is not None:
        pos = {g: j for j, g in enumerate(header_ok)}
        vectors = np.stack([emb.vectors[pos[i], 0] for i in ok]) if ok else np.zeros((0, 1), np.float32)
        checks["near_duplicates"] = f"cosine >= {near_duplicate_threshold}"
    findings += duplicates.findings(items, vectors, near_duplicate_threshold)

    # sideways
    if emb is not None:
        t = time.perf_counter()
        pos = {g: j for j, g in enumerate(header_ok)}
        v4 = np.stack([emb.vectors[pos[i]] for i in ok]) if ok else np.zeros((0, 4, 1), np.float32)
        if len(ok) < sideways.MIN_IMAGES:
            checks["sideways"] = "skipped: too few images"
            findings.append({"kind": "sideways", "severity": "info", "attribute": None, "score": 0.0,
                             "message": f"sideways check skipped: {len(ok)} readable images, the rotation head "
                                        f"needs at least {sideways.MIN_IMAGES} to learn what upright looks like here.",
                             "paths": [], "items": [], "skipped": True})
        else:
            res = sideways.detect(v4)
            sw_info = {"temperature": round(res.temperature, 4), "prior_turned": round(float(1 - res.prior[0]), 4),
                       "cv_accuracy": round(res.cv_accuracy, 4), "folds": res.folds, "ridge": res.ridge,
                       "threshold": sideways_threshold}
            checks["sideways"] = (f"rotation head cross-fitted leave-one-image-out ({res.folds} folds), "
                                  f"held-out accuracy on rotated copies {res.cv_accuracy:.0%}")
            order = np.argsort(-res.turned)
            for j in order:
                if res.turned[j] >= sideways_threshold:
                    sw_items.append({"path": paths[ok[j]], "label": records[ok[j]].label,
                                     "confidence": round(float(res.turned[j]), 4),
                                     "rotation": int(res.rotation[j])})
            if sw_items:
                by_rot = Counter(it["rotation"] for it in sw_items)
                top = sw_items[0]
                sev = "warning"
                parts = ", ".join(f"{n} turned {r} degrees clockwise" for r, n in sorted(by_rot.items()))
                findings.append({
                    "kind": "sideways", "severity": sev, "attribute": None,
                    "score": round(float(np.mean([it["confidence"] for it in sw_items])), 4),
                    "message": (f"{len(sw_items)} picture(s) look turned whatever their tag says ({parts}; "
                                f"probability >= {sideways_threshold:.0%} from a rotation head trained on this "
                                f"dataset, {res.cv_accuracy:.0%} right on held-out rotated copies). Most likely: "
                                f"{top['path']} looks {sideways.describe_turn(top['rotation'])} "
                                f"(p={top['confidence']:.2f}). Check them; `upright fix --rotate-sideways` "
                                f"turns them back."),
                    "paths": [it["path"] for it in sw_items], "items": sw_items,
                })
        timings["sideways"] = time.perf_counter() - t

    findings.sort(key=lambda f: (SEVERITY_RANK.get(f["severity"], 3), -float(f.get("score") or 0)))
    tables = _attribute_tables(tested, rows)
    result = {
        "n_images": len(paths),
        "classes": classes,
        "unreadable": [{"path": p, "reason": r} for p, r in unreadable.items()],
        "findings": findings,
        "data": os.fspath(data),
        "n_readable": len(ok),
        "splits": dict(Counter(records[i].split for i in ok)),
        "skipped": [{"path": p, "reason": r} for p, r in ds.skipped],
        "checks": checks,
        "attributes": tables,
        "sideways": sw_info,
        "seconds": round(time.perf_counter() - t0, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "content": bool(content),
        "counts": {s: sum(1 for f in findings if f["severity"] == s) for s in SEVERITY_RANK},
    }
    if emb is not None:
        result["cache_hits"] = int(getattr(emb, "hits", 0))
    return result


def print_summary(result: dict, console=None) -> None:
    """A rich summary of the audit: counts, then findings, most severe first."""
    from rich.table import Table

    from ..console import out

    console = console or out
    n, ok = result["n_images"], result["n_readable"]
    classes = ", ".join(f"{k} {v}" for k, v in result["classes"].items())
    console.print(f"[bold]upright audit[/bold] {result['data']}: {n} images, {ok} readable, "
                  f"{len(result['classes'])} classes ({classes}) in {result['seconds']:.1f}s")
    if not result["findings"]:
        console.print("[green]No findings.[/green] No file attribute predicts the label, no duplicates, "
                      "nothing unreadable.")
        return
    colour = {"error": "red", "warning": "yellow", "info": "blue"}
    table = Table(show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("finding", ratio=1)
    table.add_column("files", justify="right", no_wrap=True)
    for f in result["findings"]:
        sev = f["severity"]
        kind = f["kind"] + (f"\n{f['attribute']}" if f.get("attribute") else "")
        table.add_row(f"[{colour[sev]}]{sev}[/{colour[sev]}]", kind, f["message"], str(len(f["paths"])))
    console.print(table)
    c = result["counts"]
    console.print(f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} info.")

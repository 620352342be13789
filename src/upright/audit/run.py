"""`upright audit DATA`: find the shortcuts and broken files before anyone trains on them.

The run prepares what the selected checks need (checks.py), cheapest first, then runs them:

- scan (sha256 of every file) and header facts (`metadata.describe`; no pixel is decoded), both
  on a pool of threads (parallel.py), in file order;
- readability ("decode"): with an embedding pass, every file not already in the cache is
  decoded there and the failures reported (cached files decoded in an earlier run, and their
  bytes have not changed since); without one, a cheap decode at 32 px (`open_image(path,
  size=32)`: JPEG decoded at 1/8 scale in the DCT domain) finds truncated and corrupt files;
- embeddings (cached by content hash) only when a selected check needs them: the upright view
  for near duplicates, the four turns for the sideways check.

`run_audit` returns the contracts' audit JSON (plus extra keys); `print_summary` writes the
terminal summary, most severe first.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Sequence

import numpy as np

from . import checks as registry
from .checks import AuditData, Check
from .severity import SEVERITY_COLOUR, SEVERITY_RANK, rank
from .. import backbones
from ..console import progress as progress_bar
from ..pipeline.scan import DEFAULT_VAL_FRACTION, scan
from ..errors import UnreadableImage, UprightError, one_line
from ..imaging import open_image
from ..metadata import describe
from ..parallel import ordered_map

CONTENT_NEEDS = {"embeddings", "rotations"}


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


def _configure(chosen: Sequence[Check], sideways_threshold, near_duplicate_threshold) -> list[Check]:
    """Copies of the chosen checks with the run_audit keyword parameters applied."""
    from dataclasses import replace

    out = []
    for c in chosen:
        if c.name == "sideways" and sideways_threshold is not None:
            c = replace(c, threshold=sideways_threshold)
        if c.name == "near_duplicates" and near_duplicate_threshold is not None:
            c = replace(c, threshold=near_duplicate_threshold)
        out.append(c)
    return out


def run_audit(data, *, cache_dir=None, progress: bool = True, content: bool = True, val_split: float = DEFAULT_VAL_FRACTION,
              backbone: str = backbones.DEFAULT, sideways_threshold: float | None = None,
              near_duplicate_threshold: float | None = None, workers: int | None = None,
              checks: str | Sequence[str] | Sequence[Check] | None = None,
              skip: str | Sequence[str] | None = None,
              engine: str = "local", ray_address: str | None = None) -> dict:
    """Audit a folder-per-class dataset. Returns the contracts' audit JSON (with extra keys).

    checks: names (or Check objects) to run, default every check in checks.DEFAULT_CHECKS;
    skip: names to leave out. content=False (--metadata-only) leaves out the checks that need
    embeddings; naming one of them explicitly then is an error. engine/ray_address: where the
    embedding step runs (features.embed_paths).
    """
    t0 = time.perf_counter()
    if checks is not None and not isinstance(checks, str) and checks and all(isinstance(c, Check) for c in checks):
        chosen = list(registry.select(None, skip, registry=list(checks)))  # configured check objects
    else:
        chosen = list(registry.select(checks, skip))
    chosen = _configure(chosen, sideways_threshold, near_duplicate_threshold)
    not_run: dict[str, str] = {}
    if not content:
        explicit = [c.name for c in chosen if c.needs & CONTENT_NEEDS] if checks is not None else []
        if explicit:
            raise UprightError(f"--metadata-only cannot run {', '.join(explicit)}: it needs the picture embeddings")
        for c in chosen:
            if c.needs & CONTENT_NEEDS:
                not_run[c.name] = "--metadata-only: needs embeddings"
        chosen = [c for c in chosen if not (c.needs & CONTENT_NEEDS)]
    for c in registry.DEFAULT_CHECKS:
        if c.name not in {k.name for k in chosen} and c.name not in not_run:
            not_run[c.name] = "left out by --checks/--skip"
    needs = set().union(*(c.needs for c in chosen)) if chosen else set()

    timings: dict[str, float] = {}
    ds = scan(data, val_split)
    records = ds.records
    paths = [os.fspath(r.path) for r in records]
    timings["scan"] = time.perf_counter() - t0

    t = time.perf_counter()
    with progress_bar(len(paths), "reading headers", progress) as advance:
        facts = ordered_map(describe, paths, advance=advance)  # describe never raises: a problem fact
    timings["headers"] = time.perf_counter() - t

    unreadable: dict[str, str] = {f.path: f.unreadable for f in facts if f.unreadable}
    header_ok = [i for i, f in enumerate(facts) if not f.unreadable]
    variants: tuple[str, ...] = ()
    for need in ("embeddings", "rotations"):
        if need in needs:
            variants += tuple(v for v in registry.VARIANTS_FOR[need] if v not in variants)
    emb = None
    decode_note = None
    t = time.perf_counter()
    if variants:
        from ..pipeline.embed import embed_paths

        what = "embedding (4 rotations)" if len(variants) == 4 else "embedding"
        emb = embed_paths([paths[i] for i in header_ok], backbone=backbone, variants=variants,
                          cache_dir=cache_dir, progress=progress, workers=workers,
                          hashes=[records[i].sha256 for i in header_ok], description=what,
                          engine=engine, ray_address=ray_address)
        for j, reason in emb.errors.items():
            unreadable[paths[header_ok[j]]] = reason
        decode_note = "embedding pass (cached files decoded in an earlier run)"
        timings["embeddings"] = time.perf_counter() - t
    elif "decode" in needs:
        unreadable.update(_decode_check([paths[i] for i in header_ok], progress))
        decode_note = "32 px decode"
        timings["decode_check"] = time.perf_counter() - t

    ok = [i for i in range(len(paths)) if paths[i] not in unreadable]
    vectors = None
    if emb is not None:
        pos = {g: j for j, g in enumerate(header_ok)}
        dim = emb.vectors.shape[-1]
        vectors = np.stack([emb.vectors[pos[i]] for i in ok]) if ok else np.zeros((0, len(variants), dim), np.float32)
    audit_data = AuditData(os.fspath(data), list(ds.labels), records, paths, facts, unreadable, ok, vectors,
                           variants, decode_note)

    findings: list[dict] = []
    notes: dict[str, str | None] = {"metadata": "done", "decode": decode_note}
    extra: dict = {"attributes": {}, "sideways": None}
    for check in chosen:
        res, seconds = registry.timed_run(check, audit_data)
        timings[check.name] = seconds
        findings += [f.to_dict() for f in res.findings]
        notes[check.name] = res.note
        extra.update(res.info)
    for name in not_run:
        notes.setdefault(name, None)

    findings.sort(key=lambda f: (rank(f["severity"]), -float(f.get("score") or 0)))
    result = {
        "n_images": len(paths),
        "classes": audit_data.classes(),
        "unreadable": [{"path": p, "reason": r} for p, r in unreadable.items()],
        "findings": findings,
        "data": os.fspath(data),
        "n_readable": len(ok),
        "splits": dict(Counter(records[i].split for i in ok)),
        "skipped": [{"path": p, "reason": r} for p, r in ds.skipped],
        "checks": notes,
        "checks_run": [c.name for c in chosen],
        "checks_not_run": not_run,
        **extra,
        "seconds": round(time.perf_counter() - t0, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "content": bool(variants),
        "counts": {s: sum(1 for f in findings if f["severity"] == s) for s in SEVERITY_RANK},
    }
    if emb is not None:
        result["cache_hits"] = int(getattr(emb, "hits", 0))
    return result


def print_summary(result: dict, console=None) -> None:
    """A rich summary of the audit: counts, then findings, most severe first."""
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    console = console or out
    n, ok = result["n_images"], result["n_readable"]
    classes = ", ".join(f"{k} {v}" for k, v in result["classes"].items())
    console.print(f"[bold]upright audit[/bold] {escape(str(result['data']))}: {n} images, {ok} readable, "
                  f"{len(result['classes'])} classes ({escape(classes)}) in {result['seconds']:.1f}s")
    run = result.get("checks_run") or []
    if not result["findings"]:
        console.print(f"[green]No findings[/green] from the {len(run)} check(s) run ({', '.join(run)}).")
    else:
        table = Table(show_lines=True, expand=True)
        table.add_column("severity", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("finding", ratio=1)
        table.add_column("files", justify="right", no_wrap=True)
        for f in result["findings"]:
            sev = f["severity"]
            kind = f["kind"] + (f"\n{f['attribute']}" if f.get("attribute") else "")
            table.add_row(f"[{SEVERITY_COLOUR[sev]}]{sev}[/{SEVERITY_COLOUR[sev]}]", kind, escape(f["message"]), str(len(f["paths"])))
        console.print(table)
        c = result["counts"]
        console.print(f"{c['error']} error(s), {c['warning']} warning(s), {c['info']} info.")
    not_run = result.get("checks_not_run") or {}
    by_reason: dict[str, list[str]] = {}
    for name, why in not_run.items():
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():
        console.print(f"Not run: {', '.join(names)} ({escape(why)}).")

"""`upright audit DATA`: find the shortcuts and broken files before anyone trains on them.

The run prepares what the selected checks need (checks.py), cheapest first, then runs them.
Its named steps:

- `plan`: which checks run and what they need;
- `scan` (pipeline/scan.py): the files, their labels, splits and content hashes, on a pool of
  threads; a hash recorded in the cache is reused while the file's path, size, mtime and
  inode are unchanged (known_files.py);
- `read_facts`: header facts (`metadata.describe`; no pixel is decoded), recorded in the
  cache by content hash and reused, kept in columns (table.py);
- `prepare_content`, only for the content checks (not with --metadata-only, which reads
  headers and nothing else):
  * embeddings (cached by content hash) when a selected check needs them: the upright view
    for near duplicates, the four turns for the sideways check; every file not already in
    the cache is decoded there, and the failures reported. They go to a temporary file
    (table.VectorFile) chunk by chunk, so memory does not grow with them;
  * otherwise readability alone ("decode"): a cheap decode at 32 px (JPEG at 1/8 scale in
    the DCT domain) on a pool of threads, of the files not decoded in an earlier run;
- `run_checks`, then `assemble`: the typed AuditResult (result.py), whose to_dict() is the
  contracts' audit JSON.

`audit_dataset` runs the steps after the scan on a Dataset a caller already has (the train
report audits the training photos with the facts and decode outcomes the run recorded).
`print_summary` writes the terminal summary, most severe first.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from . import checks as registry
from .checks import AuditData, Check
from .finding import Finding
from .result import AuditResult
from .severity import SEVERITY_COLOUR, SEVERITY_RANK, rank
from .table import FactsTable, VectorFile
from .. import backbones
from ..console import progress as progress_bar
from ..errors import UprightError
from ..known_files import KnownFiles
from ..pipeline.scan import DEFAULT_VAL_FRACTION, Dataset, scan
from ..words import count

CONTENT_NEEDS = {"embeddings", "rotations"}
FACTS_CHUNK = 4096  # files per step of reading facts: FileFacts objects live one chunk at a time
EMBED_CHUNK = 4096  # files per embedding call: [chunk, variants, D] in memory at a time


@dataclass
class Plan:
    """What a run will do: the checks (configured), those left out and why, what they need."""

    chosen: list[Check]
    not_run: dict[str, str]
    needs: set[str]
    variants: tuple[str, ...] = ()  # embeddings to prepare


@dataclass
class Content:
    """What prepare_content found: unreadable files (path -> reason), the embeddings of the
    readable ones, how readability was checked, cache hits and the step's timings."""

    unreadable: dict[str, str] = field(default_factory=dict)
    vectors: VectorFile | None = None
    note: str | None = None
    hits: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _configure(chosen: Sequence[Check], sideways_threshold, near_duplicate_threshold) -> list[Check]:
    """Copies of the chosen checks with the run_audit keyword parameters applied."""
    out = []
    for c in chosen:
        if c.name == "sideways" and sideways_threshold is not None:
            c = replace(c, threshold=sideways_threshold)
        if c.name == "near_duplicates" and near_duplicate_threshold is not None:
            c = replace(c, threshold=near_duplicate_threshold)
        out.append(c)
    return out


def plan(checks=None, skip=None, *, content: bool = True, sideways_threshold: float | None = None,
         near_duplicate_threshold: float | None = None) -> Plan:
    """The checks to run (names or configured Check objects) minus `skip`; content=False
    (--metadata-only) leaves out those that need embeddings and the pixel decode."""
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
        not_run = {c.name: "--metadata-only: needs embeddings" for c in chosen if c.needs & CONTENT_NEEDS}
        chosen = [c for c in chosen if not (c.needs & CONTENT_NEEDS)]
    for c in registry.DEFAULT_CHECKS:
        if c.name not in {k.name for k in chosen} and c.name not in not_run:
            not_run[c.name] = "left out by --checks/--skip"
    needs = set().union(*(c.needs for c in chosen)) if chosen else set()
    if not content:
        needs.discard("decode")  # headers only: the pixels are the content checks'
    variants: tuple[str, ...] = ()
    for need in ("embeddings", "rotations"):
        if need in needs:
            variants += tuple(v for v in registry.VARIANTS_FOR[need] if v not in variants)
    return Plan(chosen, not_run, needs, variants)


def run_audit(data, *, cache_dir=None, progress: bool = True, content: bool = True,
              val_split: float = DEFAULT_VAL_FRACTION, backbone: str = backbones.DEFAULT,
              sideways_threshold: float | None = None, near_duplicate_threshold: float | None = None,
              workers: int | None = None, checks: str | Sequence[str] | Sequence[Check] | None = None,
              skip: str | Sequence[str] | None = None, engine: str = "local",
              ray_address: str | None = None) -> AuditResult:
    """Audit a folder-per-class dataset -> AuditResult (to_dict(): the contracts' audit JSON).

    checks: names (or Check objects) to run, default every check in checks.DEFAULT_CHECKS;
    skip: names to leave out. content=False (--metadata-only) reads headers only: it leaves
    out the checks that need embeddings (naming one of them explicitly then is an error) and
    the pixel decode. engine/ray_address: where the embedding step runs (pipeline.embed.embed_paths).
    """
    t0 = time.perf_counter()
    todo = plan(checks, skip, content=content, sideways_threshold=sideways_threshold,
                near_duplicate_threshold=near_duplicate_threshold)
    with KnownFiles(cache_dir) as known:
        ds = scan(data, val_split, known=known)
        scanned = time.perf_counter() - t0
        return audit_dataset(ds, todo, known, cache_dir=cache_dir, progress=progress, backbone=backbone,
                             workers=workers, engine=engine, ray_address=ray_address, t0=t0,
                             timings={"scan": scanned})


def audit_dataset(ds: Dataset, todo: Plan, known: KnownFiles, *, cache_dir=None, progress: bool = False,
                  backbone: str = backbones.DEFAULT, workers: int | None = None, engine: str = "local",
                  ray_address: str | None = None, decoded: tuple[dict[str, str], str] | None = None,
                  t0: float | None = None, timings: dict | None = None) -> AuditResult:
    """The audit's steps after the scan, on `ds` (see the module docstring).

    decoded: (unreadable path -> reason, note) when the caller already decoded every file
    (train's embedding pass): no decode step then.
    """
    t0 = time.perf_counter() if t0 is None else t0
    timings = dict(timings or {})
    paths = [os.fspath(r.path) for r in ds.records]
    shas = [r.sha256 for r in ds.records]
    t = time.perf_counter()
    facts = read_facts(known, paths, shas, progress)
    timings["headers"] = time.perf_counter() - t
    unreadable = {p: why for p, why in zip(paths, facts.column("unreadable")) if why}
    header_ok = np.array([i for i, p in enumerate(paths) if p not in unreadable], np.int64)
    found = prepare_content(todo, paths, shas, header_ok, known, decoded, cache_dir=cache_dir, progress=progress,
                            backbone=backbone, workers=workers, engine=engine, ray_address=ray_address)
    try:
        unreadable.update(found.unreadable)
        timings.update(found.timings)
        data = _audit_data(ds, paths, facts, unreadable, found)
        outcome = run_checks(todo.chosen, data, timings)
    finally:
        if found.vectors is not None:
            found.vectors.close()
    return assemble(ds, data, todo, outcome, found, t0, timings)


def read_facts(known: KnownFiles, paths: list[str], shas: list[str], progress: bool) -> FactsTable:
    """Header facts of every file (recorded ones reused), into columns a chunk at a time."""
    table = FactsTable()
    with progress_bar(len(paths), "reading headers", progress) as advance:
        for s in range(0, len(paths), FACTS_CHUNK):
            table.extend(known.facts(paths[s:s + FACTS_CHUNK], shas[s:s + FACTS_CHUNK], advance=advance))
    return table


def prepare_content(todo: Plan, paths, shas, header_ok, known: KnownFiles, decoded=None, *, cache_dir=None,
                    progress: bool = False, backbone: str = backbones.DEFAULT, workers: int | None = None,
                    engine: str = "local", ray_address: str | None = None) -> Content:
    """Embeddings for the content checks, or readability alone (see the module docstring)."""
    if decoded is not None:
        failures, note = decoded
        mine = set(paths)
        return Content({p: why for p, why in failures.items() if p in mine}, note=note)
    t = time.perf_counter()
    if todo.variants:
        found = embed_readable(paths, shas, header_ok, todo.variants, cache_dir=cache_dir, progress=progress,
                               backbone=backbone, workers=workers, engine=engine, ray_address=ray_address)
        found.timings["embeddings"] = time.perf_counter() - t
        return found
    if "decode" in todo.needs:
        with progress_bar(len(header_ok), "checking decode", progress) as advance:
            bad = known.decode_check([paths[i] for i in header_ok], [shas[i] for i in header_ok], advance=advance,
                                     workers=workers)
        unreadable = {paths[header_ok[j]]: why for j, why in bad.items()}
        return Content(unreadable, note="32 px decode (files decoded in an earlier run are not decoded again)",
                       timings={"decode_check": time.perf_counter() - t})
    return Content()


def embed_readable(paths, shas, header_ok, variants, *, cache_dir=None, progress: bool = False,
                   backbone: str = backbones.DEFAULT, workers: int | None = None, engine: str = "local",
                   ray_address: str | None = None) -> Content:
    """Embeddings of the files whose header reads, EMBED_CHUNK files at a time, into a
    VectorFile whose rows are the files that decode, in order."""
    from ..cache import resolve_cache_dir
    from ..pipeline.embed import embed_paths

    what = "embedding (4 rotations)" if len(variants) == 4 else "embedding"
    vectors = VectorFile(0, variants, backbones.spec(backbone).dim, resolve_cache_dir(cache_dir),
                         stride=len(header_ok))
    failed: dict[int, str] = {}  # position in header_ok -> reason
    hits = at = 0  # at: rows written, the files that decoded so far
    chunks = range(0, len(header_ok), EMBED_CHUNK)
    for k, s in enumerate(chunks):
        part = header_ok[s:s + EMBED_CHUNK]
        emb = embed_paths([paths[i] for i in part], backbone=backbone, variants=variants, cache_dir=cache_dir,
                          progress=progress, workers=workers, hashes=[shas[i] for i in part],
                          description=what if len(chunks) == 1 else f"{what}, part {k + 1} of {len(chunks)}",
                          engine=engine, ray_address=ray_address)
        good = np.array([j for j in range(len(part)) if j not in emb.errors], np.int64)
        vectors.write(at, np.nan_to_num(emb.vectors[good]))
        at += len(good)
        failed.update({s + j: why for j, why in emb.errors.items()})
        hits += int(emb.hits)
    vectors.set_count(at)
    return Content({paths[header_ok[j]]: why for j, why in sorted(failed.items())}, vectors,
                   "embedding pass (cached files decoded in an earlier run)", hits)


def _audit_data(ds: Dataset, paths, facts: FactsTable, unreadable, found: Content) -> AuditData:
    label_index = {lab: i for i, lab in enumerate(ds.labels)}
    ok = np.array([i for i, p in enumerate(paths) if p not in unreadable], np.int64)
    return AuditData(os.fspath(ds.root), list(ds.labels), paths,
                     np.array([label_index[r.label] for r in ds.records], np.int32),
                     np.array([r.split for r in ds.records], dtype="U5"),
                     np.array([r.sha256 for r in ds.records], dtype="S64"),
                     facts, unreadable, ok, found.vectors, found.note)


@dataclass
class Outcome:
    """What the checks found, what each did, and the extra JSON they add."""

    findings: list[Finding]
    notes: dict[str, str | None]
    info: dict


def run_checks(chosen: Sequence[Check], data: AuditData, timings: dict) -> Outcome:
    """Every chosen check on `data`, timed; findings most severe first, then by score."""
    findings: list[Finding] = []
    notes: dict[str, str | None] = {"metadata": "done", "decode": data.decode_note}
    info: dict = {"attributes": {}, "sideways": None}
    for check in chosen:
        res, seconds = registry.timed_run(check, data)
        timings[check.name] = seconds
        findings += res.findings
        notes[check.name] = res.note
        info.update(res.info)
    findings.sort(key=lambda f: (rank(f.severity), -float(round(float(f.score), 4) or 0)))
    return Outcome(findings, notes, info)


def assemble(ds: Dataset, data: AuditData, todo: Plan, outcome: Outcome, found: Content, t0: float,
             timings: dict) -> AuditResult:
    """The typed result (result.py)."""
    notes = dict(outcome.notes)
    for name in todo.not_run:
        notes.setdefault(name, None)
    info = dict(outcome.info)
    return AuditResult(
        n_images=len(data.paths), classes=data.classes(),
        unreadable=[{"path": p, "reason": r} for p, r in data.unreadable.items()],
        findings=outcome.findings, data=data.root, n_readable=len(data.ok),
        splits=dict(Counter(str(s) for s in data.split_of[data.ok])),
        skipped=[{"path": p, "reason": r} for p, r in ds.skipped],
        checks=notes, checks_run=[c.name for c in todo.chosen], checks_not_run=todo.not_run,
        attributes=info.pop("attributes"), sideways=info.pop("sideways"), info=info,
        seconds=round(time.perf_counter() - t0, 3), timings={k: round(v, 3) for k, v in timings.items()},
        content=bool(todo.variants),
        counts={s: sum(1 for f in outcome.findings if f.severity == s) for s in SEVERITY_RANK},
        cache_hits=found.hits)


def print_summary(result, console=None) -> None:
    """A rich summary of the audit: counts, then findings, most severe first."""
    from rich.markup import escape
    from rich.table import Table

    from ..console import out

    console = console or out
    n, ok = result["n_images"], result["n_readable"]
    classes = ", ".join(f"{k} {v}" for k, v in result["classes"].items())
    console.print(f"[bold]upright audit[/bold] {escape(str(result['data']))}: {count(n, 'image')}, {ok} readable, "
                  f"{count(len(result['classes']), 'class')} ({escape(classes)}) in {result['seconds']:.1f}s")
    run = result.get("checks_run") or []
    if not result["findings"]:
        console.print(f"[green]No findings[/green] from the {count(len(run), 'check')} run ({', '.join(run)}).")
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
        console.print(f"{count(c['error'], 'error')}, {count(c['warning'], 'warning')}, {c['info']} info.")
    not_run = result.get("checks_not_run") or {}
    by_reason: dict[str, list[str]] = {}
    for name, why in not_run.items():
        by_reason.setdefault(why, []).append(name)
    for why, names in by_reason.items():
        console.print(f"Not run: {', '.join(names)} ({escape(why)}).")

"""`upright embed DATA -o OUT`: every photo's embedding as Parquet rows, on any engine.

One row per photo and view (columns in stores.COLUMNS); `--augment none` gives one row per
photo. A re-run into the same OUT reuses every row already there for the same backbone,
weights and preprocessing (keyed by path, content hash and view): a killed run resumes, and a
copy of a photo already embedded (same sha256, another path) gets its row without a decode.
Unreadable files are listed with their reason and the run goes on. Memory stays flat in the
data-set size: finished batches stream into shards of stores.SHARD_ROWS rows.
"""

from __future__ import annotations

import time

from .. import backbones
from ..cache import model_key
from ..console import progress as progress_bar
from ..errors import UprightError
from ..pipeline.engines import make_engine
from ..pipeline.scan import DEFAULT_VAL_FRACTION, scan
from ..pipeline.shard import Job, Task
from ..pipeline.stores import ParquetStore
from ..presets import augment_variants
from ..words import count

DEFAULT_AUGMENT = "none"


def run_embed(data, out, *, engine="local", ray_address: str | None = None, augment: str = DEFAULT_AUGMENT,
              backbone: str = backbones.DEFAULT, device: str = "auto", workers: int | None = None,
              cache_dir=None, progress: bool = True, val_split: float = DEFAULT_VAL_FRACTION,
              shard_rows: int | None = None) -> dict:
    """Embed DATA (folder per class, or train/ val/ test/) into Parquet shards under `out`.

    Returns {"n", "embedded", "reused", "out", "engine", "seconds", ...} (the contracts' JSON)."""
    t0 = time.perf_counter()
    variants = augment_variants(augment)
    if device not in backbones.DEVICES:
        raise UprightError(f"unknown --device '{device}' (choose from {', '.join(backbones.DEVICES)})")
    eng = make_engine(engine, ray_address=ray_address, workers=workers)
    ds = scan(data, val_split)
    task = Task(backbone, True, None if cache_dir is None else str(cache_dir), device)
    store = ParquetStore(out, model_key(backbone, backbones.weights_sha256(backbone), task.contract.preprocess_version),
                         backbone, shard_rows=shard_rows)
    run = _Shards(ds.records, variants, store)
    try:
        with progress_bar(len(ds.records), "embedding", enabled=progress) as advance:
            advance(len(ds.records) - len(run.missing))
            jobs = run.jobs(advance)
            for part in eng.run(jobs, task):
                advance(run.add(part))
    finally:
        store.close()  # the last, partial shard: a Ctrl-C keeps what was finished
    unreadable = sorted(run.unreadable, key=lambda u: u["path"])
    return {"n": len(ds.records), "embedded": run.embedded, "reused": len(ds.records) - len(run.missing),
            "out": str(out), "engine": eng.name, "seconds": round(time.perf_counter() - t0, 3), "backbone": backbone,
            "variants": list(variants), "rows_written": store.written, "unreadable": unreadable,
            "skipped": [{"path": p, "reason": why} for p, why in ds.skipped]}


class _Shards:
    """What one run still has to write into OUT, and the rows as they arrive (one row per photo
    and view; copies of a content already in OUT under another path get its rows, no decode).
    A photo's rows are written together once all its views are in, so memory holds only the
    photos in flight."""

    def __init__(self, records, variants: tuple[str, ...], store: ParquetStore):
        self.records, self.variants, self.store = records, variants, store
        present = store.present()
        self.missing = {}  # photo index -> its views not yet in OUT
        for i, r in enumerate(records):
            miss = tuple(v for v in variants if (str(r.path), r.sha256, v) not in present)
            if miss:
                self.missing[i] = miss
        del present
        self.copies: dict[str, list[int]] = {}
        for i in self.missing:
            self.copies.setdefault(records[i].sha256, []).append(i)
        self.known = store.get_many(self.copies, variants)  # contents already in OUT under another path
        self.waiting: dict[int, list[tuple]] = {}  # a job's index -> its rows so far
        self.left: dict[int, set[str]] = {}  # a job's index -> views still to come
        self.unreadable: list[dict] = []
        self.embedded = 0

    def jobs(self, advance) -> list[Job]:
        """One job per content still missing a view; groups whose rows are all known are written now."""
        jobs = []
        for sha, group in self.copies.items():
            need = tuple(v for v in self.variants
                         if (sha, v) not in self.known and any(v in self.missing[i] for i in group))
            known = [self._rows(group, v, self.known[(sha, v)]) for v in self.variants if (sha, v) in self.known]
            if need:
                jobs.append(Job(group[0], str(self.records[group[0]].path), need))
                self.left[group[0]], self.waiting[group[0]] = set(need), [r for rows in known for r in rows]
            else:
                self._write(group, [r for rows in known for r in rows])
                advance(len(group))
        return jobs

    def add(self, part) -> int:
        """Take one finished batch (shard.Vectors) -> photos finished by it."""
        finished = 0
        for i, why in part.failed.items():
            group = self.copies[self.records[i].sha256]
            self.unreadable += [{"path": str(self.records[g].path), "reason": why} for g in group]
            self.waiting.pop(i, None)
            finished += len(group)
        for i, v, vec in zip(part.index.tolist(), part.view, part.vectors):
            group = self.copies[self.records[i].sha256]
            self.waiting[i] += self._rows(group, v, vec)
            self.left[i].discard(v)
            if not self.left[i]:
                self._write(group, self.waiting.pop(i))
                finished += len(group)
        return finished

    def _rows(self, group: list[int], view: str, vec) -> list[tuple]:
        """The Parquet rows of one view for every photo of the group that misses it."""
        out = []
        for i in group:
            r = self.records[i]
            if view in self.missing[i]:
                out.append((r.sha256, view, vec, {"path": str(r.path), "label": r.label, "split": r.split}))
        return out

    def _write(self, group: list[int], rows: list[tuple]) -> None:
        self.store.put_many(rows)
        self.embedded += len(group)


def print_summary(result: dict) -> None:
    from rich.markup import escape

    from ..console import err, out

    for u in result["unreadable"]:
        err.print(f"[yellow]unreadable[/] {escape(u['path'])}: {escape(u['reason'])}")
    out.print(f"upright embed: {count(result['n'], 'photo')} -> {escape(result['out'])} ({result['engine']} engine, "
              f"{result['backbone']}, views {'+'.join(result['variants'])}): {result['embedded']} embedded, "
              f"{result['reused']} reused, {len(result['unreadable'])} unreadable in {result['seconds']:.1f} s")


__all__ = ["DEFAULT_AUGMENT", "print_summary", "run_embed"]

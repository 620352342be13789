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
from ..pipeline.scan import DEFAULT_VAL_FRACTION, scan
from ..errors import UprightError
from ..pipeline.decode import PREPROCESS_VERSION
from ..pipeline.shard import Task
from ..pipeline.engines import Job, make_engine
from ..pipeline.stores import ParquetStore

DEFAULT_AUGMENT = "none"


def run_embed(data, out, *, engine="local", ray_address: str | None = None, augment: str = DEFAULT_AUGMENT,
              backbone: str = backbones.DEFAULT, device: str = "auto", workers: int | None = None,
              cache_dir=None, progress: bool = True, val_split: float = DEFAULT_VAL_FRACTION,
              shard_rows: int | None = None) -> dict:
    """Embed DATA (folder per class, or train/ val/ test/) into Parquet shards under `out`.

    Returns {"n", "embedded", "reused", "out", "engine", "seconds", ...} (the contracts' JSON)."""
    from ..pipeline.embed import AUGMENT_VARIANTS

    t0 = time.perf_counter()
    if augment not in AUGMENT_VARIANTS:
        raise UprightError(f"unknown --augment '{augment}' (none, flip, rotate, d4)")
    variants = AUGMENT_VARIANTS[augment]
    if device not in backbones.DEVICES:
        raise UprightError(f"unknown --device '{device}' (choose from {', '.join(backbones.DEVICES)})")
    eng = make_engine(engine, ray_address=ray_address, workers=workers)
    ds = scan(data, val_split)
    records = ds.records
    store = ParquetStore(out, model_key(backbone, backbones.weights_sha256(backbone), PREPROCESS_VERSION),
                         backbone, shard_rows=shard_rows)
    present = store.present()
    missing = {}  # photo index -> its views not yet in OUT
    for i, r in enumerate(records):
        miss = tuple(v for v in variants if (str(r.path), r.sha256, v) not in present)
        if miss:
            missing[i] = miss
    del present
    copies: dict[str, list[int]] = {}
    for i in missing:
        copies.setdefault(records[i].sha256, []).append(i)
    known = store.get_many(copies, variants)  # contents already in OUT under another path
    unreadable: list[dict] = []
    embedded = 0

    def info(i):
        r = records[i]
        return {"path": str(r.path), "label": r.label, "split": r.split}

    def write(group, vecs):
        nonlocal embedded
        store.put_many([(records[i].sha256, v, vecs[v], info(i)) for i in group for v in missing[i]])
        embedded += len(group)

    jobs = []
    with progress_bar(len(records), "embedding", enabled=progress) as advance:
        advance(len(records) - len(missing))
        for sha, group in copies.items():
            need = tuple(v for v in variants if (sha, v) not in known and any(v in missing[i] for i in group))
            if need:
                jobs.append(Job(group[0], str(records[group[0]].path), need))
            else:
                write(group, {v: known[(sha, v)] for v in variants if (sha, v) in known})
                advance(len(group))
        task = Task(backbone, True, None if cache_dir is None else str(cache_dir), device)
        try:
            for done in eng.run(jobs, task):
                for i, vecs, why in done:
                    group = copies[records[i].sha256]
                    if vecs is None:
                        unreadable += [{"path": str(records[g].path), "reason": why} for g in group]
                    else:
                        write(group, {**{v: known[(records[i].sha256, v)] for v in variants
                                         if (records[i].sha256, v) in known}, **vecs})
                    advance(len(group))
        finally:
            store.close()  # the last, partial shard: a Ctrl-C keeps what was finished
    unreadable.sort(key=lambda u: u["path"])
    return {"n": len(records), "embedded": embedded, "reused": len(records) - len(missing), "out": str(out),
            "engine": eng.name, "seconds": round(time.perf_counter() - t0, 3), "backbone": backbone,
            "variants": list(variants), "rows_written": store.written, "unreadable": unreadable,
            "skipped": [{"path": p, "reason": why} for p, why in ds.skipped]}


def print_summary(result: dict) -> None:
    from rich.markup import escape

    from ..console import err, out

    for u in result["unreadable"]:
        err.print(f"[yellow]unreadable[/] {escape(u['path'])}: {escape(u['reason'])}")
    out.print(f"upright embed: {result['n']} photos -> {escape(result['out'])} ({result['engine']} engine, "
              f"{result['backbone']}, views {'+'.join(result['variants'])}): {result['embedded']} embedded, "
              f"{result['reused']} reused, {len(result['unreadable'])} unreadable in {result['seconds']:.1f} s")


__all__ = ["DEFAULT_AUGMENT", "print_summary", "run_embed"]

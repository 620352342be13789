"""What a run learns about a file is recorded once (known_files.py): a warm re-train, its report
included, hashes no file it knows and decodes no picture; `audit --metadata-only` reads headers
and nothing else; `train --no-report` writes no report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import ImageFile

import fixtures as af
import upright
import upright.files as files
import upright.known_files as known_files
from upright.audit import run_audit
from upright.known_files import KnownFiles


class Reads:
    """Counts what this process really reads: file hashes, header reads, pixel decodes."""

    def __init__(self, monkeypatch):
        self.hashed: list[str] = []
        self.described: list[str] = []
        self.decoded = 0
        real_hash, real_describe, real_load = files.file_sha256, known_files.describe, ImageFile.ImageFile.load

        def load(im, *a, **k):
            self.decoded += 1
            return real_load(im, *a, **k)

        monkeypatch.setattr(files, "file_sha256", lambda p: self.hashed.append(str(p)) or real_hash(p))
        monkeypatch.setattr(known_files, "describe", lambda p: self.described.append(str(p)) or real_describe(p))
        monkeypatch.setattr(ImageFile.ImageFile, "load", load)

    def reset(self):
        self.hashed, self.described, self.decoded = [], [], 0


def test_a_known_file_is_hashed_once_and_again_when_it_changes(tmp_path):
    data = af.make_dataset(tmp_path / "d", n_per_class=3)
    paths = sorted(data.rglob("*.jpg"))
    cache = tmp_path / "cache"
    with KnownFiles(cache) as known:
        first = known.hash_and_size(paths)
        assert known.counts.hashed == 6 and first == [(files.file_sha256(p), p.stat().st_size) for p in paths]
    with KnownFiles(cache) as known:  # a later run: one stat a file, no read
        assert known.hash_and_size(paths) == first and known.counts.hashed == 0 and known.counts.hash_reused == 6
    # same size, new bytes (and so a new mtime): hashed again; a moved file too (its path is the key)
    changed = bytearray(paths[0].read_bytes())
    changed[-3] ^= 0xFF
    paths[0].write_bytes(bytes(changed))
    moved = paths[1].with_name("moved.jpg")
    paths[1].rename(moved)
    with KnownFiles(cache) as known:
        again = known.hash_and_size([paths[0], moved, *paths[2:]])
        assert known.counts.hashed == 2 and again[0][0] == files.file_sha256(paths[0]) != first[0][0]
        assert again[1] == first[1]


def test_facts_follow_the_content_not_the_name(tmp_path):
    data = af.confounded(tmp_path / "d", n=4)
    src = sorted((data / "diet").glob("*.jpg"))[0]
    copy = shutil.copy(src, tmp_path / "elsewhere.jpg")
    sha = files.file_sha256(src)
    with KnownFiles(tmp_path / "cache") as known:
        (a,) = known.facts([str(src)], [sha])
        (b,) = known.facts([str(copy)], [sha])
        assert known.counts.described == 1 and known.counts.facts_reused == 1
    assert b.path == str(copy) and b.to_dict() | {"path": None} == a.to_dict() | {"path": None}
    assert a.orientation == 6 and a.stored_size == (120, 160) and a.upright_size == (160, 120)


def test_warm_retrain_with_its_report_hashes_reads_and_decodes_nothing(tmp_path, monkeypatch):
    data = af.make_dataset(tmp_path / "d", n_per_class=12, classes=("cat", "dog"), orientation={"dog": 6})
    raw = (data / "dog" / "dog_000.jpg").read_bytes()
    (data / "dog" / "truncated.jpg").write_bytes(raw[: len(raw) // 2])  # a good header, half the pixels
    cache = tmp_path / "cache"
    reads = Reads(monkeypatch)
    cold = upright.train(data, tmp_path / "m1", augment="none", cache_dir=cache)
    assert reads.hashed and reads.described  # the cold run read what it needed once
    reads.reset()
    warm = upright.train(data, tmp_path / "m2", augment="none", cache_dir=cache)
    assert warm.decoded == 0 and warm.cache_hits == 24
    assert reads.hashed == [] and reads.described == [] and reads.decoded == 0
    # nothing the report shows is lost: the same warnings, the truncated file among the unreadable
    html = [(m / "report.html").read_text() for m in (tmp_path / "m1", tmp_path / "m2")]
    assert "label_leak (exif_orientation)" in html[1] and "truncated.jpg" in html[1]
    assert cold.unreadable == warm.unreadable and "truncated" in warm.unreadable[0]["reason"]
    assert html[0].count("badge warning") + html[0].count("badge error") == \
        html[1].count("badge warning") + html[1].count("badge error")


def test_metadata_only_reads_headers_once_and_decodes_nothing(tmp_path, monkeypatch):
    data = af.messy(tmp_path / "d")
    reads = Reads(monkeypatch)
    first = run_audit(data, content=False, progress=False, cache_dir=tmp_path / "cache")
    assert reads.decoded == 0 and reads.described
    reads.reset()
    second = run_audit(data, content=False, progress=False, cache_dir=tmp_path / "cache")
    assert reads.decoded == 0 and reads.described == [] and reads.hashed == []
    a, b = first.to_dict(), second.to_dict()
    for r in (a, b):
        r.pop("seconds"), r.pop("timings")
    assert a == b and a["checks"]["decode"] is None


def test_a_full_audit_after_train_decodes_nothing_the_train_decoded(tmp_path, monkeypatch):
    """The decode check of a content audit reuses recorded outcomes and cached embeddings."""
    data = af.messy(tmp_path / "d", n=6)
    cache = tmp_path / "cache"
    run_audit(data, progress=False, cache_dir=cache, checks="unreadable")
    reads = Reads(monkeypatch)
    again = run_audit(data, progress=False, cache_dir=cache, checks="unreadable")
    assert reads.decoded == 0 and {u["path"].rsplit("/", 1)[1] for u in again["unreadable"]} == {
        "empty.jpg", "notes.jpg", "truncated.jpg"}


def test_train_no_report(tmp_path, cli):
    data = af.make_dataset(tmp_path / "d", n_per_class=4)
    code, out, _ = cli("train", data, "-o", tmp_path / "m", "--no-report", "--augment", "none", "--json")
    assert code == 0 and json.loads(out)["report"] is None
    assert (tmp_path / "m" / "model.json").is_file() and not (tmp_path / "m" / "report.html").exists()


def test_audit_result_is_typed_and_its_json_unchanged(tmp_path):
    from upright.audit import Finding
    from upright.audit.result import AuditResult

    r = run_audit(af.messy(tmp_path / "d"), content=False, progress=False)
    assert isinstance(r, AuditResult) and all(isinstance(f, Finding) for f in r.findings)
    d = r.to_dict()
    assert list(d) == ["n_images", "classes", "unreadable", "findings", "data", "n_readable", "splits", "skipped",
                       "checks", "checks_run", "checks_not_run", "attributes", "sideways", "seconds", "timings",
                       "content", "counts"]
    assert d["findings"] == [f.to_dict() for f in r.findings] == r["findings"] and json.loads(json.dumps(d)) == d
    r.report = "audit.html"
    assert r.to_dict()["report"] == "audit.html" and list(r.to_dict())[-1] == "report"


@pytest.mark.slow
def test_phone_photo_facts_are_recorded_by_content(tmp_path):
    """A sideways-stored phone photo's facts come back from the cache exactly (tuples, tags, None)."""
    data = af.make_dataset(tmp_path / "d", n_per_class=2, orientation=6)
    paths = [str(p) for p in sorted(data.rglob("*.jpg"))]
    shas = [files.file_sha256(p) for p in paths]
    with KnownFiles(tmp_path / "c") as k1:
        read = k1.facts(paths, shas)
    with KnownFiles(tmp_path / "c") as k2:
        again = k2.facts(paths, shas)
        assert k2.counts.described == 0
    assert [f.to_dict() for f in again] == [f.to_dict() for f in read]
    assert os.path.exists(Path(tmp_path / "c" / "embeddings.sqlite3"))


def test_the_audit_keeps_facts_in_columns_that_give_the_objects_back(tmp_path):
    from upright.audit.table import FactsTable, VectorFile
    from upright.metadata import describe

    data = af.messy(af.camera_leak(tmp_path / "d", n=4))
    facts = [describe(p) for p in sorted(data.rglob("*.jpg"))]
    table = FactsTable(facts[:5])
    table.extend(facts[5:])
    assert len(table) == len(facts) and [table[i] for i in range(len(facts))] == facts
    assert list(table.column("make")) == [f.make for f in facts]
    sizes = table.column("upright_size")
    assert [None if s[0] != s[0] else (int(s[0]), int(s[1])) for s in sizes] == [f.upright_size for f in facts]
    import numpy as np

    vecs = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    vf = VectorFile(5, ("id", "r90"), 3, tmp_path)
    vf.write(0, vecs[:2])
    vf.write(2, vecs[2:])
    assert np.array_equal(vf.view("r90"), vecs[:, 1])
    assert np.array_equal(np.concatenate([b for _, b in vf.blocks(("r90", "id"), size=2)]), vecs[:, ::-1])
    vf.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".upright-vectors")]  # an unnamed file


def test_the_audit_writes_only_the_rows_of_files_that_decode_in_order(tmp_path, monkeypatch):
    """Files that fail while embedding are left out as the rows are written (no second copy):
    the vector file holds the good files' vectors in order, across chunks, and the reasons."""
    import numpy as np

    import upright.pipeline.embed as embed
    from upright.audit import run
    from upright.pipeline.embed import Embeddings

    from upright import backbones

    n, variants, dim = 11, ("id", "r90"), backbones.spec(backbones.DEFAULT).dim
    every = np.random.default_rng(0).normal(size=(n, len(variants), dim)).astype(np.float32)
    bad = {0: "truncated image data", 4: "not an image", 5: "corrupt", 10: "0 bytes"}
    paths = [f"/x/{i}.jpg" for i in range(n)]

    def fake(part, **kw):
        idx = [int(p.rsplit("/", 1)[1][:-4]) for p in part]
        vecs = every[idx].copy()
        errors = {j: bad[i] for j, i in enumerate(idx) if i in bad}
        vecs[list(errors)] = np.nan
        return Embeddings(vecs, np.array([j not in errors for j in range(len(idx))]), errors, variants)

    monkeypatch.setattr(embed, "embed_paths", fake)
    monkeypatch.setattr(run, "EMBED_CHUNK", 4)  # chunks [0-3] [4-7] [8-10]: failures in each
    found = run.embed_readable(paths, [None] * n, np.arange(n), variants, cache_dir=tmp_path)
    good = [i for i in range(n) if i not in bad]
    try:
        assert found.vectors.n == len(good) and found.vectors.stride == n
        assert np.array_equal(found.vectors.view("r90"), every[good, 1])
        assert np.array_equal(np.concatenate([b for _, b in found.vectors.blocks(variants, size=3)]), every[good])
        assert found.unreadable == {paths[i]: why for i, why in sorted(bad.items())}
    finally:
        found.vectors.close()

import pytest
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np

from upright.pipeline import embed
from upright.cache import DB_NAME, EmbeddingCache, default_cache_dir, resolve_cache_dir
from fixtures import SLOW_RUNNER, make_dataset


def test_cache_dir_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("UPRIGHT_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert resolve_cache_dir(tmp_path / "flag") == tmp_path / "flag"  # --cache wins
    monkeypatch.delenv("UPRIGHT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "upright"


def test_roundtrip_and_two_connections(tmp_path):
    a, b = EmbeddingCache(tmp_path), EmbeddingCache(tmp_path)
    v = np.arange(4, dtype=np.float32)
    a.put_many([("s1", "id", v)], "m", True)
    got = b.get_many(["s1", "s2"], "m", ["id", "flip"], True)
    assert list(got) == [("s1", "id")] and np.array_equal(got[("s1", "id")], v)
    assert b.get_many(["s1"], "m", ["id"], False) == {}  # orientation policy is in the key
    a.close(), b.close()


def test_hit_does_not_decode(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "d", n_per_class=3, classes=("a", "b"))
    paths = sorted(data.rglob("*.jpg"))
    cache = tmp_path / "c"
    first = embed.embed_paths(paths, variants=("id", "r90"), cache_dir=cache, progress=False, workers=0)
    assert first.ok.all() and first.decoded == len(paths)
    calls = []
    from upright.pipeline import shard

    real = shard.load_canvas
    monkeypatch.setattr(shard, "load_canvas", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = embed.embed_paths(paths, variants=("id", "r90"), cache_dir=cache, progress=False, workers=0)
    assert calls == [] and again.hits == len(paths)
    assert np.array_equal(again.vectors, first.vectors)
    # a new variant is a miss for that variant only; the others come from the cache
    more = embed.embed_paths(paths, variants=("id", "flip"), cache_dir=cache, progress=False, workers=0)
    assert len(calls) == len(paths)
    assert np.array_equal(more.vectors[:, 0], first.vectors[:, 0])
    # stored pixels are a different key
    embed.embed_paths(paths[:1], orient=False, cache_dir=cache, progress=False, workers=0)
    assert len(calls) == len(paths) + 1


SCRIPT = SLOW_RUNNER + """
shard.BATCH = 4
paths = sys.argv[2:]
embed.embed_paths(paths, cache_dir=sys.argv[1], progress=False, workers=0)
print('done', flush=True)
"""


@pytest.mark.slow
def test_kill_midway_keeps_finished_batches(tmp_path):
    data = make_dataset(tmp_path / "d", n_per_class=10, classes=("a", "b"))
    paths = [str(p) for p in sorted(data.rglob("*.jpg"))]
    cache = tmp_path / "c"
    embed.embed_paths(paths[:1], cache_dir=cache, progress=False, workers=0)  # export ONNX first
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(cache), *paths], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seen = 0
    deadline = time.time() + 60
    while seen < 2 and time.time() < deadline:
        line = proc.stdout.readline()
        seen += line.startswith("batch")
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen >= 2
    db = sqlite3.connect(str(cache / DB_NAME))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n_rows = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    db.close()
    assert 1 + 4 <= n_rows < len(paths)  # finished batches kept, the run did not finish
    resumed = embed.embed_paths(paths, cache_dir=cache, progress=False, workers=0)
    assert resumed.ok.all()
    assert resumed.hits == n_rows and resumed.decoded == len(paths) - n_rows

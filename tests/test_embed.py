"""`upright embed` on the local engine: the Parquet rows, reuse on a re-run, a killed run
resuming, unreadable files listed; and the ONNX Runtime provider choice (faked lists)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fixtures import SLOW_RUNNER, make_dataset
from upright import backbones
from upright.pipeline.stores import COLUMNS, read_rows
from upright.errors import UprightError
from upright.pipeline.embed import embed_paths

DIM = backbones.spec(backbones.DEFAULT).dim


@pytest.fixture
def photos(tmp_path):
    data = make_dataset(tmp_path / "data", n_per_class=3, classes=("cat", "dog"))
    (data / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    shutil.copy(data / "cat" / "cat_000.jpg", data / "dog" / "copy_of_cat.jpg")  # same content, other label
    return data


def rows_by_key(out):
    t = read_rows(out)
    return {(p, v): (sha, lab, split, bb, np.asarray(e, np.float32))
            for p, sha, lab, split, bb, v, e in zip(*(t.column(c).to_pylist() for c in COLUMNS))}


def test_embed_writes_one_row_per_photo_and_reuses_them(cli, photos, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = cli("embed", photos, "-o", out, "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert {"n", "embedded", "reused", "out", "engine", "seconds"} <= set(res)
    assert (res["n"], res["embedded"], res["reused"], res["engine"]) == (8, 7, 0, "local")
    assert [u["path"] for u in res["unreadable"]] == [str(photos / "dog" / "broken.jpg")]
    assert "\n" not in res["unreadable"][0]["reason"]

    table = read_rows(out)
    assert table.schema.names == list(COLUMNS)
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    rows = rows_by_key(out)
    assert len(rows) == 7 and {v for _, v in rows} == {"id"}
    cat0 = rows[(str(photos / "cat" / "cat_000.jpg"), "id")]
    copy = rows[(str(photos / "dog" / "copy_of_cat.jpg"), "id")]
    assert cat0[0] == copy[0] and (cat0[1], copy[1]) == ("cat", "dog") and cat0[4].shape == (DIM,)
    assert np.array_equal(cat0[4], copy[4]) and cat0[3] == backbones.DEFAULT and cat0[2] in ("train", "val")
    # the same vectors as the cached path train and audit use
    paths = sorted(p for p, _ in rows)
    ref = embed_paths(paths, progress=False, workers=0)
    assert np.abs(ref.vectors[:, 0] - np.stack([rows[(p, "id")][4] for p in paths])).max() < 1e-4

    code, stdout, _ = cli("embed", photos, "-o", out, "--json")  # a re-run reuses every row
    again = json.loads(stdout)
    assert (again["embedded"], again["reused"], again["rows_written"]) == (0, 7, 0)
    assert len(again["unreadable"]) == 1  # still listed, still not a row

    # a new view: only the missing rows are made, the old ones stay
    code, stdout, _ = cli("embed", photos, "-o", out, "--augment", "flip", "--json")
    flip = json.loads(stdout)
    assert (flip["embedded"], flip["reused"], flip["rows_written"]) == (7, 0, 7)
    both = rows_by_key(out)
    assert len(both) == 14 and all(np.array_equal(both[k][4], rows[k][4]) for k in rows)


def test_embed_usage_errors_are_one_line(cli, photos, tmp_path):
    code, _, err = cli("embed", photos, "-o", tmp_path / "o", "--ray-address", "127.0.0.1:1")
    assert code == 2 and "--ray-address goes with --engine ray" in err and err.count("\n") == 1
    (tmp_path / "file").write_text("x")
    code, _, err = cli("embed", photos, "-o", tmp_path / "file")
    assert code == 2 and "not a folder" in err


def test_provider_choice():
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    cpu = ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert backbones.choose_providers(gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # no flag needed
    assert backbones.choose_providers(gpu, "cpu") == ["CPUExecutionProvider"]
    assert backbones.choose_providers(cpu) == ["CPUExecutionProvider"]
    assert backbones.choose_providers(gpu, "cuda")[0] == "CUDAExecutionProvider"
    with pytest.raises(UprightError, match="onnxruntime-gpu"):
        backbones.choose_providers(cpu, "cuda")
    with pytest.raises(UprightError, match="unknown --device"):
        backbones.choose_providers(cpu, "tpu")


KILLED = SLOW_RUNNER + """
from upright.pipeline import stores
from upright.embedding.verb import run_embed
shard.BATCH = stores.SHARD_ROWS = 2
run_embed(sys.argv[1], sys.argv[2], progress=False, workers=0)
print("finished", flush=True)
"""


@pytest.mark.slow
def test_killed_embed_resumes(photos, tmp_path):
    out = tmp_path / "out"
    embed_paths([photos / "cat" / "cat_000.jpg"], progress=False, workers=0)  # export the ONNX graph first
    src = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(photos), str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")})
    deadline = time.time() + 120
    while len(list(out.glob("part-*.parquet"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = read_rows(out).num_rows
    assert 4 <= kept < 7  # whole shards kept, the run did not finish
    from upright.embedding.verb import run_embed

    res = run_embed(photos, out, progress=False, workers=0)
    assert (res["reused"], res["embedded"]) == (kept, 7 - kept)
    assert sorted(rows_by_key(out)) == sorted((str(p), "id") for p in photos.rglob("*.jpg") if p.name != "broken.jpg")


def test_ray_that_cannot_start_is_one_line(cli, photos, tmp_path):
    """A dead --ray-address fails in seconds with one line (Ray alone retries for minutes);
    nothing but a refused connection on loopback, no Ray started."""
    code, _, err = cli("embed", photos, "-o", tmp_path / "o", "--engine", "ray", "--ray-address", "127.0.0.1:1")
    last = err.strip().splitlines()[-1]  # (after the progress bar's line)
    assert code == 2 and "Traceback" not in err and last.startswith("upright: error: ")
    assert "Ray did not start at 127.0.0.1:1: nothing answers there" in last or "needs Ray Data" in last


def test_embed_batch_takes_bytes_or_paths(photos):
    """The pure batch function: bytes and paths give the same vectors; a bad one is NaN with a reason."""
    from upright.embedding import Embedder, Task, embed_batch
    from upright.backbones import get_runner

    path = photos / "cat" / "cat_001.jpg"
    emb = Embedder(Task(device="cpu"), threads=1)
    assert emb.runner.providers == ["CPUExecutionProvider"] and get_runner(threads=1, device="cpu") is emb.runner
    vecs, errors = embed_batch([path, path.read_bytes(), b"not an image"], emb, variants=("id", "r90"))
    assert vecs.shape == (3, 2, DIM) and list(errors) == [2] and np.isnan(vecs[2]).all()
    assert np.array_equal(vecs[0], vecs[1]) and np.abs(vecs[0, 0] - vecs[0, 1]).mean() > 1e-3
    ref = embed_paths([path], variants=("id", "r90"), progress=False, workers=0)
    assert np.abs(ref.vectors[0] - vecs[0]).max() < 1e-4

"""Run by tests/test_ray.py inside a fresh network namespace (loopback only): one Ray session
(2 CPUs, no dashboard, a small object store) for every Ray check, local runs beside it.
Prints one JSON line of what it measured; the outer test asserts on it.

Usage: python tests/ray_inner.py WORKDIR
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures import make_dataset  # noqa: E402

from upright.audit import run_audit  # noqa: E402
from upright.cli import main  # noqa: E402
from upright.pipeline.ray_engine import ray_session  # noqa: E402
from upright.pipeline.stores import COLUMNS, read_rows  # noqa: E402
from upright.embedding.verb import run_embed  # noqa: E402
from upright.train import train_dataset  # noqa: E402


def rows(out):
    t = read_rows(out)
    return {(p, v): (sha, lab, split, np.asarray(e, np.float32))
            for p, sha, lab, split, _, v, e in zip(*(t.column(c).to_pylist() for c in COLUMNS))}


def cli_json(*args):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            assert not exc.code, exc.code
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def findings(audit):
    return sorted((f["kind"], f["severity"], tuple(sorted(f["paths"]))) for f in audit["findings"])


def main_inner(work: Path) -> dict:
    data = make_dataset(work / "data", n_per_class=7, classes=("cat", "dog"), orientation={"dog": 6})
    (data / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    got: dict = {}
    with ray_session(num_cpus=2) as ray:
        got["ray_cpus"] = ray.cluster_resources().get("CPU")
        local = run_embed(data, work / "local", progress=False, workers=0, shard_rows=4)
        on_ray = cli_json("embed", data, "-o", work / "ray", "--engine", "ray", "--json")
        a, b = rows(work / "local"), rows(work / "ray")
        got["summary"] = {k: (local[k], on_ray[k]) for k in ("n", "embedded", "reused", "engine")}
        got["unreadable"] = [u["path"] for u in on_ray["unreadable"]]
        got["same_keys"] = sorted(a) == sorted(b) and all(a[k][:3] == b[k][:3] for k in a)
        got["min_cosine"] = min(float(a[k][3] @ b[k][3] / np.linalg.norm(a[k][3]) / np.linalg.norm(b[k][3]))
                                for k in a)
        again = run_embed(data, work / "ray", engine="ray", progress=False)
        got["rerun"] = (again["embedded"], again["reused"])
        # a lost shard is made again (on Ray), the rest reused
        import pyarrow.parquet as pq

        before = rows(work / "local")
        lost = sorted((work / "local").glob("part-*.parquet"))[0]
        n_lost = pq.read_table(lost).num_rows
        lost.unlink()
        resumed = run_embed(data, work / "local", engine="ray", progress=False)
        after = rows(work / "local")
        got["resume"] = {"lost": n_lost, "embedded": resumed["embedded"], "reused": resumed["reused"],
                         "same_keys": sorted(after) == sorted(before),
                         "max_diff": float(max(np.abs(after[k][3] - before[k][3]).max() for k in before))}

        # views off centre (the 10 crops of --preset accurate) are cut from the resized picture on Ray too
        from upright.pipeline.embed import embed_paths
        from upright.views import TEN_CROPS

        some = sorted(str(p) for p in data.rglob("*.jpg") if p.name != "broken.jpg")[:3]
        crops = {e: embed_paths(some, variants=TEN_CROPS, engine=e, cache_dir=work / f"crops-{e}", progress=False)
                 for e in ("local", "ray")}
        got["ten_crops_max_diff"] = float(np.abs(crops["local"].vectors - crops["ray"].vectors).max())
        got["ten_crops_distinct"] = bool(np.abs(crops["ray"].vectors[:, 0] - crops["ray"].vectors[:, 1]).max() > 1e-3)
        trains = {}
        for engine in ("local", "ray"):
            r = train_dataset(data, work / f"model-{engine}", cache_dir=work / f"cache-{engine}", progress=False,
                              engine=engine, report=False).to_dict()
            trains[engine] = {k: r[k] for k in ("val_accuracy", "l2", "test_views", "n_train", "n_val", "decoded")}
        got["train"] = trains
        from upright.model import load_model

        la = load_model(work / "model-local", cache_dir=work / "cache-local")
        lb = load_model(work / "model-ray", cache_dir=work / "cache-ray")
        photos = sorted(str(p) for p in data.rglob("*.jpg") if p.name != "broken.jpg")
        pa, pb = la.predict(photos), lb.predict(photos)
        got["train_same_predictions"] = [x.predictions[0][0] for x in pa] == [x.predictions[0][0] for x in pb]
        got["train_max_weight_diff"] = float(np.abs(la.weight - lb.weight).max())
        audits = {e: run_audit(data, cache_dir=work / f"audit-{e}", progress=False, engine=e) for e in ("local", "ray")}
        got["audit_same"] = (findings(audits["local"]) == findings(audits["ray"])
                             and audits["local"]["unreadable"] == audits["ray"]["unreadable"])
        got["audit_findings"] = len(audits["ray"]["findings"])
    got["ray_shut_down"] = not ray.is_initialized()
    return got


if __name__ == "__main__":
    print(json.dumps(main_inner(Path(sys.argv[1]))))

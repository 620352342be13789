"""Scale on one machine: `upright embed` (local engine vs Ray Data, the ONNX Runtime ceiling,
peak memory at 1k vs 10k photos, a paper estimate of a 1M-photo run), and train and audit
at 500 / 10,000 / 50,000 small photos and 2,000 phone photos (wall time, peak RSS, ratios).

    .venv/bin/python bench/scale.py                  # the full run (about an hour on 2 cores the first time)
    .venv/bin/python bench/scale.py --quick          # a smoke test: tiny, no Ray
    .venv/bin/python bench/scale.py --only sets --sets small:500,phone:2000 --src OLD/src   # before / after
    .venv/bin/python bench/scale.py --rss 1000,10000 --speed 500 --out bench/scale.md

Photos: distinct variations of ../shared/data/flowers-500 (a random crop of 80-100 % and a
small colour shift per copy, re-encoded as JPEG, five classes), written outside the repo to
/tmp/upright-scale (kept between runs; made once). Synthetic pictures when flowers-500 is absent.

`upright embed`, same run, same photos:
  local     run_embed(engine="local") into a fresh folder: decode pool + ONNX Runtime here
  ray       run_embed(engine="ray") on a local Ray instance with num_cpus = the cores
            (inside `unshare -n`: a network namespace with loopback alone; Ray binds every interface)
  ceiling   the Embedder alone on crops decoded beforehand (ONNX Runtime, every core): the
            speed no engine can beat on this machine
  rss       peak RSS of a fresh process running `embed` (local engine) at each size, plus the
            peak of its decode workers: flat in the data-set size when the 10k/1k ratio is near 1
Speeds are images/s over wall time, ratios against the ceiling and the local engine.

train and audit (--sets; the sets are described in bench/_scale_sets.py), each step a fresh
process through the Python API, its wall time and peak RSS (getrusage), with the load average:
  train, cold           an empty cache (but the exported ONNX graph): every photo embedded
  train, cold path      seeded sets: 1,000 photos' embeddings removed first, so the run holds what a
                        cold one holds (ONNX Runtime, decode workers, every vector) at a fraction of its time
  select_head alone     the head's choice of l2 and test views on the cached embeddings (its l2, accuracy)
  audit --metadata-only, cold    on an empty cache: every file hashed, every header read
  train, warm           every embedding cached and a train before it: report included
  train, warm, --no-report       the same without MODEL/report.html
  audit --metadata-only the headers' step after a train
  audit (full)          first (embeds the turns the train did not: every photo's, or on a seeded set
                        those of the photos the cold path embedded), then warm
Sets above --seeded-above photos get a seeded cache (bench/_scale_sets.py) instead of a real
embedding run: their warm rows read it as they read real embeddings; no cold row for them.
--src DIR runs every train/audit row again with the package in DIR (e.g. an older checkout's
src/), in the same run: "before" and "after" on one machine, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

FLOWERS = ROOT.parent / "shared" / "data" / "flowers-500"
WORK = Path(os.environ.get("UPRIGHT_SCALE_DIR", "/tmp/upright-scale"))
DEFAULT_SETS = "flowers:500,small:500,small:10000,small:50000,phone:2000"
DEFAULT_COLD = "small:500,phone:2000"
COLD_PATH_PHOTOS = 1000  # seeded sets: photos whose embeddings are removed before the first train

RSS_CHILD = r"""
import json, resource, sys, time
from upright.embedding.verb import run_embed
t = time.perf_counter()
r = run_embed(sys.argv[1], sys.argv[2], engine="local", progress=False)
print(json.dumps({"n": r["n"], "embedded": r["embedded"], "seconds": time.perf_counter() - t,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def make_photos(folder: Path, n: int, seed: int = 0) -> tuple[Path, str]:
    """n distinct photos in class folders (made once, reused); returns (folder, origin)."""
    from PIL import Image

    from upright.imaging import open_upright

    done = folder / ".complete"
    sources = sorted(FLOWERS.rglob("*.jpg")) if FLOWERS.is_dir() else []
    origin = ("flowers-500 variations (crop 80-100 %, colour shift)" if sources
              else "synthetic gradients (flowers-500 absent)")
    if done.is_file() and done.read_text() == str(n):
        return folder, origin
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}
    for i in range(n):
        if sources:
            src = sources[i % len(sources)]
            label = src.parent.name
            if src not in cache:
                cache[src] = np.asarray(open_upright(src))
            a = cache[src]
        else:
            label = f"c{i % 5}"
            y, x = np.mgrid[0:300, 0:400]
            a = np.stack([x * 255 // 400, y * 255 // 300, (x + y + 7 * i) % 256], -1).astype(np.uint8)
        h, w = a.shape[:2]
        f = rng.uniform(0.8, 1.0)
        ch, cw = max(32, int(h * f)), max(32, int(w * f))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = a[top:top + ch, left:left + cw].astype(np.int16) + rng.integers(-12, 13, 3)
        out = folder / label / f"v{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    done.write_text(str(n))
    return folder, origin


def subset(photos: Path, n: int) -> Path:
    """The first n photos of `photos` as hard links in their own tree (same bytes, no copy)."""
    folder = photos.parent / f"{photos.name}-first{n}"
    done = folder / ".complete"
    if done.is_file() and done.read_text() == str(n):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    files = sorted(photos.rglob("*.jpg"), key=lambda p: p.name)[:n]
    for f in files:
        dst = folder / f.parent.name / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, dst)
    done.write_text(str(n))
    return folder


def timed_embed(data: Path, engine: str, out: Path) -> dict:
    from upright.embedding.verb import run_embed

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    r = run_embed(data, out, engine=engine, progress=False)
    s = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return {"n": r["n"], "embedded": r["embedded"], "seconds": round(s, 2), "ips": round(r["embedded"] / s, 1)}


def ceiling(data: Path) -> dict:
    """ONNX Runtime alone on pre-decoded crops (every core): images/s."""
    from upright.pipeline.shard import Embedder, Job, Task, read_shard

    files = sorted(data.rglob("*.jpg"))
    crops = read_shard([Job(i, f, ("id",)) for i, f in enumerate(files)], Task().contract).pixels
    emb = Embedder(Task())
    emb(crops[:32])  # warm up
    best = 0.0
    for _ in range(2):
        t = time.perf_counter()
        emb(crops)
        best = max(best, len(crops) / (time.perf_counter() - t))
    return {"n": len(crops), "ips": round(best, 1)}


def rss(data: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    res = subprocess.run([sys.executable, "-c", RSS_CHILD, str(data), str(out)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    shutil.rmtree(out, ignore_errors=True)
    if res.returncode != 0:
        raise SystemExit(f"rss run failed: {res.stderr[-1500:]}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}


def in_namespace() -> bool:
    """True when this process sees no network interface but loopback."""
    try:
        return sorted(os.listdir("/sys/class/net")) == ["lo"]
    except OSError:
        return False


def ray_figures(data: Path, out: Path) -> dict:
    """Ray's start, then two runs in that one session: the first pays for Ray Data's first
    plan and actors; the second is what a long run sees (actors start again per run)."""
    from upright.pipeline.ray_engine import ray_session

    t = time.perf_counter()
    with ray_session():
        start = time.perf_counter() - t
        first = timed_embed(data, "ray", out)
        again = timed_embed(data, "ray", out)
    total = start + first["seconds"]
    return {**first, "seconds": round(total, 2), "ips": round(first["embedded"] / total, 1),
            "start_s": round(start, 2), "first": first, "again": again}


def ray_in_namespace(data: Path, out: Path) -> dict | str:
    """The Ray figures, measured in a child inside a fresh loopback-only namespace."""
    if in_namespace():
        return ray_figures(data, out)
    if not shutil.which("unshare"):
        return "unshare not found: Ray not measured"
    code = ("import json, sys; sys.path[:0] = sys.argv[3:5]; import scale; "
            "print(json.dumps(scale.ray_figures(__import__('pathlib').Path(sys.argv[1]), "
            "__import__('pathlib').Path(sys.argv[2]))))")
    res = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1" "$2" "$3" "$4" "$5"',
                          sys.executable, code, str(data), str(out), str(ROOT / "bench"), str(ROOT / "src")],
                         capture_output=True, text=True)
    if res.returncode != 0:
        return f"Ray run failed: {(res.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def estimate(local_ips: float, cores: int, ray_ratio: float | None, nodes=(1, 8, 32, 128), node_cores: int = 16) -> list[str]:
    """A paper estimate of 1M photos on N nodes from the measured per-core rate."""
    per_core = local_ips / cores
    eff = ray_ratio if ray_ratio else 1.0
    lines = [f"per core: {per_core:.1f} images/s measured here; Ray efficiency {eff:.2f} of the local engine"
             f"{'' if ray_ratio else ' (Ray not measured: 1.0 assumed)'}; {node_cores}-core CPU nodes assumed, "
             "linear in cores (decode and ONNX Runtime are per-photo work, no shared state but the driver)"]
    for n in nodes:
        hours = 1e6 / (per_core * node_cores * n * eff) / 3600
        lines.append(f"  {n:>4} node(s) x {node_cores} cores: {hours:6.2f} h")
    lines.append("  output: 1M x 1280 float32 = 5.1 GB of Parquet (one row per photo, --augment none)")
    return lines


# -- train and audit at scale (issue 22's rows): one fresh process per figure ------------------
ROWS = (("train_cold", "train, cold (empty cache)"),
        ("train_cold_path", "train, cold path: 1,000 photos to embed, the rest cached"), ("audit_metadata_only_cold", "audit --metadata-only, cold (empty cache)"),
        ("train_warm", "train, warm (report included)"),
        ("train_warm_no_report", "train, warm, --no-report"),
        ("select_head", "select_head alone (its l2, held-out accuracy)"), ("audit_metadata_only", "audit --metadata-only"),
        ("audit_full_first", "audit (full), first: embeds the turns"), ("audit_full_warm", "audit (full), warm"))


def parse_sets(text: str) -> list[tuple[str, int]]:
    """"small:500,phone:2000" -> [("small", 500), ("phone", 2000)]; flowers:500 is flowers-500 itself."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, n = part.partition(":")
        if kind not in ("small", "phone", "flowers") or not n.isdigit():
            raise SystemExit(f"--sets: '{part}' is not small:N, phone:N or flowers:500")
        out.append((kind, int(n)))
    return out


def _fresh_cache(cache: Path, work: Path) -> None:
    """An empty cache, but with the exported ONNX graph (exported once per machine, not per train)."""
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    onnx = work / "onnx-graphs"
    if onnx.is_dir():
        shutil.copytree(onnx, cache / "onnx")


def _keep_onnx(cache: Path, work: Path) -> None:
    if (cache / "onnx").is_dir() and not (work / "onnx-graphs").is_dir():
        shutil.copytree(cache / "onnx", work / "onnx-graphs")


def measure_set(kind: str, n: int, data: Path, work: Path, version: str, src: Path, seeded: bool,
                cold: bool, full_audit: bool = True) -> dict:
    """Every row for one set and one source tree (see ROWS), each in a fresh process."""
    import _scale_sets as sets

    name = f"{kind}{n}"
    model = work / f"model-{name}-{version}"
    rows: dict = {}
    if seeded:
        cache = work / f"cache-{name}-seeded"
        cache.mkdir(parents=True, exist_ok=True)
        sets.seed_cache(data, cache, base=min(500, max(8, n // 4)))
    else:
        cache = work / f"cache-{name}-{version}"
    if cold and not seeded:
        _fresh_cache(cache, work)
        rows["audit_metadata_only_cold"] = sets.run_child(src, verb="audit", data=data, cache=cache, content=False)
        _fresh_cache(cache, work)
        rows["train_cold"] = sets.run_child(src, verb="train", data=data, out=model, cache=cache, report=True)
        _keep_onnx(cache, work)
    elif seeded and n >= 2 * COLD_PATH_PHOTOS:  # the cold path's memory: ONNX Runtime and every vector
        sets.forget(data, cache, COLD_PATH_PHOTOS)
        rows["train_cold_path"] = sets.run_child(src, verb="train", data=data, out=model, cache=cache, report=True)
    else:  # a first train records what a warm one reuses
        sets.run_child(src, verb="train", data=data, out=model, cache=cache, report=True)
    rows["train_warm"] = sets.run_child(src, verb="train", data=data, out=model, cache=cache, report=True)
    rows["train_warm_no_report"] = sets.run_child(src, verb="train", data=data, out=model, cache=cache,
                                                  report=False)
    rows["select_head"] = sets.run_child(src, verb="select", data=data, cache=cache)
    rows["audit_metadata_only"] = sets.run_child(src, verb="audit", data=data, cache=cache, content=False)
    if full_audit:  # the first embeds the turns a train does not (seeded sets: of the photos the cold path embedded)
        rows["audit_full_first"] = sets.run_child(src, verb="audit", data=data, cache=cache, content=True)
    if full_audit:
        rows["audit_full_warm"] = sets.run_child(src, verb="audit", data=data, cache=cache, content=True)
    shutil.rmtree(model, ignore_errors=True)
    return rows


def train_audit_rows(a, work: Path) -> dict:
    """{version: {set: {row: figures}}} plus the sets' descriptions."""
    import _scale_sets as sets

    versions = {"this tree": ROOT / "src"}
    if a.src:
        versions = {"before (--src)": Path(a.src).resolve(), **versions}
    cold = {f"{k}:{n}" for k, n in parse_sets(a.cold)}
    made, out = {}, {v: {} for v in versions}
    for kind, n in parse_sets(a.sets):
        if kind == "flowers" and not sets.FLOWERS.is_dir():
            print(f"scale: {sets.FLOWERS} absent: flowers:{n} left out", file=sys.stderr)
            continue
        data, what = ((sets.FLOWERS, "flowers-500 itself (the shared folder)") if kind == "flowers"
                      else sets.make_set(WORK / "sets" / f"{kind}-{n}", kind, n))
        made[f"{kind}:{n}"] = what
        for v, src in versions.items():
            print(f"scale: {kind}:{n} with {v} ...", file=sys.stderr, flush=True)
            out[v][f"{kind}:{n}"] = measure_set(kind, n, data, work, v.split()[0], src, n > a.seeded_above,
                                                f"{kind}:{n}" in cold,
                                                full_audit=not v.startswith("before") or n <= a.src_full_audit_max)
    return {"sets": made, "versions": out, "seeded_above": a.seeded_above}


def _cell(r: dict | None) -> str:
    if not r:
        return "-"
    if "accuracy" in r:  # select_head
        return f"{r['seconds']:.1f} s, l2 {r['l2']:g}, {r['accuracy']:.3f} (load {r['load']:.1f})"
    return f"{r['seconds']:.1f} s, {r['rss_mb']:.0f} MB (load {r['load']:.1f})"


def train_audit_lines(res: dict) -> list[str]:
    lines = ["", "## train and audit at scale (issue 22): wall time, peak RSS of the main process "
                 "(decode workers apart), load average", ""]
    for name, what in res["sets"].items():
        lines.append(f"- {name}: {what}" + (" (cache seeded: see bench/_scale_sets.py)"
                                             if int(name.split(':')[1]) > res["seeded_above"] else ""))
    lines.append("- select_head alone: the l2 and test views chosen on the cached embeddings of --augment flip "
                 "(seeded sets: the accuracy of a seeded cache means nothing; the time does)")
    for version, by_set in res["versions"].items():
        names = list(by_set)
        lines += ["", f"### {version}", "", "| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for key, label in ROWS:
            if any(key in by_set[s] for s in names):
                lines.append(f"| {label} | " + " | ".join(_cell(by_set[s].get(key)) for s in names) + " |")
        lines.append("")
        for s in names:
            r = by_set[s]
            if "train_cold" in r:
                cold = r["train_cold"]["seconds"]
                parts = [f"warm train / cold train {r['train_warm']['seconds'] / cold:.3f}",
                         f"audit --metadata-only / cold train {r['audit_metadata_only']['seconds'] / cold:.3f}"]
                if "audit_metadata_only_cold" in r:
                    parts.append(f"(on an empty cache {r['audit_metadata_only_cold']['seconds'] / cold:.3f})")
                lines.append(f"ratios, {s}: " + ", ".join(parts))
    return lines


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke run: 24 photos, RSS at 12 vs 24, no Ray; sets small:48 (seeded) and phone:10")
    ap.add_argument("--speed", type=int, default=400, help="photos for the local / Ray / ceiling figures")
    ap.add_argument("--rss", default="1000,10000", help="sizes for the peak-RSS runs, comma-separated (none: skip)")
    ap.add_argument("--no-ray", action="store_true", help="leave Ray out")
    ap.add_argument("--sets", default=DEFAULT_SETS,
                    help=f"train/audit rows: small:N and phone:N sets, comma-separated (default {DEFAULT_SETS}; "
                         "none: skip)")
    ap.add_argument("--cold", default=DEFAULT_COLD, help=f"sets whose cold train is measured (default {DEFAULT_COLD})")
    ap.add_argument("--seeded-above", type=int, default=5000,
                    help="sets bigger than this get a seeded cache instead of a real embedding run (default 5000)")
    ap.add_argument("--src", help="also run the train/audit rows against this source tree ('before')")
    ap.add_argument("--src-full-audit-max", type=int, default=10000,
                    help="largest set --src runs the full audit on (default 10000: an older tree may need "
                         "several GB beyond)")
    ap.add_argument("--only", choices=("embed", "sets"), help="run one part alone")
    ap.add_argument("--out", type=Path, help="also write the figures (markdown) here")
    a = ap.parse_args(argv)
    if a.quick:
        a.speed, a.rss, a.no_ray = 24, "12,24", True
        a.sets, a.cold, a.seeded_above = "small:48,phone:10", "phone:10", 24
    if a.sets == "none":
        a.only = "embed"
    work = WORK / ("quick" if a.quick else "full")
    os.environ.setdefault("UPRIGHT_CACHE_DIR", str(WORK / "cache"))
    out: dict = {"machine": machine("onnxruntime", "ray", "pyarrow", "numpy")}
    text = []
    if a.only != "sets":
        out.update(embed_rows(a, work))
        text.append(report(out, a.speed, out["sizes"]))
    if a.only != "embed":
        out["train_audit"] = train_audit_rows(a, work)
        lines = train_audit_lines(out["train_audit"])
        text.append("\n".join(lines if text else ["# bench/scale.py: train and audit at scale", "",
                                                   f"machine: {out['machine']}", *lines]))
    print("\n".join(text))
    if a.out:
        a.out.write_text("\n".join(text) + "\n")
    return out


def embed_rows(a, work: Path) -> dict:
    """The `upright embed` figures: local vs Ray vs the ONNX Runtime ceiling, peak RSS by size."""
    sizes = [int(s) for s in a.rss.split(",")] if a.rss != "none" else []
    biggest = max(sizes + [a.speed])
    t0 = time.perf_counter()
    photos, origin = make_photos(work / f"photos-{biggest}", biggest)
    made = time.perf_counter() - t0
    cores = os.cpu_count() or 1
    speed_data = subset(photos, a.speed)
    out: dict = {"photos": origin, "photos_made_s": round(made, 1), "cores": cores, "sizes": sizes}
    from upright.backbones import get_runner

    get_runner()  # the ONNX graph exported before anything is timed
    res = {"local": timed_embed(speed_data, "local", work / "out-local")}
    if not a.no_ray:
        res["ray"] = ray_in_namespace(speed_data, work / "out-ray")
    res["ceiling"] = ceiling(speed_data)
    out["results"] = res
    out["rss"] = {n: rss(subset(photos, n) if n != biggest else photos, work / f"out-rss-{n}") for n in sizes}
    if sizes:
        out["rss_ratio"] = round(out["rss"][sizes[-1]]["rss_mb"] / out["rss"][sizes[0]]["rss_mb"], 3)
    ray = res.get("ray") if isinstance(res.get("ray"), dict) else None
    ratio = round(ray["again"]["ips"] / res["local"]["ips"], 3) if ray else None
    out["ray_vs_local"] = ratio
    out["ray_vs_local_with_start"] = round(ray["ips"] / res["local"]["ips"], 3) if ray else None
    out["local_vs_ceiling"] = round(res["local"]["ips"] / res["ceiling"]["ips"], 3)
    out["estimate"] = estimate(res["local"]["ips"], cores, ratio)
    return out


def report(out: dict, speed: int, sizes: list[int]) -> str:
    r = out["results"]
    lines = ["# bench/scale.py: `upright embed` at scale", "", f"machine: {out['machine']}",
             f"photos: {out['photos']} (made in {out['photos_made_s']} s, kept in {WORK})", "",
             f"## speed, {speed} photos, efficientnet-lite0, --augment none (images/s over wall time)", "",
             "| engine | images/s | seconds | vs ceiling |", "|---|---|---|---|"]
    c = r["ceiling"]["ips"]
    rows = [("local", r["local"])]
    if isinstance(r.get("ray"), dict):
        rows += [(f"ray, with its start ({r['ray']['start_s']} s) and first plan", r["ray"]),
                 ("ray, second run in the same Ray session", r["ray"]["again"])]
    elif r.get("ray") is not None:
        lines.append(f"| ray | - | - | {r['ray']} |")
    for name, v in rows:
        lines.append(f"| {name} | {v['ips']} | {v['seconds']} | {v['ips'] / c:.2f} |")
    lines.append(f"| ONNX Runtime ceiling (pre-decoded crops, {r['ceiling']['n']}) | {c} | - | 1.00 |")
    if out["ray_vs_local"] is not None:
        lines += ["", f"Ray / local: {out['ray_vs_local']} on the second run, {out['ray_vs_local_with_start']} "
                      "with Ray's start-up inside its time"]
    if sizes:
        lines += rss_lines(out, sizes)
    lines += ["", "## paper estimate: 1M photos", "", *out["estimate"]]
    return "\n".join(lines)


def rss_lines(out: dict, sizes: list[int]) -> list[str]:
    lines = ["", "## peak RSS of `embed` (local engine, a fresh process per size)", "",
              "| photos | main process MB | decode workers MB (largest) | seconds |", "|---|---|---|---|"]
    for n in sizes:
        v = out["rss"][n]
        lines.append(f"| {v['n']} | {v['rss_mb']} | {v['workers_rss_mb']} | {v['seconds']:.0f} |")
    lines += ["", f"{sizes[-1]} / {sizes[0]} peak RSS (main process): {out['rss_ratio']}. Most of the main "
              "process's peak is ONNX Runtime's working memory (its arena) for batches of 32 crops, reached "
              "in the first batches (143 MB after the session is made, 537 MB after two batches, measured alone), "
              "the same at any size."]
    return lines


if __name__ == "__main__":
    main()

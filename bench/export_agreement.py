"""Does `upright export --preprocess` (resize, crop and scaling inside the ONNX graph) agree with
`upright predict`? Top-1 agreement and probability differences on real photos.

Photos: the held-out part of flowers-500 (2 in 5 of each class; the model is trained on the
other 3 in 5 here, unless --model is given) and the 18 exif-orientation-examples (1800x1200,
every EXIF orientation). The graph is fed what its contract says: the upright full-resolution
pixels (`upright.open_upright(path)` as uint8 [1, H, W, 3]); predict reads the same files
through its own path (DCT-domain JPEG decode + Pillow bicubic).
Usage: python bench/export_agreement.py [--model DIR | --preset fast|accurate] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine  # noqa: E402


def split_flowers(src: Path, dst: Path) -> Path:
    """dst/train (3 in 5 of each class) and dst/test (the rest), as symlinks."""
    for c in sorted(p for p in src.iterdir() if p.is_dir()):
        for i, f in enumerate(sorted(c.iterdir())):
            d = dst / ("train" if i % 5 < 3 else "test") / c.name
            d.mkdir(parents=True, exist_ok=True)
            (d / f.name).symlink_to(f.resolve())
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--preset", default="fast", choices=("fast", "accurate"),
                    help="the preset of the model trained here (accurate: its 10 crops are cut in the graph)")
    args = ap.parse_args()
    import onnxruntime as ort

    from upright.export import export_onnx
    from upright.imaging import open_upright
    from upright.model import load_model
    from upright.train import train_dataset

    data = Path(args.data)
    if not (data / "flowers-500").is_dir() or not (data / "exif-orientation-examples").is_dir():
        print(f"skipped: flowers-500 and exif-orientation-examples not found under {data}")
        sys.exit(77)
    tmp = Path(tempfile.mkdtemp(prefix="upright-export-agreement-"))
    flowers = split_flowers(data / "flowers-500", tmp / "flowers")
    model_dir = Path(args.model) if args.model else train_dataset(flowers, tmp / "model", progress=False,
                                                                            preset=args.preset).model
    m = load_model(model_dir)
    graph = export_onnx(m, tmp / "pre.onnx", preprocess=True)
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    print(machine("onnxruntime", "pillow", "torch"))
    print(f"model: {m.meta.get('preset', 'fast')} preset, {m.backbone}, test views {'+'.join(m.views)}")
    sets = {"flowers-500 test": sorted((flowers / "test").rglob("*.jpg")),
            "exif-orientation-examples": sorted((data / "exif-orientation-examples").glob("*.jpg"))}
    for name, paths in sets.items():
        want = np.stack([[dict(p.predictions)[lab] for lab in m.labels] for p in m.predict(paths, top_k=99)])
        got = np.stack([session.run(None, {"pixels": np.asarray(open_upright(p))[None]})[0][0] for p in paths])
        diff = np.abs(got - want)
        agree = (got.argmax(1) == want.argmax(1)).mean()
        print(f"{name}: {len(paths)} photos, top-1 agreement {agree:.3f} ({int(agree * len(paths))}/{len(paths)}), "
              f"max |p_graph - p_predict| {diff.max():.4f}, mean {diff.mean():.5f}, "
              f"p95 of per-photo max {np.quantile(diff.max(1), 0.95):.4f}")
        for i in np.flatnonzero(got.argmax(1) != want.argmax(1)):
            top2 = np.sort(want[i])[-2:]
            print(f"  disagrees: {paths[i].name}: predict's top-2 {top2[1]:.3f} vs {top2[0]:.3f} "
                  f"({m.labels[want[i].argmax()]} vs graph's {m.labels[got[i].argmax()]})")


if __name__ == "__main__":
    os.environ.setdefault("UPRIGHT_CACHE_DIR", tempfile.mkdtemp(prefix="upright-bench-cache-"))
    main()

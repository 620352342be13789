"""Which frozen features make the best default? 5-fold CV of the linear head on cached features.

    .venv/bin/python bench/features.py extract efficientnet-lite0 c256_224,c297_260   # -> $OUT/*.npy
    .venv/bin/python bench/features.py extract efficientnet-lite2 c297_260
    .venv/bin/python bench/features.py cv efficientnet-lite0_c256_224_gap \\
        efficientnet-lite0_c297_260_gap+efficientnet-lite2_c297_260_gap

extract: every photo of flowers-500 decoded once (through upright.imaging), then per config
("cR_C": bicubic short side R, centre crop C; "sqS": whole picture squashed to S x S) the id
and flip views through one ONNX graph that returns, from the same forward pass, the
global-average (gap), GeM p=3 (gem) and max (max) pools of the 1280-d head conv, the average
pools of the last block (b320) and of the last 192/176-channel block (b192), and the ImageNet
logits. Saved as $OUT/<backbone>_<config>_<output>.npy, float32 [500, 2, D].

cv: a feature set is files joined by "+" (concatenated), each optionally "@pow" (signed
sqrt) or "@l2". 5 hash folds (the same as bench/train.py --folds 5); on each, the head's l2 is
chosen by 3-fold CV on the training part only (nested, so the test fold never picks it),
trained on id+flip, tested on the mean of id+flip (TRV / TEV env vars: "0" for id only).
The head is upright's own (standardise + multinomial logistic regression by L-BFGS), fitted
exactly in the row space of the training matrix (an SVD) for speed. Set OMP_NUM_THREADS=1 on
a busy 2-core machine: threaded BLAS on tiny matrices is 20x slower there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("DATA", ROOT.parent / "shared" / "data" / "flowers-500"))
OUT = Path(os.environ.get("OUT", "/tmp/upright-features"))
OUTPUTS = ["gap", "gem", "max", "b320", "b192", "logits"]


def extract(name: str, configs: list[str]) -> None:
    import onnxruntime as ort
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    from upright import backbones
    from upright.pipeline.scan import scan
    from upright.imaging import open_image
    from upright.contract import InputContract
    from upright.pipeline.decode import centre_crop, to_input

    base = InputContract.for_backbone(name)

    OUT.mkdir(parents=True, exist_ok=True)
    ds = scan(DATA, 0.2)
    np.save(OUT / "y.npy", np.array([ds.labels.index(r.label) for r in ds.records]))
    (OUT / "shas.json").write_text(json.dumps([r.sha256 for r in ds.records]))
    net = EfficientNet.from_name(name)
    net.load_state_dict(backbones.load_state_dict(name), strict=True)
    net.eval()
    chans = [b._block_args.output_filters for b in net._blocks]
    c192 = max(i for i, c in enumerate(chans) if c == sorted(set(chans))[-2])

    class Multi(torch.nn.Module):
        def forward(self, x):
            x = net._swish(net._bn0(net._conv_stem(x)))
            for i, b in enumerate(net._blocks):
                x = b(x)
                if i == c192:
                    f192 = x
            h = net._swish(net._bn1(net._conv_head(x)))
            gap = h.mean((2, 3))
            gem = h.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
            return gap, gem, h.amax((2, 3)), x.mean((2, 3)), f192.mean((2, 3)), net._fc(gap)

    onnx_path = OUT / f"{name}-multi.onnx"
    if not onnx_path.exists():
        torch.onnx.export(Multi().eval(), (torch.zeros(1, 3, 224, 224),), str(onnx_path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=OUTPUTS,
                          dynamic_axes={"input": {0: "b", 2: "h", 3: "w"}})
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    imgs = [open_image(r.path).image for r in ds.records]
    for cfg in configs:
        def crop(im):
            if cfg.startswith("c"):
                r, c = map(int, cfg[1:].split("_"))
                return centre_crop(im, base.replace(resize=r, size=c))
            s = int(cfg[2:])
            return np.asarray(im.resize((s, s), Image.Resampling.BICUBIC))

        t = time.perf_counter()
        feats: dict[str, list] = {o: [] for o in OUTPUTS}
        for s in range(0, len(imgs), 16):
            cr = np.stack([crop(im) for im in imgs[s:s + 16]])
            res = sess.run(None, {"input": to_input(np.concatenate([cr, cr[:, :, ::-1]]), base)})
            for o, v in zip(OUTPUTS, res):
                feats[o].append(np.stack([v[:len(cr)], v[len(cr):]], 1))
        for o in OUTPUTS:
            np.save(OUT / f"{name}_{cfg}_{o}.npy", np.concatenate(feats[o]).astype(np.float32))
        print(f"{name} {cfg}: {time.perf_counter() - t:.1f} s for {2 * len(imgs)} views", flush=True)


L2 = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def load(spec: str) -> np.ndarray:
    parts = []
    for p in spec.split("+"):
        f, _, how = p.partition("@")
        F = np.load(OUT / f"{f}.npy")
        if "pow" in how:
            F = np.sign(F) * np.sqrt(np.abs(F))
        if "l2" in how:
            F = F / (np.linalg.norm(F, axis=-1, keepdims=True) + 1e-8)
        parts.append(F)
    return np.concatenate(parts, -1)


def fit_path(E, y, tr, te, l2s, train_views, test_views, n_classes):
    from upright.head import Standardiser, fit_softmax
    from upright.numerics import softmax

    X = E[tr][:, list(train_views)].reshape(-1, E.shape[-1])
    yy = np.repeat(y[tr], len(train_views))
    std = Standardiser(X)
    U, S, Vt = np.linalg.svd(std(X), full_matrices=False)  # an L2-penalised W lies in the row space
    Z = (U * S).astype(np.float32)
    Zte = [(std(E[te, v]) @ Vt.T).astype(np.float32) for v in test_views]
    out, init = {}, None
    for l2 in sorted(l2s, reverse=True):  # warm-started path
        W, b = fit_softmax(Z, yy, n_classes, l2, init=init)
        init = (W, b)
        out[l2] = np.mean([softmax(z @ W.T + b) for z in Zte], 0)
    return out


def cv(spec: str, train_views=(0, 1), test_views=(0, 1)) -> tuple[float, float, list]:
    y = np.load(OUT / "y.npy")
    fold = np.array([int(s[12:24], 16) % 5 for s in json.loads((OUT / "shas.json").read_text())])
    C = int(y.max()) + 1
    E = load(spec)
    accs, chosen = [], []
    for k in range(5):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        rng = np.random.default_rng(0)
        inner = np.zeros(len(tr), int)
        for c in range(C):
            w = np.flatnonzero(y[tr] == c)
            rng.shuffle(w)
            inner[w] = np.arange(len(w)) % 3
        score = {l2: [0, 0.0] for l2 in L2}
        for j in range(3):
            a, b = tr[inner != j], tr[inner == j]
            for l2, p in fit_path(E, y, a, b, L2, train_views, test_views, C).items():
                score[l2][0] += int((p.argmax(1) == y[b]).sum())
                score[l2][1] -= float(np.log(p[np.arange(len(b)), y[b]] + 1e-12).sum())
        l2 = min(L2, key=lambda l: (-score[l][0], score[l][1]))
        p = fit_path(E, y, tr, te, [l2], train_views, test_views, C)[l2]
        accs.append(float((p.argmax(1) == y[te]).mean()))
        chosen.append(l2)
    return float(np.mean(accs)), float(np.std(accs)), chosen


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "extract":
        extract(argv[1], argv[2].split(",") if len(argv) > 2 else ["c256_224"])
    elif argv and argv[0] == "cv":
        tv = tuple(int(c) for c in os.environ.get("TRV", "01"))
        sv = tuple(int(c) for c in os.environ.get("TEV", "01"))
        for spec in argv[1:]:
            m, s, chosen = cv(spec, tv, sv)
            print(f"{spec} [train views {tv}, test views {sv}] d={load(spec).shape[-1]} "
                  f"acc={m:.4f} +/- {s:.4f} l2={chosen}", flush=True)
    else:
        print(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

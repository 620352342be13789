"""Measured for --preset accurate and not shipped: other heads and features on the same 10 crops.

    .venv/bin/python bench/_frozen_heads.py [--seeds 4] [--store /tmp/upright-heads]

Every photo of flowers-500 is decoded once through the product's own path
(preprocess.load_canvas: the picture resized to 297 px) and its 10 crops (upright.views.TEN_CROPS)
go through Lite0 and Lite2 in one ONNX graph per network that returns the pooled head features
(the 1280-d embedding upright uses) and the pooled output of the last block (320 / 352 channels).
Then, on 5-fold CV for each fold seed (bench/accuracy.folds_of; the hyper-parameter of each
head chosen on a 20% val split of the training four-fifths, as `upright train` does):
  - logistic: upright's head (standardise + softmax regression), test = mean over the 10 crops;
  - lda: shrinkage linear discriminant analysis (pooled within-class covariance shrunk toward
    its mean variance, alpha on val), also a linear head, test = the same mean;
on the pair's embedding and on the embedding plus the last-block features. README "Accuracy:
fast or accurate" has the figures: the gains were within the spread of a 100-photo fold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine  # noqa: E402
from accuracy import DATA, folds_of, inner_split  # noqa: E402

ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
L2S = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def extract(paths, store: Path) -> dict[str, np.ndarray]:
    """{"<part>_gap" | "<part>_last": float32 [N, 10, D]} (cached as .npy under `store`)."""
    import onnxruntime as ort
    import torch

    from upright import backbones
    from upright.preprocess import load_canvas, to_input
    from upright.views import TEN_CROPS, cut_all

    store.mkdir(parents=True, exist_ok=True)
    pair = backbones.spec("efficientnet-lite0+lite2")
    names = [f"{p}_{o}" for p in pair.parts for o in ("gap", "last")]
    if all((store / f"{n}.npy").is_file() for n in names):
        return {n: np.load(store / f"{n}.npy") for n in names}
    nets = dict(backbones.torch_module(pair.name).net.items())
    sessions = {}
    for part, net in nets.items():
        class Two(torch.nn.Module):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def forward(self, x):
                n = self.net
                x = n._swish(n._bn0(n._conv_stem(x)))
                for block in n._blocks:
                    x = block(x)
                return n._swish(n._bn1(n._conv_head(x))).mean((2, 3)), x.mean((2, 3))

        f = store / f"{part}-two.onnx"
        with torch.no_grad():
            torch.onnx.export(Two(net).eval(), (torch.zeros(1, 3, pair.size, pair.size),), str(f), dynamo=False,
                              opset_version=17, input_names=["input"], output_names=["gap", "last"],
                              dynamic_axes={"input": {0: "b"}})
        sessions[part] = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    out: dict[str, list] = {n: [] for n in names}
    for p in paths:
        canvas, _ = load_canvas(p, pair.name, True, whole=True)
        x = to_input(cut_all(canvas, TEN_CROPS, pair.size), pair.name)
        for part, sess in sessions.items():
            gap, last = sess.run(None, {"input": x})
            out[f"{part}_gap"].append(gap)
            out[f"{part}_last"].append(last)
    feats = {n: np.stack(v).astype(np.float32) for n, v in out.items()}
    for n, v in feats.items():
        np.save(store / f"{n}.npy", v)
    return feats


def logistic_paths(E, y, tr, te, C, l2s):
    from upright.head import Standardiser, fit_softmax
    from upright.numerics import softmax

    X = E[tr].reshape(-1, E.shape[-1])
    std = Standardiser(X)
    Xs, init, out = std(X), None, {}
    for l2 in sorted(l2s, reverse=True):
        W, b = fit_softmax(Xs, np.repeat(y[tr], E.shape[1]), C, l2, init=init)
        init = (W, b)
        out[l2] = np.mean([softmax(std(E[te, v]) @ W.T + b) for v in range(E.shape[1])], axis=0)
    return out


def lda_paths(E, y, tr, te, C, alphas):
    from upright.numerics import softmax

    X, yy = E[tr].reshape(-1, E.shape[-1]).astype(np.float64), np.repeat(y[tr], E.shape[1])
    mu, sd = X.mean(0), X.std(0) + 1e-3
    Xs = (X - mu) / sd
    M = np.stack([Xs[yy == c].mean(0) for c in range(C)])
    R = Xs - M[yy]
    S = R.T @ R / len(R)
    t = np.trace(S) / len(S)
    out = {}
    for a in alphas:
        W = np.linalg.solve((1 - a) * S + a * t * np.eye(len(S)), M.T).T / sd
        b = -0.5 * np.sum(W * sd * M, 1) - W @ mu
        out[a] = np.mean([softmax(E[te, v] @ W.T + b) for v in range(E.shape[1])], axis=0)
    return out


def cv(E, y, fold, fit, grid) -> list[float]:
    C, accs = int(y.max()) + 1, []
    for f in range(fold.max() + 1):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        a, v = inner_split(tr, y)
        val = {k: float((p.argmax(1) == y[v]).mean()) for k, p in fit(E, y, a, v, C, grid).items()}
        best = max(grid, key=lambda k: (val[k], k))
        accs.append(float((fit(E, y, tr, te, C, (best,))[best].argmax(1) == y[te]).mean()))
    return accs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--store", type=Path, default=Path("/tmp/upright-heads"))
    args = ap.parse_args(argv)
    from upright.dataset import scan

    if not args.data.is_dir():
        print(f"no data at {args.data}")
        return 2
    print(machine("onnxruntime"))
    ds = scan(args.data, 0.0, read=("train", "val"))
    y = np.array([ds.labels.index(r.label) for r in ds.records])
    F = extract([str(r.path) for r in ds.records], args.store)
    sets = {"pair": np.concatenate([F["efficientnet-lite0_gap"], F["efficientnet-lite2_gap"]], -1)}
    sets["pair + last blocks"] = np.concatenate([sets["pair"], F["efficientnet-lite0_last"],
                                                 F["efficientnet-lite2_last"]], -1)
    print("| features | head | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean |")
    print("|---|---|" + "---|" * (args.seeds + 1))
    for name, E in sets.items():
        for head, fit, grid in (("logistic", logistic_paths, L2S), ("lda", lda_paths, ALPHAS)):
            means = [float(np.mean(cv(E, y, folds_of(y, 5, s), fit, grid))) for s in range(args.seeds)]
            print(f"| {name} | {head} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

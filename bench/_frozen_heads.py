"""Measured for --preset accurate and not shipped: other heads, features and views on frozen Lite0 + Lite2.

    .venv/bin/python bench/_frozen_heads.py [--seeds 3] [--mlp] [--store /tmp/upright-heads]

Every photo of flowers-500 is decoded once through the product's own path
(pipeline.decode.load_canvas: the picture resized to 297 px) and its 10 crops (upright.views.TEN_CROPS)
plus 6 more views (the centre crop of the picture resized to 260 and to 380 px, the whole
picture squashed to 260 x 260, each with its mirror) go through Lite0 and Lite2 in one ONNX
graph per network. The graph returns, per view: the pooled head features (`gap`, the 1280-d
embedding upright uses), their maximum over the feature map (`gmp`), the pooled outputs of two
earlier stage ends (`mid`: blocks 10 and 14 of Lite0, 14 and 19 of Lite2) and of the last block
(`last`: 320 / 352 channels).

Then, on 5-fold CV for each fold seed (bench/accuracy.folds_of; every hyper-parameter chosen on
a 20% val split of the training four-fifths, as `upright train` does), one row per recipe:
  - logistic: upright's head (standardise + softmax regression), test = mean over the views;
  - lda: shrinkage linear discriminant analysis (alpha on val), a linear head too;
  - mlp (--mlp, slow): one hidden layer of 512, dropout 0.5, mixup, label smoothing (torch);
  - cleaned: the logistic head refitted without the training photos whose own label gets
    under 0.1 from a head that never saw them (5-fold inside the training photos);
  - ensemble: logistic heads on gap, on mid + last and on gmp, probabilities averaged;
and the logistic head at each fixed l2 (no choice on val: how flat the curve is).
docs/accuracy.md "Accuracy: fast or accurate" has the figures: none is clearly above the shipped head.
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
WDS = (0.05, 0.5)  # the MLP's weight decay
CLEAN_BELOW = 0.1  # cleaned: drop a training photo whose own label gets less than this out of fold
STAGE_ENDS = {"efficientnet-lite0": (10, 14), "efficientnet-lite2": (14, 19)}
OUTPUTS = ("gap", "gmp", "mid", "last")


def _views(path, pair):
    """uint8 [16, S, S, 3]: the 10 crops as the product cuts them, then the centre crop of the picture
    resized to 260 and to 380 px and the whole picture squashed, each followed by its mirror."""
    from PIL import Image

    from upright.imaging import open_image
    from upright.contract import InputContract
    from upright.pipeline.decode import load_canvas
    from upright.views import TEN_CROPS, cut_all, window

    canvas, _ = load_canvas(path, InputContract.for_backbone(pair.name), picture=True)
    img = open_image(path, size=380).image.convert("RGB")

    def centre(short):
        w, h = img.size
        k = short / min(w, h)
        resized = img.resize((max(pair.size, round(w * k)), max(pair.size, round(h * k))), Image.Resampling.BICUBIC)
        return window(np.asarray(resized), "centre", pair.size)

    out, zoom = centre(pair.size), centre(380)
    squash = np.asarray(img.resize((pair.size, pair.size), Image.Resampling.BICUBIC))
    extra = [v for a in (out, zoom, squash) for v in (a, a[:, ::-1])]
    return np.concatenate([cut_all(canvas, TEN_CROPS, pair.size), np.stack(extra)])


def extract(paths, store: Path) -> dict[str, np.ndarray]:
    """{"<part>_<output>": float32 [N, 16, D]} for OUTPUTS (cached as .npy under `store`)."""
    import onnxruntime as ort
    import torch

    from upright import backbones
    from upright.contract import InputContract
    from upright.pipeline.decode import to_input

    store.mkdir(parents=True, exist_ok=True)
    pair = backbones.spec("efficientnet-lite0+lite2")
    names = [f"{p}_{o}" for p in pair.parts for o in OUTPUTS]
    if all((store / f"{n}.npy").is_file() for n in names):
        return {n: np.load(store / f"{n}.npy") for n in names}
    nets = dict(backbones.torch_module(pair.name).net.items())
    sessions = {}
    for part, net in nets.items():
        class Outputs(torch.nn.Module):
            def __init__(self, net, ends):
                super().__init__()
                self.net, self.ends = net, ends

            def forward(self, x):
                n = self.net
                x = n._swish(n._bn0(n._conv_stem(x)))
                mids = []
                for i, block in enumerate(n._blocks):
                    x = block(x)
                    if i in self.ends:
                        mids.append(x.mean((2, 3)))
                h = n._swish(n._bn1(n._conv_head(x)))
                return h.mean((2, 3)), h.amax((2, 3)), torch.cat(mids, 1), x.mean((2, 3))

        f = store / f"{part}-outputs.onnx"
        with torch.no_grad():
            torch.onnx.export(Outputs(net, STAGE_ENDS[part]).eval(), (torch.zeros(1, 3, pair.size, pair.size),),
                              str(f), dynamo=False, opset_version=17, input_names=["input"], output_names=list(OUTPUTS),
                              dynamic_axes={"input": {0: "b"}})
        sessions[part] = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    out: dict[str, list] = {n: [] for n in names}
    for p in paths:
        x = to_input(_views(p, pair), InputContract.for_backbone(pair.name))
        for part, sess in sessions.items():
            for o, value in zip(OUTPUTS, sess.run(None, {"input": x})):
                out[f"{part}_{o}"].append(value)
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


def mlp_paths(E, y, tr, te, C, wds, hidden=512, epochs=40, batch=128, lr=1e-3):
    """One hidden layer (GELU), dropout 0.5 before each layer, mixup (alpha 0.4), label
    smoothing 0.1, AdamW with a one-cycle schedule; seeded."""
    import torch

    from upright.head import Standardiser

    X = E[tr].reshape(-1, E.shape[-1])
    std = Standardiser(X)
    Xt, yt = torch.from_numpy(std(X)).float(), torch.from_numpy(np.repeat(y[tr], E.shape[1]))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    out = {}
    for wd in wds:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(X.shape[1], hidden), torch.nn.GELU(),
                                  torch.nn.Dropout(0.5), torch.nn.Linear(hidden, C))
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * -(-len(Xt) // batch))
        for _ in range(epochs):
            perm = torch.randperm(len(Xt))
            for s in range(0, len(Xt), batch):
                j = perm[s:s + batch]
                lam, k = float(rng.beta(0.4, 0.4)), torch.randperm(len(j))
                logits = net(lam * Xt[j] + (1 - lam) * Xt[j][k])
                loss = lam * loss_fn(logits, yt[j]) + (1 - lam) * loss_fn(logits, yt[j][k])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        with torch.no_grad():
            out[wd] = np.mean([torch.softmax(net(torch.from_numpy(std(E[te, v])).float()), 1).numpy()
                               for v in range(E.shape[1])], axis=0)
    return out


def cleaned(E, y, tr, te, C, l2s):
    """logistic_paths on the training photos that a head which never saw them does not contradict."""
    inner = folds_of(y[tr], 5, seed=100)
    p_own = np.zeros(len(tr))
    for g in range(5):
        fit, held = tr[inner != g], tr[inner == g]
        p_own[inner == g] = logistic_paths(E, y, fit, held, C, (3e-3,))[3e-3][np.arange(len(held)), y[held]]
    return logistic_paths(E, y, tr[p_own >= CLEAN_BELOW], te, C, l2s)


def ensemble(parts):
    """A fit averaging logistic heads, one per feature array in `parts` (E is ignored)."""
    def fit(E, y, tr, te, C, l2s):
        paths = [logistic_paths(P, y, tr, te, C, l2s) for P in parts]
        return {l2: np.mean([p[l2] for p in paths], axis=0) for l2 in l2s}
    return fit


def cv(E, y, fold, fit, grid) -> list[float]:
    C, accs = int(y.max()) + 1, []
    for f in range(fold.max() + 1):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        a, v = inner_split(tr, y)
        val = {k: float((p.argmax(1) == y[v]).mean()) for k, p in fit(E, y, a, v, C, grid).items()}
        best = max(grid, key=lambda k: (val[k], k))
        accs.append(float((fit(E, y, tr, te, C, (best,))[best].argmax(1) == y[te]).mean()))
    return accs


def fixed_l2(E, y, fold, l2s) -> dict:
    """Mean CV accuracy of the logistic head at each l2, nothing chosen."""
    C, hits = int(y.max()) + 1, {l2: [] for l2 in l2s}
    for f in range(fold.max() + 1):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        for l2, p in logistic_paths(E, y, tr, te, C, l2s).items():
            hits[l2].append(float((p.argmax(1) == y[te]).mean()))
    return {l2: float(np.mean(v)) for l2, v in hits.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--mlp", action="store_true", help="also the MLP head (about 5 minutes a seed on 2 cores)")
    ap.add_argument("--store", type=Path, default=Path("/tmp/upright-heads"))
    args = ap.parse_args(argv)
    from upright.pipeline.scan import scan

    if not args.data.is_dir():
        print(f"no data at {args.data}")
        return 2
    print(machine("onnxruntime", "torch"))
    ds = scan(args.data, 0.0, read=("train", "val"))
    y = np.array([ds.labels.index(r.label) for r in ds.records])
    F = extract([str(r.path) for r in ds.records], args.store)
    crops = slice(0, 10)

    def both(o, views=crops):
        return np.concatenate([F[f"efficientnet-lite0_{o}"][:, views], F[f"efficientnet-lite2_{o}"][:, views]], -1)

    pair, last, mid, gmp = both("gap"), both("last"), both("mid"), both("gmp")
    rows = [("pair (shipped)", pair, "logistic", logistic_paths, L2S),
            ("pair", pair, "lda", lda_paths, ALPHAS),
            ("pair + last blocks", np.concatenate([pair, last], -1), "logistic", logistic_paths, L2S),
            ("pair + last blocks", np.concatenate([pair, last], -1), "lda", lda_paths, ALPHAS),
            ("pair + stage ends (mid + last)", np.concatenate([pair, mid, last], -1), "logistic", logistic_paths, L2S),
            ("pair + max-pooled", np.concatenate([pair, gmp], -1), "logistic", logistic_paths, L2S),
            ("pair, signed square root", np.sign(pair) * np.sqrt(np.abs(pair)), "logistic", logistic_paths, L2S),
            ("pair, 16 views (10 crops + 6)", both("gap", slice(None)), "logistic", logistic_paths, L2S),
            ("pair", pair, f"logistic, cleaned (own label < {CLEAN_BELOW})", cleaned, L2S),
            ("pair; mid + last; max-pooled", pair, "3 logistic heads averaged",
             ensemble([pair, np.concatenate([mid, last], -1), gmp]), L2S)]
    if args.mlp:
        rows.append(("pair", pair, "mlp 512, mixup", mlp_paths, WDS))
    print(f"{len(y)} photos; 5-fold CV, fold seeds 0-{args.seeds - 1}; test: the mean over the views trained on")
    print("| features | head | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " | mean |")
    print("|---|---|" + "---|" * (args.seeds + 1))
    for name, E, head, fit, grid in rows:
        means = [float(np.mean(cv(E, y, folds_of(y, 5, s), fit, grid))) for s in range(args.seeds)]
        print(f"| {name} | {head} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |",
              flush=True)
    curve = [fixed_l2(pair, y, folds_of(y, 5, s), L2S) for s in range(args.seeds)]
    print("pair, logistic at a fixed l2 (nothing chosen), mean over seeds: "
          + ", ".join(f"{l2:g}: {np.mean([c[l2] for c in curve]):.3f}" for l2 in L2S))
    return 0


if __name__ == "__main__":
    sys.exit(main())

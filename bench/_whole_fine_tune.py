"""Measured for --preset accurate and not shipped: Lite0 fine-tuned end to end with random resized crops.

    .venv/bin/python bench/_whole_fine_tune.py [--fold 1] [--seed 0] [--epochs 8] [--lr 2e-4]
    .venv/bin/python bench/_whole_fine_tune.py --step-cost   # seconds a training step, Lite0 vs Lite2

One fold of bench/accuracy.py's 5-fold CV on flowers-500 (same folds). The photos are decoded
through the product's path (short side 256, the backbone's resize) and held in memory. The
linear head starts as a probe fitted on the centre crops and their mirrors of the training
photos (upright.head), then backbone and head train together through upright.pipeline.finetune.train_epochs
(AdamW, warm-up + cosine, BatchNorm statistics frozen, label smoothing 0.1, weight decay 0.02,
head lr 5x) on random resized crops (scale 0.25-1, aspect 3/4-4/3, bilinear, random mirror),
the usual augmentation for fine-tuning on few photos; the last epoch is scored on the held-out
fifth, its 10 crops averaged (upright.views.TEN_CROPS), beside the frozen Lite0 head of the same
fold on the same crops. It prints the seconds per epoch: on 2 CPU cores that is what rules out
fine-tuning both networks within --preset accurate's budget (docs/accuracy.md "Accuracy: fast or accurate").
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _machine import machine  # noqa: E402
from accuracy import DATA, folds_of  # noqa: E402

NET = "efficientnet-lite0"


def random_resized_crop(picture: np.ndarray, size: int, rng, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """A random window of 25-100% of the picture's area, resized to size x size, mirrored half the time."""
    from PIL import Image

    h, w = picture.shape[:2]
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
        if cw <= w and ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            break
    else:
        cw = ch = min(w, h)
        left, top = (w - cw) // 2, (h - ch) // 2
    crop = np.asarray(Image.fromarray(picture[top:top + ch, left:left + cw]).resize((size, size),
                                                                                   Image.Resampling.BILINEAR))
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--fold", type=int, default=1, help="which fifth is held out (1-5)")
    ap.add_argument("--seed", type=int, default=0, help="the fold seed (bench/accuracy.folds_of)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4, help="peak lr of the backbone (the head: 5x)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--step-cost", action="store_true",
                    help="only time a training step (forward + backward + AdamW) of each network at its own size")
    args = ap.parse_args(argv)
    if args.step_cost:
        return step_cost(args.batch)
    import torch

    from upright import backbones
    from upright.pipeline.scan import scan
    from upright.contract import InputContract
    from upright.pipeline.embed import embed_canvases
    from upright.pipeline.finetune import train_epochs
    from upright.head import SoftmaxRegression
    from upright.pipeline.decode import load_canvas, to_input
    from upright.views import TEN_CROPS, cut_all

    if not args.data.is_dir():
        print(f"no data at {args.data}")
        return 2
    print(machine("torch"))
    torch.set_num_threads(backbones.cpu_count())
    ds = scan(args.data, 0.0, read=("train", "val"))
    y = np.array([ds.labels.index(r.label) for r in ds.records])
    fold = folds_of(y, 5, args.seed)
    tr, te = np.flatnonzero(fold != args.fold - 1), np.flatnonzero(fold == args.fold - 1)
    size = backbones.spec(NET).size
    t0 = time.perf_counter()
    contract = InputContract.for_backbone(NET)
    pictures = {int(i): load_canvas(str(ds.records[i].path), contract, picture=True)[0] for i in np.r_[tr, te]}
    net = backbones.torch_module(NET)

    def embed(idx, views):  # the frozen network through the product's ONNX path
        return embed_canvases([pictures[int(i)] for i in idx], backbone=NET, variants=views)

    probe = SoftmaxRegression(l2=1e-2).fit(embed(tr, ("id", "flip")).reshape(-1, net.spec.dim), np.repeat(y[tr], 2))
    frozen_test = embed(te, TEN_CROPS)
    frozen_p = probe.predict_proba(frozen_test.reshape(-1, net.spec.dim)).reshape(len(te), len(TEN_CROPS), -1).mean(1)
    frozen = float((frozen_p.argmax(1) == y[te]).mean())
    print(f"frozen Lite0, 10 crops at test: {frozen:.3f} ({time.perf_counter() - t0:.0f} s with decoding)", flush=True)
    head = torch.nn.Linear(net.spec.dim, len(ds.labels))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(probe.coef_))
        head.bias.copy_(torch.from_numpy(probe.intercept_))
    model = torch.nn.Sequential(net, head)

    def batches(epoch):
        rng = np.random.default_rng([args.seed, epoch])
        order = rng.permutation(tr)
        for s in range(0, len(order), args.batch):
            idx = order[s:s + args.batch]
            x = np.stack([random_resized_crop(pictures[int(i)], size, rng) for i in idx])
            yield torch.from_numpy(to_input(x, contract)), torch.from_numpy(y[idx])

    t1 = time.perf_counter()
    run = train_epochs(model, [{"params": list(net.parameters()), "lr": args.lr},
                               {"params": list(head.parameters()), "lr": args.lr * 5}],
                       batches=batches, n_batches=-(-len(tr) // args.batch), evaluate=None, epochs=args.epochs,
                       seed=args.seed, progress=False, label_smoothing=0.1, weight_decay=0.02)
    per_epoch = (time.perf_counter() - t1) / args.epochs
    model.eval()
    with torch.no_grad():
        p = np.stack([torch.softmax(model(torch.from_numpy(to_input(cut_all(pictures[int(i)], TEN_CROPS, size), contract))),
                                    1).mean(0).numpy() for i in te])
    tuned = float((p.argmax(1) == y[te]).mean())
    print(f"losses by epoch: {[round(h['loss'], 3) for h in run.history]}")
    print(f"| fold {args.fold} (seed {args.seed}) | frozen Lite0 {frozen:.3f} | fine-tuned {tuned:.3f} | "
          f"{args.epochs} epochs, {per_epoch:.0f} s each ({len(tr) / per_epoch:.1f} photos/s) |")
    return 0


def step_cost(batch: int, steps: int = 3) -> int:
    """Seconds a training step of `batch` random inputs takes, per network (after one warm-up step)."""
    import torch

    from upright import backbones

    print(machine("torch"))
    torch.set_num_threads(backbones.cpu_count())
    for name in ("efficientnet-lite0", "efficientnet-lite2"):
        net = backbones.torch_module(name)
        head = torch.nn.Linear(net.spec.dim, 5)
        model = torch.nn.Sequential(net, head).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, t = torch.randn(batch, 3, net.spec.size, net.spec.size), torch.zeros(batch, dtype=torch.long)
        times = []
        for _ in range(steps + 1):
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        per = float(np.mean(times[1:]))
        print(f"| {name} | {net.spec.size} px | {per:.2f} s a step of {batch} | {batch / per:.1f} photos/s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`upright train --preset accurate`: Lite0 and Lite2 together, their last blocks fine-tuned on
activations cached once per view, the whole thing saved as an ordinary fine-tuned model.

Why this shape (measured in bench/accuracy.py, 5-fold CV on flowers-500): a linear head on
frozen features stops near 0.92 however the features are pooled or cropped; full
fine-tuning on a CPU is slow and overfits 500 photos. The early blocks of an ImageNet network
are generic, so they stay frozen and run ONCE per photo and view (several crops and their
mirrors): their output feature maps (float16, about 58 KB a view for the pair) are held in
memory, and only the last block(s) of each network, its 1x1 head convolution and the linear
classifier are trained, epoch by epoch, through finetune.train_epochs (label smoothing,
warm-up + cosine learning rate, the best epoch on the val photos kept, checkpoints, resume).

The result is the composite backbone "efficientnet-lite0+lite2" with fine-tuned weights and a
linear softmax head on its 2560-d pooled features, test views id + flip: predict, eval, serve
and export use it as they use any fine-tuned model (the ONNX graph is the whole network with
the test-time mirror averaging). The frozen bottom runs in ONNX Runtime (exported once per
weights and cut, in the cache dir); the top trains in torch.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from . import backbones
from .errors import UnreadableImage, one_line

BACKBONE = "efficientnet-lite0+lite2"
#: trained blocks at the end of each network (the rest is frozen and cached)
TUNED_BLOCKS = 1
EPOCHS = 8
LR_BLOCKS = 1e-3  # peak learning rate of the tuned blocks; the linear head gets HEAD_LR_FACTOR x
HEAD_LR_FACTOR = 3.0
LABEL_SMOOTHING = 0.1
DROPOUT = 0.2  # on the pooled features, as EfficientNet-Lite's own classifier
BATCH = 32
PATIENCE = 3  # early stopping: epochs without a better val accuracy
#: training views per photo: the centre and the four corner crops of the picture resized to
#: the backbone's short side, each also mirrored (the classic 10-crop)
CROPS = ("centre", "top-left", "top-right", "bottom-left", "bottom-right")
TEST_VIEWS = ("id", "flip")  # centre crop and its mirror, averaged (what model.json records)
#: names of the training views in cache order ("id" and "flip" are the centre crop and its mirror)
VIEW_NAMES = ("id", "top-left", "top-right", "bottom-left", "bottom-right",
              "flip", "flip-top-left", "flip-top-right", "flip-bottom-left", "flip-bottom-right")


def recipe() -> dict:
    """Every setting that decides an accurate run's result (part of its checkpoint key)."""
    return {"backbone": BACKBONE, "tuned": TUNED_BLOCKS, "lr": LR_BLOCKS, "head_lr": HEAD_LR_FACTOR,
            "smoothing": LABEL_SMOOTHING, "dropout": DROPOUT, "batch": BATCH, "patience": PATIENCE,
            "crops": CROPS}


def crop_views(img: np.ndarray, size: int, crops=CROPS, mirror: bool = True) -> np.ndarray:
    """uint8 [H, W, 3] (short side already the backbone's resize) -> [V, size, size, 3] crops
    (in `crops` order, then the same mirrored when `mirror`)."""
    h, w = img.shape[:2]
    where = {"centre": ((h - size) // 2, (w - size) // 2), "top-left": (0, 0), "top-right": (0, w - size),
             "bottom-left": (h - size, 0), "bottom-right": (h - size, w - size)}
    out = [img[t:t + size, x:x + size] for t, x in (where[c] for c in crops)]
    if mirror:
        out += [c[:, ::-1] for c in out]
    return np.ascontiguousarray(np.stack(out))


def _decode_views(job):
    """Worker: (index, path, orient, views) -> (index, uint8 views | None, error | None)."""
    from .imaging import open_image

    i, path, orient, views = job
    s = backbones.spec(BACKBONE)
    try:
        img = np.asarray(open_image(path, size=s.resize, orient=orient).image.convert("RGB"))
        if views == "train":
            return i, crop_views(img, s.size), None
        from .orientation import variant_array

        centre = crop_views(img, s.size, ("centre",), mirror=False)[0]
        return i, np.stack([variant_array(centre, v) for v in views]), None
    except UnreadableImage as exc:
        return i, None, exc.reason
    except Exception as exc:  # never let one file kill the run
        return i, None, f"cannot decode: {one_line(exc, 160)}"


# -- the network cut in two --------------------------------------------------------------
def _nets(state_dict: dict | None = None):
    """{part: EfficientNet} of the composite (stock weights unless a composite state dict is given)."""
    return dict(backbones.torch_module(BACKBONE, state_dict).net.items())


def cut_index(net, tuned: int = TUNED_BLOCKS) -> int:
    return len(net._blocks) - tuned


def _bottom_module(net, cut: int):
    import torch

    class Bottom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            n = self.net
            h = n._swish(n._bn0(n._conv_stem(x)))
            for b in n._blocks[:cut]:
                h = b(h)
            return h

    return Bottom().eval()


def _top_module(nets: dict, cuts: dict, n_classes: int):
    import torch

    class Top(torch.nn.Module):
        """The tuned end of each network + the linear head, on the cached activations."""

        def __init__(self):
            super().__init__()
            self.nets = torch.nn.ModuleDict(nets)
            self.dropout = torch.nn.Dropout(DROPOUT)
            self.head = torch.nn.Linear(backbones.spec(BACKBONE).dim, n_classes)

        def features(self, acts):
            out = []
            for (part, n), h in zip(self.nets.items(), acts):
                rate = n._global_params.drop_connect_rate or 0.0
                for idx in range(cuts[part], len(n._blocks)):
                    h = n._blocks[idx](h, drop_connect_rate=rate * idx / len(n._blocks))
                out.append(n._swish(n._bn1(n._conv_head(h))).mean(dim=(2, 3)))
            return torch.cat(out, dim=1)

        def forward(self, acts):
            return self.head(self.dropout(self.features(acts)))

        def tuned_parameters(self):
            return [p for part, n in self.nets.items()
                    for m in list(n._blocks[cuts[part]:]) + [n._conv_head, n._bn1] for p in m.parameters()]

    return Top()


def _bottom_sessions(cache_dir, tuned: int):
    """One ONNX Runtime session per part computing its frozen bottom (exported once, cached)."""
    from .atomic import clean_leftovers
    from .cache import resolve_cache_dir

    s = backbones.spec(BACKBONE)
    sessions = []
    for part, net in _nets().items():
        cut = cut_index(net, tuned)
        key = backbones.weights_sha256(part)
        path = Path(resolve_cache_dir(cache_dir)) / "onnx" / f"{part}-bottom{cut}-{key[:16]}-x{backbones.EXPORT_VERSION}.onnx"
        with backbones._export_lock:
            clean_leftovers(path.parent)
            if not (path.is_file() and backbones._valid_onnx(path)):
                backbones.export_onnx(_bottom_module(net, cut), path, s, output_name="activations")
        sessions.append(backbones.ort_session(path))
    return sessions


def cache_activations(paths, *, orient: bool = True, views="train", cache_dir=None, tuned: int = TUNED_BLOCKS,
                      progress: bool = True, workers: int | None = None, description: str = "caching activations"):
    """The frozen bottoms' outputs for every photo and view: ([float16 [N, V, C, H, W] per part],
    ok [N], {index: reason}). views="train": the 10 crops; or a tuple of variants of the centre crop."""
    from .console import progress as progress_bar
    from .preprocess import to_input

    paths = [str(p) for p in paths]
    n = len(paths)
    workers = backbones.cpu_count() if workers is None else workers
    # fork the decoders before ONNX Runtime starts its threads
    pool = mp.get_context("fork").Pool(workers) if workers > 0 and n > 4 else None
    sessions = _bottom_sessions(cache_dir, tuned)
    nv = 2 * len(CROPS) if views == "train" else len(views)
    acts: list[np.ndarray | None] = [None] * len(sessions)
    ok = np.zeros(n, bool)
    errors: dict[int, str] = {}
    jobs = [(i, p, orient, views) for i, p in enumerate(paths)]
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if not pending:
            return
        x = to_input(np.concatenate([v for _, v in pending]), BACKBONE)
        for k, sess in enumerate(sessions):
            out = sess.run(None, {sess.get_inputs()[0].name: x})[0].astype(np.float16)
            if acts[k] is None:
                acts[k] = np.zeros((n, nv) + out.shape[1:], np.float16)
            for j, (i, _) in enumerate(pending):
                acts[k][i] = out[j * nv:(j + 1) * nv]
        for i, _ in pending:
            ok[i] = True
        pending.clear()

    try:
        stream = pool.imap(_decode_views, jobs, chunksize=2) if pool else map(_decode_views, jobs)
        with progress_bar(n, description, enabled=progress) as advance:
            for i, v, err in stream:
                if v is None:
                    errors[i] = err
                else:
                    pending.append((i, v))
                    if len(pending) * nv >= 32:
                        flush()
                advance(1)
            flush()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    acts = [a if a is not None else np.zeros((n, nv, 1, 1, 1), np.float16) for a in acts]
    return acts, ok, errors


# -- training ------------------------------------------------------------------------------
def stock_features(top, acts, idx, view_idx) -> np.ndarray:
    """Pooled features [len(idx), len(view_idx), 2560] of cached views through the top as it is."""
    import torch

    top.eval()
    out = np.zeros((len(idx), len(view_idx), backbones.spec(BACKBONE).dim), np.float32)
    with torch.no_grad():
        for j, v in enumerate(view_idx):
            for s in range(0, len(idx), 64):
                rows = idx[s:s + 64]
                out[s:s + len(rows), j] = top.features([torch.from_numpy(a[rows, v]).float() for a in acts]).numpy()
    return out


def fit_top(acts, y, train_idx, val_idx, n_classes, head_init, *, epochs: int = EPOCHS, seed: int = 0,
            tuned: int = TUNED_BLOCKS, lr: float = LR_BLOCKS, label_smoothing: float = LABEL_SMOOTHING,
            patience: int | None = PATIENCE, checkpoint=None, resume: bool = False, progress: bool = True,
            test_views=(0, 5)):
    """Train the top on the cached train views (one random view per photo per epoch) and keep
    the best epoch on the val photos (scored with `test_views` averaged). -> (top, Epochs)."""
    import torch

    from .finetune import print_epoch, train_epochs

    nets = _nets()
    cuts = {part: cut_index(net, tuned) for part, net in nets.items()}
    top = _top_module(nets, cuts, n_classes)
    for p in top.parameters():
        p.requires_grad_(False)
    tuned_params = top.tuned_parameters()
    for p in tuned_params + list(top.head.parameters()):
        p.requires_grad_(True)
    with torch.no_grad():
        top.head.weight.copy_(torch.from_numpy(np.asarray(head_init[0], np.float32)))
        top.head.bias.copy_(torch.from_numpy(np.asarray(head_init[1], np.float32)))
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    nv = acts[0].shape[1]
    yt = torch.from_numpy(np.asarray(y))

    def batches(epoch):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(train_idx)
        views = rng.integers(0, nv, len(order))
        for s in range(0, len(order), BATCH):
            rows, vs = order[s:s + BATCH], views[s:s + BATCH]
            yield [torch.from_numpy(a[rows, vs]).float() for a in acts], yt[rows]

    def evaluate():
        logits = []
        for s in range(0, len(val_idx), 64):
            rows = val_idx[s:s + 64]
            p = sum(torch.softmax(top([torch.from_numpy(a[rows, v]).float() for a in acts]), 1) for v in test_views)
            logits.append(p / len(test_views))
        p = torch.cat(logits)
        target = yt[val_idx]
        return (float((p.argmax(1) == target).float().mean()),
                float(-torch.log(p[torch.arange(len(target)), target].clamp_min(1e-12)).mean()))

    run = train_epochs(top, [{"params": tuned_params, "lr": lr}, {"params": list(top.head.parameters()),
                                                                     "lr": lr * HEAD_LR_FACTOR}],
                       batches=batches, n_batches=int(np.ceil(len(train_idx) / BATCH)),
                       evaluate=evaluate if len(val_idx) else None, epochs=epochs, seed=seed,
                       checkpoint=checkpoint, resume=resume, progress=progress, label_smoothing=label_smoothing,
                       patience=patience if len(val_idx) else None, description="accurate",
                       on_epoch=print_epoch if progress else None)
    return top, run


def heldout(top, acts, y, idx, test_views) -> dict:
    """select_head's "heldout" shape for the report: the kept model's top-k on the val photos."""
    import torch

    from .head import TOP_K_KEPT

    top.eval()
    with torch.no_grad():
        p = torch.cat([sum(torch.softmax(top([torch.from_numpy(a[idx[s:s + 64], v]).float() for a in acts]), 1)
                           for v in test_views) / len(test_views) for s in range(0, len(idx), 64)]).numpy()
    k = min(TOP_K_KEPT, p.shape[1])
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return {"index": np.asarray(idx), "top": order, "top_p": np.take_along_axis(p, order, axis=1),
            "p_true": p[np.arange(len(idx)), np.asarray(y)[idx]]}


def composite_state(top) -> dict:
    """The whole composite backbone's state dict ("<part>.<key>") with the tuned tensors in it."""
    return {f"{part}.{k}": v.detach().cpu().contiguous() for part, n in top.nets.items()
            for k, v in n.state_dict().items()}


def describe(epochs: int, run, seconds: float, tuned: int = TUNED_BLOCKS) -> dict:
    """model.json "fine_tune" of an accurate model."""
    best = next((h for h in run.history if h["epoch"] == run.best_epoch), {})
    return {"kind": "last blocks on cached activations", "tuned_blocks_per_network": tuned,
            "trained": "last block(s), 1x1 head convolution and BatchNorm affine of each network, linear head",
            "frozen": "stem and earlier blocks (their outputs cached once per view, float16)",
            "train_views": f"{2 * len(CROPS)} crops (centre + 4 corners, each mirrored)",
            "epochs": epochs, "optimizer": "AdamW, linear warm-up + cosine", "lr_blocks": LR_BLOCKS,
            "lr_head": LR_BLOCKS * HEAD_LR_FACTOR, "label_smoothing": LABEL_SMOOTHING, "dropout": DROPOUT,
            "batch_size": BATCH, "early_stopping_patience": PATIENCE, "batchnorm": "frozen statistics",
            "val_accuracy": best.get("val_accuracy"), "best_epoch": run.best_epoch, "history": run.history,
            "resumed_from_epoch": run.resumed_from, "seconds": round(seconds, 2), "device": "cpu"}


"""The recipe bench/accuracy.py measured against --preset accurate and did not ship: the last
block of Lite0 and of Lite2 fine-tuned on activations cached once per view.

The early blocks of each network are frozen, so their output feature maps for the 10 crops of
every photo are computed once (ONNX Runtime, float16: about 58 KB a view for the pair, 278 MB
for 500 photos) and only the last block, the 1x1 head convolution and the linear classifier
are trained, epoch by epoch, through upright.pipeline.finetune.train_epochs (label smoothing 0.1,
warm-up + cosine, early stopping and the best epoch on a val split). On flowers-500 it scored
below the frozen features it starts from (docs/accuracy.md, "Accuracy: fast or accurate"), so the preset is the frozen
10-crop head (upright.presets) and this stays here, runnable, for the next attempt.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from upright import backbones
from upright.presets import BACKBONE
from upright.views import TEN_CROPS, cut_all, window
from upright.errors import UnreadableImage, one_line

#: trained blocks at the end of each network (the rest is frozen and cached)
TUNED_BLOCKS = 1
EPOCHS = 8
LR_BLOCKS = 1e-3  # peak learning rate of the tuned blocks; the linear head gets HEAD_LR_FACTOR x
HEAD_LR_FACTOR = 3.0
LABEL_SMOOTHING = 0.1
DROPOUT = 0.2  # on the pooled features, as EfficientNet-Lite's own classifier
BATCH = 32
PATIENCE = 3  # early stopping: epochs without a better val accuracy


def _decode_views(job):
    """Worker: (index, path, orient, views) -> (index, uint8 views | None, error | None)."""
    from upright.imaging import open_image

    i, path, orient, views = job
    s = backbones.spec(BACKBONE)
    try:
        img = np.asarray(open_image(path, size=s.resize, orient=orient).image.convert("RGB"))
        if views == "train":
            return i, cut_all(img, TEN_CROPS, s.size), None
        from upright.orientation import variant_array

        centre = window(img, "centre", s.size)
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
    from upright.atomic import clean_leftovers
    from upright.cache import resolve_cache_dir

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
    from upright.console import progress as progress_bar
    from upright.contract import InputContract
    from upright.pipeline.decode import to_input

    paths = [str(p) for p in paths]
    n = len(paths)
    workers = backbones.cpu_count() if workers is None else workers
    # fork the decoders before ONNX Runtime starts its threads
    pool = mp.get_context("fork").Pool(workers) if workers > 0 and n > 4 else None
    sessions = _bottom_sessions(cache_dir, tuned)
    nv = len(TEN_CROPS) if views == "train" else len(views)
    acts: list[np.ndarray | None] = [None] * len(sessions)
    ok = np.zeros(n, bool)
    errors: dict[int, str] = {}
    jobs = [(i, p, orient, views) for i, p in enumerate(paths)]
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if not pending:
            return
        x = to_input(np.concatenate([v for _, v in pending]), InputContract.for_backbone(BACKBONE))
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

    from upright.pipeline.finetune import print_epoch, train_epochs

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

"""The training loop users can watch: one line per epoch, the best epoch kept, a checkpoint
after every epoch, and `--resume` after a crash or a kill.

Used by `upright train --fine-tune` (the whole backbone) and by bench/_last_blocks.py (the last
blocks on cached activations: measured for --preset accurate, not shipped). The loop is deterministic for a seed and an epoch
(each epoch's shuffling and dropout are seeded by (seed, epoch)), so a resumed run continues
exactly as the uninterrupted one would have.

Checkpoints are one safetensors file (no pickle) in a hidden folder beside the model being
built, `.MODEL.upright-checkpoint/`, written atomically after every epoch: the module's
state, the optimiser's moments, the best epoch's state and the history. Its metadata holds a
key hashed from the run's inputs (the photos' content hashes, labels, backbone and options),
so `--resume` never continues another run's weights. The folder is removed once the model
is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import UprightError, one_line

CHECKPOINT_FORMAT = "upright-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.safetensors"
WARMUP_FRACTION = 0.1  # of all steps: linear warm-up, then cosine decay to 0


def run_key(**inputs) -> str:
    """A hash of everything that decides a run's result (JSON-able values)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_folder(out) -> Path:
    """Where a run building MODEL keeps its checkpoint: a hidden folder beside MODEL."""
    out = Path(out)
    return out.parent / f".{out.name}.upright-checkpoint"


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first WARMUP_FRACTION of the steps, then cosine to 0."""
    warm = max(1, int(total * WARMUP_FRACTION))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


@dataclass
class Checkpoint:
    """The checkpoint of one run (folder + the run's key)."""

    folder: Path
    key: str

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def save(self, tensors: dict, info: dict) -> None:
        from safetensors.torch import save_file

        from ..atomic import atomic_path, clean_leftovers

        self.folder.mkdir(parents=True, exist_ok=True)
        clean_leftovers(self.folder)  # the temp file of a save that was killed
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"format": CHECKPOINT_FORMAT, "version": str(CHECKPOINT_VERSION), "key": self.key,
                "info": json.dumps(info)}
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    def load(self) -> tuple[dict, dict] | None:
        """-> (tensors, info), or None when there is none. Another run's checkpoint is an error."""
        from safetensors import safe_open

        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != str(CHECKPOINT_VERSION):
                    raise UprightError(f"{self.path}: not an upright checkpoint this version reads; "
                                       "remove it or train without --resume")
                if meta.get("key") != self.key:
                    raise UprightError(f"{self.path}: the checkpoint is from another run (other photos or "
                                       "options); remove it or train without --resume")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
                info = json.loads(meta["info"])
        except UprightError:
            raise
        except Exception as exc:  # a damaged file: say so, never half-resume
            raise UprightError(f"{self.path}: unreadable checkpoint ({one_line(exc, 120)}); "
                               "remove it or train without --resume") from None
        return tensors, info

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Epochs:
    """What the loop returns: the kept (best) state, the history and where it started."""

    best_state: dict
    best_epoch: int
    history: list[dict]
    resumed_from: int  # epochs already done when this process started (0: a fresh run)
    seconds: float


def freeze_batchnorm(module) -> None:
    """Train mode, except BatchNorm keeps its ImageNet statistics (small batches, few photos)."""
    import torch

    module.train()
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _better(row: dict, best: dict | None) -> bool:
    """Higher val accuracy, then lower val loss; without val photos every newer epoch wins."""
    if best is None or row.get("val_accuracy") is None:
        return True
    return (row["val_accuracy"], -row["val_loss"]) > (best["val_accuracy"], -best["val_loss"])


@dataclass
class _Loop:
    """The state a run carries from epoch to epoch (and through a checkpoint)."""

    history: list[dict]
    best: dict | None
    best_state: dict
    start: int = 0  # epochs already done


def train_epochs(module, groups: list[dict], *, batches: Callable[[int], Iterable], n_batches: int,
                 evaluate: Callable[[], tuple[float, float]] | None, epochs: int, seed: int = 0,
                 checkpoint: Checkpoint | None = None, resume: bool = False, progress: bool = True,
                 label_smoothing: float = 0.0, weight_decay: float = 1e-4, patience: int | None = None,
                 description: str = "fine-tuning", on_epoch: Callable[[dict, int], None] | None = None) -> Epochs:
    """Train `module` for `epochs` with AdamW (warm-up + cosine), keeping the best epoch.

    groups: [{"params": [...], "lr": peak lr}]. batches(epoch) yields (x, y) tensors, seeded by
    the caller from the epoch; n_batches is their number per epoch. evaluate() -> (val accuracy,
    val loss) with the module as it is (called in eval mode), or None without val photos.
    patience: stop after this many epochs without a better one (early stopping).
    on_epoch(row, epochs) is called after each epoch with its history row.
    """
    import torch

    t0 = time.perf_counter()
    opt = torch.optim.AdamW([{"params": g["params"], "lr": g["lr"]} for g in groups], weight_decay=weight_decay)
    params = [p for g in opt.param_groups for p in g["params"]]
    loop = _Loop([], None, {k: v.detach().clone() for k, v in module.state_dict().items()})
    if checkpoint is not None:
        _start(loop, checkpoint, resume, module, opt, params)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    since_best = 0 if loop.best is None else loop.start - loop.best["epoch"]
    for epoch in range(loop.start, epochs):
        if patience is not None and since_best >= patience:
            break
        te = time.perf_counter()
        torch.manual_seed(seed * 100_003 + epoch)
        losses = _one_epoch(module, opt, loss_fn, batches(epoch), epoch, n_batches, epochs, [g["lr"] for g in groups],
                            f"{description} epoch {epoch + 1}/{epochs}", progress)
        row = _score(module, evaluate, epoch, losses, te)
        loop.history.append(row)
        if _better(row, loop.best):
            loop.best, since_best = row, 0
            loop.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(row, epochs)
        if checkpoint is not None:
            _save(checkpoint, loop, module, opt, params, epoch)
    module.load_state_dict(loop.best_state)
    module.eval()
    return Epochs(best_state=loop.best_state, best_epoch=int(loop.best["epoch"]) if loop.best else 0,
                  history=loop.history, resumed_from=loop.start, seconds=round(time.perf_counter() - t0, 2))


def _start(loop: _Loop, checkpoint: Checkpoint, resume: bool, module, opt, params) -> None:
    """With --resume, continue from the checkpoint (module, optimiser moments, best epoch, history);
    without it, an earlier run's checkpoint is removed (resume is opt-in)."""
    found = checkpoint.load() if resume else None
    if found is None:
        if checkpoint.path.is_file():
            checkpoint.remove()
        return
    tensors, info = found
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("state.")})
    loop.best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    sd = opt.state_dict()
    sd["state"] = {}
    for i in range(len(params)):
        moments = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if moments:
            sd["state"][i] = moments
    opt.load_state_dict(sd)
    loop.history, loop.start = info["history"], int(info["epoch"])
    loop.best = next((h for h in loop.history if h["epoch"] == info["best_epoch"]), None)


def _one_epoch(module, opt, loss_fn, batches, epoch: int, n_batches: int, epochs: int, peaks: list[float],
               description: str, progress: bool) -> list[float]:
    """One pass over the batches (BatchNorm statistics frozen, the learning rate on its schedule)."""
    from ..console import progress as progress_bar

    freeze_batchnorm(module)
    total = max(1, epochs * n_batches)
    losses = []
    with progress_bar(n_batches, description, enabled=progress) as advance:
        for b, (xb, yb) in enumerate(batches):
            f = lr_factor(epoch * n_batches + b, total)
            for g, peak in zip(opt.param_groups, peaks):
                g["lr"] = peak * f
            loss = loss_fn(module(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            advance(1)
    return losses


def _score(module, evaluate, epoch: int, losses: list[float], started: float) -> dict:
    """The epoch's history row: training loss, val accuracy and loss (module in eval mode), seconds."""
    import torch

    module.eval()
    row = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)) if losses else float("nan"), 5),
           "val_accuracy": None, "val_loss": None}
    if evaluate is not None:
        with torch.no_grad():
            acc, vloss = evaluate()
        row["val_accuracy"], row["val_loss"] = round(float(acc), 6), round(float(vloss), 5)
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


def _save(checkpoint: Checkpoint, loop: _Loop, module, opt, params, epoch: int) -> None:
    """The checkpoint after an epoch: module, best state, optimiser moments, history."""
    import torch

    tensors = {f"state.{k}": v for k, v in module.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in loop.best_state.items()}
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            if torch.is_tensor(v):
                tensors[f"opt.{i}.{k}"] = v
    checkpoint.save(tensors, {"epoch": epoch + 1, "history": loop.history, "best_epoch": loop.best["epoch"]})


def print_epoch(row: dict, epochs: int) -> None:
    """One line per epoch on stderr: epoch, training loss, val accuracy and loss, seconds."""
    from ..console import err

    val = (f"val acc {row['val_accuracy']:.3f}  val loss {row['val_loss']:.3f}"
           if row.get("val_accuracy") is not None else "no val photos")
    err.print(f"epoch {row['epoch']}/{epochs}  train loss {row['loss']:.3f}  {val}  {row['seconds']:.1f} s")


# -- fine-tuning the backbone end to end (train --fine-tune) ----------------------------------
FINE_TUNE_LR = 1e-4  # backbone; the head gets 10x
FINE_TUNE_BATCH = 16
DEFAULT_FINE_TUNE_EPOCHS = 3


def read_crops(paths, contract, progress: bool, description: str) -> tuple[np.ndarray, np.ndarray]:
    """The centre crops of `paths`, decoded once through the engine's reader (shards in a process
    pool) -> (uint8 [n_ok, S, S, 3] of the readable ones, ok mask [N])."""
    from ..console import progress as progress_bar
    from .engines import LocalEngine
    from .shard import Job

    crops = np.zeros((len(paths), contract.size, contract.size, 3), np.uint8)
    ok = np.zeros(len(paths), bool)
    with progress_bar(len(paths), description, enabled=progress) as advance:
        for part in LocalEngine().read([Job(i, p, ("id",)) for i, p in enumerate(paths)], contract):
            crops[part.index], ok[part.index] = part.pixels, True
            advance(len(part.index) + len(part.failed))
    return crops[ok], ok


def run_fine_tune(train_paths, y_train, val_paths, y_val, labels, backbone, head, aug_views, *,
                  epochs=DEFAULT_FINE_TUNE_EPOCHS, seed=0, orient=True, progress=True, batch_size=FINE_TUNE_BATCH,
                  lr=FINE_TUNE_LR, checkpoint=None, resume=False):
    """Fine-tune backbone + head end to end through train_epochs (AdamW, warm-up + cosine,
    BatchNorm statistics frozen, one random training variant per image per epoch, from the
    decoded crops held in memory; one line per epoch, the best epoch by val accuracy kept, a
    checkpoint per epoch). Uses CUDA when present. Returns the new head (on raw embeddings),
    the backbone state and figures."""
    import torch

    from .. import backbones
    from ..contract import InputContract

    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    contract = InputContract.for_backbone(backbone, orientation="upright" if orient else "stored")
    crops, ok = read_crops(list(train_paths), contract, progress, "decoding (fine-tune)")
    ytr = np.asarray(y_train)[ok]
    vcrops, vok = read_crops(list(val_paths), contract, False, "") if len(val_paths) else (crops[:0], ok[:0])
    yva = np.asarray(y_val)[vok] if len(val_paths) else np.zeros(0, int)
    net = backbones.torch_module(backbone).to(device)
    lin = torch.nn.Linear(backbones.spec(backbone).dim, len(labels)).to(device)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(head[0]))
        lin.bias.copy_(torch.from_numpy(head[1]))
    classifier = torch.nn.Sequential(net, lin)
    run = train_epochs(classifier, [{"params": list(net.parameters()), "lr": lr},
                                    {"params": list(lin.parameters()), "lr": lr * 10}],
                       batches=_batches(crops, ytr, aug_views, contract, batch_size, seed, device),
                       n_batches=math.ceil(len(crops) / batch_size),
                       evaluate=_evaluator(classifier, vcrops, yva, contract, device) if len(vcrops) else None,
                       epochs=epochs, seed=seed, checkpoint=checkpoint, resume=resume, progress=progress,
                       on_epoch=print_epoch if progress else None)
    best = next((h for h in run.history if h["epoch"] == run.best_epoch), {})
    state = {k: v.detach().cpu().contiguous() for k, v in net.net.state_dict().items()}
    info = {"epochs": epochs, "optimizer": "AdamW, linear warm-up + cosine", "lr_backbone": lr, "lr_head": lr * 10,
            "batch_size": batch_size, "device": device, "batchnorm": "frozen statistics",
            "val_accuracy": best.get("val_accuracy"), "best_epoch": run.best_epoch,
            "kept": "the epoch with the best val accuracy (then val loss)" if len(vcrops) else "the last epoch",
            "history": run.history, "resumed_from_epoch": run.resumed_from,
            "seconds": round(time.perf_counter() - t0, 2)}
    return {"weight": lin.weight.detach().cpu().numpy().astype(np.float32),
            "bias": lin.bias.detach().cpu().numpy().astype(np.float32), "state": state, "info": info}


def _batches(crops, y, aug_views, contract, batch_size: int, seed: int, device: str):
    """batches(epoch) for train_epochs: shuffled by (seed, epoch), one random training view per crop."""
    import torch

    from ..orientation import variant_array
    from .decode import to_input

    def batches(epoch):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(crops))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            views = rng.choice(len(aug_views), len(idx))
            xb = to_input(np.stack([variant_array(crops[i], aug_views[v]) for i, v in zip(idx, views)]), contract)
            yield torch.from_numpy(xb).to(device), torch.from_numpy(y[idx]).to(device)

    return batches


def _evaluator(classifier, crops, y, contract, device: str):
    """evaluate() for train_epochs: (val accuracy, val loss) on the val crops."""
    import torch

    from .decode import to_input

    def evaluate():
        logits = torch.cat([classifier(torch.from_numpy(to_input(crops[s:s + 32], contract)).to(device))
                            for s in range(0, len(crops), 32)])
        target = torch.from_numpy(y).to(device)
        return (float((logits.argmax(1) == target).float().mean()),
                float(torch.nn.functional.cross_entropy(logits, target)))

    return evaluate

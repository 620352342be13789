"""The training loop users can watch (pipeline/finetune.py): one line per epoch, the best epoch kept,
checkpoints after every epoch, and --resume after a SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import upright
from fixtures import make_dataset
from upright.errors import UprightError
from upright.pipeline.finetune import Checkpoint, lr_factor, run_key, train_epochs


def _toy(seed=0):
    """A small torch problem: 3 separable classes in 8-d, an MLP with dropout (uses the seed)."""
    import torch

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (3, 8))
    y = np.repeat(np.arange(3), 20)
    x = (centres[y] + rng.normal(0, 1.0, (60, 8))).astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 3))
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def batches(epoch):
        order = np.random.default_rng([7, epoch]).permutation(40)
        for s in range(0, 40, 10):
            idx = torch.from_numpy(order[s:s + 10])
            yield X[idx], Y[idx]

    def evaluate():
        logits = net(X[40:])
        return float((logits.argmax(1) == Y[40:]).float().mean()), float(torch.nn.functional.cross_entropy(logits, Y[40:]))

    return net, batches, evaluate


def _run(net, batches, evaluate, **kw):
    return train_epochs(net, [{"params": list(net.parameters()), "lr": 0.05}], batches=batches, n_batches=4,
                        evaluate=evaluate, epochs=4, seed=3, progress=False, **kw)


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    net, batches, evaluate = _toy()
    whole = _run(net, batches, evaluate)
    assert [h["epoch"] for h in whole.history] == [1, 2, 3, 4] and whole.resumed_from == 0
    assert whole.best_epoch == max(whole.history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))["epoch"]

    class Killed(Exception):
        pass

    def die_after_two(row, epochs):
        if row["epoch"] == 2:
            raise Killed  # like a SIGKILL after the checkpoint of epoch 1 (this epoch's is never written)

    ck = Checkpoint(tmp_path / ".m.upright-checkpoint", run_key(run="toy"))
    net2, batches2, evaluate2 = _toy()
    with pytest.raises(Killed):
        _run(net2, batches2, evaluate2, checkpoint=ck, on_epoch=die_after_two)
    assert ck.path.is_file()
    net3, batches3, evaluate3 = _toy()
    again = _run(net3, batches3, evaluate3, checkpoint=ck, resume=True)
    assert again.resumed_from == 1 and [h["epoch"] for h in again.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in again.history] == [h["loss"] for h in whole.history]
    for k, v in net.state_dict().items():
        assert np.array_equal(v.numpy(), net3.state_dict()[k].numpy()), k


def test_checkpoint_of_another_run_is_refused(tmp_path):
    net, batches, evaluate = _toy()
    folder = tmp_path / ".m.upright-checkpoint"
    _run(net, batches, evaluate, checkpoint=Checkpoint(folder, run_key(photos=["a"])))
    with pytest.raises(UprightError, match="another run"):
        _run(net, batches, evaluate, checkpoint=Checkpoint(folder, run_key(photos=["b"])), resume=True)
    (folder / "checkpoint.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    with pytest.raises(UprightError, match="unreadable checkpoint"):
        _run(net, batches, evaluate, checkpoint=Checkpoint(folder, run_key(photos=["b"])), resume=True)
    # without --resume an old checkpoint is discarded and the run starts afresh
    fresh = _run(net, batches, evaluate, checkpoint=Checkpoint(folder, run_key(photos=["b"])))
    assert fresh.resumed_from == 0 and len(fresh.history) == 4


def test_early_stopping_and_schedule():
    net, batches, evaluate = _toy()
    run = train_epochs(net, [{"params": list(net.parameters()), "lr": 0.0}], batches=batches, n_batches=4,
                       evaluate=evaluate, epochs=6, progress=False, patience=1)
    assert len(run.history) == 2 and run.best_epoch == 1  # lr 0: nothing improves after epoch 1
    assert lr_factor(0, 100) == pytest.approx(0.1) and lr_factor(10, 100) == pytest.approx(1.0)
    assert lr_factor(99, 100) < 0.01


def test_epochs_has_one_meaning(tmp_path, cli):
    data = make_dataset(tmp_path / "d", 3, ("a", "b"))
    code, out, err = cli("train", data, "-o", tmp_path / "m", "--epochs", "5")
    assert code == 2 and "--epochs counts epochs of --fine-tune" in " ".join(err.split())
    code, out, err = cli("train", data, "-o", tmp_path / "m", "--resume")
    assert code == 2 and "--resume continues a --fine-tune run" in " ".join(err.split())
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_fine_tune_resumes_after_sigkill(tmp_path):
    """A fine-tune killed (SIGKILL) after its first checkpoint; --resume finishes from it."""
    data = make_dataset(tmp_path / "d", 3, ("a", "b"))
    model = tmp_path / "ft"
    ck = tmp_path / ".ft.upright-checkpoint" / "checkpoint.safetensors"
    args = ["train", str(data), "-o", str(model), "--fine-tune", "--epochs", "3"]
    proc = subprocess.Popen([sys.executable, "-c", "from upright.cli import main; main()", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ck.is_file():
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    assert ck.is_file(), err[-2000:]
    assert "epoch 1/3  train loss" in err and not (model / "model.json").exists()
    r = upright.train(data, model, fine_tune=True, epochs=3, resume=True)
    assert r.fine_tune["resumed_from_epoch"] >= 1
    assert [h["epoch"] for h in r.fine_tune["history"]] == [1, 2, 3]
    assert not ck.parent.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d", "ft"]
    m = upright.load_model(model)
    assert m.meta["fine_tune"]["best_epoch"] == r.fine_tune["best_epoch"] and m.backbone_state is not None
    p = m.predict([next(data.rglob("*.jpg"))])[0]
    assert abs(sum(s for _, s in p.predictions) - 1) < 1e-4
    html = (model / "report.html").read_text()
    assert "Learning curves" in html and f"The model keeps epoch {r.fine_tune['best_epoch']}." in html
    headline = html.split('<span class="big">', 1)[1].split("</div>", 1)[0]
    assert "after\nfine-tuning." in headline and "(macro-F1" in headline  # not the head-before's F1 as the tuned one's
    assert json.loads((model / "model.json").read_text())["fine_tune"]["history"] == r.fine_tune["history"]

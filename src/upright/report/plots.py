"""Figures shared by reports: confusion matrix and accuracy per rotation (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def confusion_figure(confusion, labels, title: str = "Confusion matrix"):
    """Counts with row-normalised shading (rows: true label, columns: predicted)."""
    plt = _plt()
    cm = np.asarray(confusion, dtype=float)
    n = len(labels)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(3.5, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=9,
                        color="white" if norm[i, j] > 0.6 else "#1d2433")
    fig.tight_layout()
    return fig


def rotation_figure(rotations: dict, title: str = "Accuracy when every photo is rotated"):
    """Bars of accuracy at 0/90/180/270 degrees (a model that ignores rotation has flat bars)."""
    plt = _plt()
    keys = list(rotations)
    vals = [float(rotations[k]) for k in keys]
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    bars = ax.bar([f"{k}°" for k in keys], vals, color=["#2e7d32"] + ["#1e88e5"] * (len(keys) - 1))
    for b, v in zip(bars, vals):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def learning_curve_figure(history: list[dict], title: str = "Fine-tuning, epoch by epoch"):
    """Training loss and validation accuracy per epoch (history rows: epoch, loss, val_accuracy)."""
    plt = _plt()
    epochs = [int(h["epoch"]) for h in history]
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    ax.plot(epochs, [float(h["loss"]) for h in history], "o-", color="#c62828", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="#c62828")
    ax.set_xticks(epochs)
    acc = [(e, float(h["val_accuracy"])) for e, h in zip(epochs, history) if h.get("val_accuracy") is not None]
    if acc:
        ax2 = ax.twinx()
        ax2.plot([e for e, _ in acc], [a for _, a in acc], "s-", color="#1e88e5", label="val accuracy")
        ax2.set_ylabel("val accuracy", color="#1e88e5")
        ax2.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig

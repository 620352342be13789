"""Classification figures from labels and predictions, shared by `eval` and the train report.

Pure numpy: one home for how accuracy, per-class precision/recall/F1, macro-F1 and the
confusion matrix are counted, so the report and the eval JSON never disagree.
"""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1 (None where undefined), macro-F1, confusion matrix.

    Precision is undefined (None) for a class nothing was predicted as, recall and F1 for a
    class absent from the data; macro-F1 averages the classes present in the data.
    """
    n_cls = len(labels)
    cm = np.zeros((n_cls, n_cls), int)
    np.add.at(cm, (y_true, y_pred), 1)
    per = {}
    f1s = []
    for i, lab in enumerate(labels):
        tp, col, row = cm[i, i], cm[:, i].sum(), cm[i].sum()
        f1 = round(float(2 * tp / (row + col)), 6) if row else None
        per[lab] = {"precision": round(float(tp / col), 6) if col else None,
                    "recall": round(float(tp / row), 6) if row else None, "f1": f1, "n": int(row)}
        if f1 is not None:
            f1s.append(f1)
    return {"accuracy": round(float((y_true == y_pred).mean()), 6) if len(y_true) else 0.0,
            "per_class": per, "confusion": cm.tolist(),
            "macro_f1": round(float(np.mean(f1s)), 6) if f1s else None}


__all__ = ["classification_metrics"]

"""The serve page's turn test: the picture as is and turned 90/180/270 degrees clockwise,
answered in one model call (a batch of four), with a one-line verdict.

This is the soda-can team's debugging moment: a model that learned how the phone stored the
pixels changes its answer when the picture is turned; one that learned the object does not.
"""

from __future__ import annotations

from PIL import Image

from ..orientation import ROTATIONS, TURNS, turn_verdict, variant_image
from ..report.html import image_data_url

THUMB_LONG_SIDE = 192  # each turned view on the page (4 side by side on a phone)


def turned(image: Image.Image) -> list[Image.Image]:
    """The model's input as is and turned 90, 180, 270 degrees clockwise (TURNS order)."""
    return [variant_image(image, ROTATIONS[d]) for d in TURNS]


def thumbnails(images: list[Image.Image]) -> list[str]:
    """Small untagged JPEG data URLs of the turned views, for the page."""
    return [image_data_url(im, THUMB_LONG_SIDE) for im in images]


def turn_json(predictions: list[list[tuple[str, float]]], views: list[str]) -> dict:
    """{"turns": [{"degrees", "label", "score", "predictions", "view"}], "changes", "verdict"}."""
    turns = []
    for d, preds, view in zip(TURNS, predictions, views):
        top = preds[0] if preds else ("", 0.0)
        turns.append({
            "degrees": d, "label": str(top[0]), "score": float(top[1]),
            "predictions": [{"label": str(lab), "score": float(s)} for lab, s in preds],
            "view": view,
        })
    changes, verdict = turn_verdict({t["degrees"]: t["label"] for t in turns})
    return {"turns": turns, "changes": changes, "verdict": verdict}

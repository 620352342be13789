"""The training recipes, one home for their names (the CLI's choices read them here).

`--augment`: the views each training photo is embedded in (AUGMENT_VARIANTS; the default
`flip` keeps the model's sense of "up", `d4` is for pictures with no natural up).

`--preset fast` (the default): the backbone `backbones.DEFAULT` (or --backbone) on the
--augment views. `--preset accurate`: Lite0 and Lite2 together, a linear head fitted on 10 crops
of every photo, and the same 10 crops averaged at test time.

What accurate does differently from the fast preset (Lite0 alone, the centre crop and its mirror):
the composite backbone "efficientnet-lite0+lite2" (both networks on one 260-px input, pooled
features concatenated, 2560-d), and views that are the classic 10 crops of the picture resized
to the backbone's short side (297 px): the centre and the four corners, each also mirrored
(upright.views.TEN_CROPS). The head is the fast preset's (head.py: l2 chosen on the val photos,
then fitted on train + val); its test views are the same 10 crops, so the model averages its
probabilities over them. The model folder is an ordinary one (composite backbone, test views
the 10 crops) and every verb uses it unchanged: predict, eval (its rotation check turns the
photo and takes the same 10 crops of it), serve, and export (the ONNX graph takes one centre
crop and averages the centre views; `export` says so, see export.py).

Measured in bench/accuracy.py (5-fold CV on flowers-500, docs/accuracy.md "Accuracy: fast or accurate"),
which also tried fine-tuning the last block of each network on activations cached once per
view (bench/_last_blocks.py): it scored below these frozen features, so it is not the preset.

The 10 views are ordinary cached embeddings (upright.pipeline.embed.embed_paths, any engine): the
first training run embeds them, a re-train decodes nothing (fitting the head on 10 views is most
of its time), and predicting a photo seen before costs no network run.

An accurate run also embeds every photo as the fast preset does (Lite0, the centre crop and its
mirror; the same cached rows a fast run would use) and reports the val accuracy the fast preset
reaches on the same photos and split (train.fast_val_accuracy: the same head.select_head a fast
run makes), so the summary can say when fast is as good at a ninth of the cost per prediction.
Measured costs (docs/accuracy.md "Costs, measured"): 400 photos on a shared 2-core machine, fast 40 s cold
and 7 s warm, accurate 321 s cold and 38 s warm.
"""

from __future__ import annotations

from .errors import UprightError
from .orientation import VARIANTS
from .views import TEN_CROPS

PRESETS = ("fast", "accurate")
DEFAULT_PRESET = "fast"
#: --augment: the training views of each photo, embedded once and cached
AUGMENT_VARIANTS: dict[str, tuple[str, ...]] = {
    "none": ("id",), "flip": ("id", "flip"), "rotate": ("id", "r90", "r180", "r270"), "d4": tuple(VARIANTS)}
DEFAULT_AUGMENT = "flip"


def augment_variants(augment: str) -> tuple[str, ...]:
    """The training views `--augment` names; an unknown name is a usage error (train and embed)."""
    if augment not in AUGMENT_VARIANTS:
        raise UprightError(f"unknown --augment '{augment}' ({', '.join(AUGMENT_VARIANTS)})")
    return AUGMENT_VARIANTS[augment]

#: --preset accurate
BACKBONE = "efficientnet-lite0+lite2"
#: the training views in cache order: the crops, then the same mirrored ("id" and "flip" are the
#: centre crop and its mirror, the standard variants)
VIEW_NAMES = TEN_CROPS
#: what the model averages at test time: every training view (measured: +1.2 points over centre + mirror)
TEST_VIEWS = TEN_CROPS

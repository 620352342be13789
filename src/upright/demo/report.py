"""The demo's one self-contained HTML page: the story told with pictures.

Sections: the two numbers; how the photos were made; as stored vs as seen; the audit's
finding; the two trainings; both confusion matrices and rotation checks; what to do.
Every picture is read through imaging.py and inlined as a data URL (no network, no files).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UnreadableImage, UprightError
from ..report.html import esc, figure_data_url, image_data_url, page
from ..imaging import open_image

EXTRA_CSS = """<style>
.duo{display:flex;gap:16px;flex-wrap:wrap}.duo>.card{flex:1 1 320px}
.bad{color:#c62828}.good{color:#2e7d32}figure{margin:0}figcaption{font-size:12px;color:#5b6475}
</style>"""


def _pair(path: str, label: str) -> str:
    try:
        stored = open_image(path, size=150, orient=False)
        upright = open_image(path, size=150).image
    except UnreadableImage as exc:
        return f'<div class="thumb">{esc(exc.reason)}</div>'
    tag = stored.orientation.tag
    return (
        '<div class="thumb"><div class="pair">'
        f'<figure><img src="{image_data_url(stored.image, 120)}" alt="as stored"><figcaption>as stored'
        '</figcaption></figure>'
        f'<figure><img src="{image_data_url(upright, 120)}" alt="as seen"><figcaption>as seen (upright)'
        '</figcaption></figure></div>'
        f'<div><b>{esc(label)}</b> · {esc(os.path.basename(path))} · EXIF Orientation {esc(tag)}</div></div>'
    )


def _finding(f: dict) -> str:
    sev = f["severity"]
    title = f["kind"] + (f" · {f['attribute']}" if f.get("attribute") else "")
    parts = [f'<div class="card {esc(sev)}"><span class="badge {esc(sev)}">{esc(sev)}</span><b>{esc(title)}</b>'
             f'<p>{esc(f["message"])}</p>']
    t = f.get("table")
    if f.get("kind") == "label_leak" and t:
        head = "".join(f"<th>{esc(lab)}</th>" for lab in t["labels"])
        rows = "".join(f"<tr><th>{esc(v)}</th>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                       for v, row in zip(t["values"], t["counts"]))
        parts.append(f"<table><tr><th>{esc(f['attribute'])} \\ class</th>{head}</tr>{rows}</table>")
    parts.append("</div>")
    return "".join(parts)


def _model_card(key: str, r: dict, labels: list[str]) -> str:
    from ..report.plots import confusion_figure, rotation_figure

    cls = "bad" if key == "naive" else "good"
    title = "Naive: pixels as stored, tag ignored" if key == "naive" else "upright: photos read upright"
    recalls = ", ".join(f"{lab} {r['per_class'][lab]['recall']:.0%}" for lab in labels)
    cm = figure_data_url(confusion_figure(r["confusion"], labels, title=f"{title.split(':')[0]}: confusion"))
    rot = figure_data_url(rotation_figure(r["rotations"], title="Accuracy with the test photos rotated"))
    return (f'<div class="card"><h3>{esc(title)}</h3><p class="sub">{esc(r["how"])}</p>'
            f'<p><span class="big {cls}">{r["accuracy"]:.1%}</span> on the upright test photos '
            f'(validation split from the same phones: {r["val_accuracy"]:.1%}). Recall: {esc(recalls)}.</p>'
            f'<img class="plot" alt="confusion matrix" src="{cm}">'
            f'<img class="plot" alt="accuracy per rotation" src="{rot}"></div>')


def _drop(rotations: dict) -> float:
    return max(abs(float(v) - float(rotations["0"])) for v in rotations.values())


def render(result: dict, audit: dict, data) -> str:
    from ..audit.report import orientation_plot

    labels = list(data.labels)
    naive, upright = result["naive"], result["upright"]
    gap = upright["accuracy"] - naive["accuracy"]
    sideways = [lab for lab in labels if any(p["orientation"] == 6 for p in data.phones[lab])]
    body = [EXTRA_CSS]
    body.append(
        '<div class="duo">'
        f'<div class="card"><div class="sub">Naive loader (tag ignored)</div><div class="big bad">'
        f'{naive["accuracy"]:.1%}</div><div class="sub">on upright test photos</div></div>'
        f'<div class="card"><div class="sub">upright</div><div class="big good">{upright["accuracy"]:.1%}</div>'
        f'<div class="sub">on the same test photos</div></div>'
        f'<div class="card"><div class="sub">Difference</div><div class="big">{gap * 100:+.1f} points</div>'
        f'<div class="sub">same files, same backbone ({esc(result.get("backbone", "?"))}), same head, same seed; only the '
        'way the pixels are read differs</div></div></div>')

    body.append("<h2>1. How the photos were made</h2><ul>"
                + "".join(f"<li>{esc(line)}</li>" for line in data.story()) + "</ul>"
                f'<p class="sub">Dataset: <code>{esc(data.train_dir)}</code> (training) and '
                f'<code>{esc(data.test_dir)}</code> (test).</p>')

    body.append("<h2>2. As stored vs as seen</h2>"
                "<p>Left: the pixels in the file, which is what a loader that ignores the EXIF tag feeds the "
                "model. Right: the photo as the phone, every viewer and upright show it. "
                f"Every <b>{esc(', '.join(sideways))}</b> training photo is stored lying on its side.</p>")
    thumbs = []
    for lab in labels:
        for p in data.examples.get(lab, [])[:4]:
            thumbs.append(_pair(p, lab))
    body.append(f'<div class="grid">{"".join(thumbs)}</div>')

    body.append("<h2>3. The audit, before any training</h2>"
                f"<p><code>upright audit</code> read the headers of the {audit['n_images']} training photos and "
                "asked whether a file attribute alone predicts the class.</p>")
    from .story import orientation_finding

    main = orientation_finding(audit["findings"])
    if main is not None:
        body.append(_finding(main))
    else:
        body.append('<div class="card error">The audit did not report the orientation shortcut.</div>')
    table = (audit.get("attributes") or {}).get("exif_orientation")
    if table:
        try:
            url = orientation_plot(table)
        except Exception:  # a plot is a nicety; the report must still be written
            url = None
        if url:
            body.append(f'<img class="plot" alt="orientation by class" src="{url}">')
    others = [f for f in audit["findings"] if f is not main]
    if others:
        body.append("<p>Other findings:</p>" + "".join(_finding(f) for f in others))

    body.append(
        "<h2>4. Two models, one difference</h2>"
        "<p>Both models were trained by <code>upright train</code>'s own code on the same files: frozen "
        f"{esc(result.get('backbone', ''))} embeddings, a regularised softmax head chosen on a validation split, flip "
        "augmentation. The naive run reads every photo with the tag ignored, exactly as Pillow's plain "
        "<code>Image.open</code>, torchvision's <code>ImageFolder</code>, Keras and <code>tf.io</code> do; "
        "its model folder records that policy, so it also predicts that way. The test photos are stored "
        "upright, so both models see them identically.</p>"
        f'<div class="duo">{_model_card("naive", naive, labels)}{_model_card("upright", upright, labels)}</div>')

    body.append(
        "<h2>5. What happened</h2>"
        f"<p>To a network pretrained on ImageNet, a photo lying on its side is a loud signal; a warmer or cooler "
        f"white balance is a quiet one. Fed the stored pixels, the naive model learned "
        f"\"sideways = {esc(', '.join(sideways))}\". Its validation score ({naive['val_accuracy']:.0%}) looked "
        "fine because the validation photos came from the same phones. On upright photos the shortcut points "
        f"the wrong way, and it finds {naive['per_class'][sideways[0]]['recall']:.0%} of the "
        f"'{esc(sideways[0])}' photos. Read upright, the same files teach the real difference.</p>"
        f"<p>The rotation check turns every test photo 90/180/270°. The upright model moves by at most "
        f"{_drop(upright['rotations']) * 100:.0f} points: the colour of the light does not depend on which "
        f"way is up. The naive model moves by up to {_drop(naive['rotations']) * 100:.0f} points: it decides "
        "by the way up. Neither was trained with rotations; train with <code>--augment d4</code> if photos "
        "may arrive turned for real (scans, pictures of pictures, photos of screens); "
        "<code>bench/shortcut.py</code> measures what it buys on flowers.</p>"
        "<h2>Try it yourself</h2><pre>"
        f"upright audit {esc(data.train_dir)} --report audit.html\n"
        f"upright train {esc(data.train_dir)} -o model\n"
        f"upright eval model {esc(data.test_dir)} --report eval.html</pre>")
    return page("upright demo: the sideways shortcut",
                body, f"{sum(data.n_train.values())} training photos, {sum(data.n_test.values())} test photos, "
                      "made offline from photos bundled with scikit-image and matplotlib")


def write_report(result: dict, audit: dict, data, path) -> Path:
    path = Path(path)
    try:
        atomic_write_text(path, render(result, audit, data))
    except OSError as exc:
        raise UprightError(f"cannot write the report {path}: {exc.strerror or exc}") from exc
    return path

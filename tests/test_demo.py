"""`upright demo` end to end (small mode: 24 training photos per class), through the CLI.

Asserts the story, not speed: the naive loader is clearly worse on upright photos, the
audit reports the orientation shortcut, the JSON has its keys, the report has pictures.
"""

from __future__ import annotations

import json
import re

import pytest

from upright.cli import main
from upright.demo.report import orientation_finding
from upright.demo.data import build_dataset
from upright.imaging import open_image


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(out), "--json", "--photos", "24"])
    assert exit_info.value.code in (0, None)
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout holds the JSON only
    assert result["cpu_seconds"] > 0 and result["seconds"] > 0  # the time it prints is measured
    for key in ("naive_accuracy", "upright_accuracy", "findings", "report", "gap", "naive", "upright"):
        assert key in result
    # the gap is real and large, and goes the right way
    assert result["upright_accuracy"] >= 0.75, result["upright_accuracy"]
    assert result["upright_accuracy"] - result["naive_accuracy"] >= 0.15, (result["naive_accuracy"],
                                                                           result["upright_accuracy"])
    # the naive model was trained on stored pixels, and its model folder says so
    naive_meta = json.loads((out / "models" / "naive" / "model.json").read_text())
    upright_meta = json.loads((out / "models" / "upright" / "model.json").read_text())
    assert naive_meta["orientation_policy"] == "stored" and upright_meta["orientation_policy"] == "upright"
    # same backbone, weights, preprocessing, augmentation, head type; only the policy differs
    # (l2 and test views are chosen on each run's own validation split by the same procedure)
    chosen = ("orientation_policy", "training", "head", "test_views", "head_sha256")  # the hash of differing weights
    assert {k: v for k, v in naive_meta.items() if k not in chosen} == \
        {k: v for k, v in upright_meta.items() if k not in chosen}
    assert naive_meta["head"]["type"] == upright_meta["head"]["type"]
    # the audit found the orientation shortcut
    finding = orientation_finding(result["findings"])
    assert finding is not None and finding["severity"] in ("warning", "error")
    assert result["orientation_finding"] is True
    # rotation check present for both
    assert set(result["naive"]["rotations"]) == {"0", "90", "180", "270"}
    # the report exists, is self-contained and shows pictures (thumbnails and plots)
    html = (out / "upright-demo-report.html").read_text()
    assert result["report"] == str(out / "upright-demo-report.html")
    assert len(re.findall(r'src="data:image/(jpeg|png);base64,', html)) >= 8
    assert "http://" not in html and "https://" not in html
    assert "as stored" in html and "exif_orientation" in html
    title = f'{finding["kind"]} · {finding["attribute"]}'  # the main finding, not again among the others
    assert html.count(title) == 1, html.count(title)
    # the story is told on stderr
    assert "Orientation 6" in captured.err


def test_demo_data_is_what_it_says(tmp_path):
    data = build_dataset(tmp_path / "d", per_class=10, test_per_class=4, seed=1)
    warm = sorted((data.train_dir / "warm").glob("*.jpg"))
    cool = sorted((data.train_dir / "cool").glob("*.jpg"))
    assert len(warm) == len(cool) == 10
    for p in warm:
        d = open_image(p, orient=False)
        assert d.orientation.tag == 6 and d.image.size == (360, 480)  # stored sideways
        assert open_image(p).image.size == (480, 360)  # shown upright (landscape)
    for p in cool + sorted(data.test_dir.rglob("*.jpg")):
        d = open_image(p, orient=False)
        assert d.orientation.tag == 1 and d.image.size == (480, 360)
    # warm really is warmer (the learnable content difference), on the upright pictures
    import numpy as np

    def red_blue(paths):
        a = np.stack([np.asarray(open_image(p, size=64).image, np.float32).mean((0, 1)) for p in paths])
        return float((a[:, 0] / (a[:, 2] + 1)).mean())

    assert red_blue(warm) > red_blue(cool) * 1.3
    assert (data.root / "HOW-THIS-DATA-WAS-MADE.txt").is_file()


def test_demo_refuses_a_non_empty_out(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_naive_view_is_what_exif_ignoring_loaders_see(tmp_path):
    """The naive run's pixels are exactly torchvision's pil_loader / plain Pillow output."""
    import numpy as np
    from PIL import Image

    data = build_dataset(tmp_path / "d", per_class=10, test_per_class=4, seed=2)
    for p in sorted((data.train_dir / "warm").glob("*.jpg"))[:3]:
        with open(p, "rb") as f:
            plain = Image.open(f).convert("RGB")  # torchvision.datasets.folder.pil_loader
        ours = open_image(p, orient=False).image
        assert plain.size == ours.size
        assert np.array_equal(np.asarray(plain), np.asarray(ours))

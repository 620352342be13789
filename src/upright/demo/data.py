"""The demo's photo dataset: real bundled photos, "shot" by simulated phones.

Why the data looks like this (the soda-can story, measured):

* Both classes are the SAME scenes (photos that ship inside scikit-image and matplotlib),
  random crops at random scales with random exposure, contrast and saturation. The only
  difference between the classes is the light: ``warm`` photos have a warm (tungsten-like)
  white balance, ``cool`` photos a cool (daylight-like) one. That difference is real and
  learnable (the upright model scores 90-96%), but subtle, like Diet Coke vs Coke Zero cans.
* ``warm`` was shot with two phones that store the sensor's pixels sideways and write EXIF
  Orientation 6 (what most phones do); ``cool`` with a phone that turns the pixels itself
  and writes Orientation 1. A viewer (and upright) shows every photo upright; a loader that
  ignores the tag sees every ``warm`` photo lying on its side.
* To a frozen ImageNet backbone "lying on its side" is a far louder signal than a colour
  cast, so a head trained on the stored pixels learns "sideways = warm" and calls every
  upright photo ``cool``. The test photos are new shots of both classes, stored upright.

No network: every source photo is read from an installed package's data folder.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ..errors import UprightError
from ..imaging import open_upright, store_as

PICTURE_SIZE = (480, 360)  # the upright picture every simulated phone takes (landscape 4:3)
LIGHT_STRENGTH = 0.25  # white-balance gain offset: warm = R x1.25, B x0.75; cool the opposite
LIGHT_JITTER = 0.03  # per-photo white-balance wobble, so the light is not a constant

LABELS = ("cool", "warm")
DEFAULT_PHOTOS = 60  # training photos per class


def test_photos_for(per_class: int) -> int:
    """Test photos per class for `per_class` training photos: two thirds as many, at least 4."""
    return max(4, per_class * 2 // 3)


@dataclass(frozen=True)
class Phone:
    make: str
    model: str
    orientation: int  # the EXIF Orientation it writes (6 = pixels stored sideways)
    prefix: str  # file-name style

    @property
    def name(self) -> str:
        return f"{self.make} {self.model}"

    @property
    def stores(self) -> str:
        return ("pixels stored sideways + EXIF Orientation 6 (rotate 90° clockwise to view)"
                if self.orientation == 6 else "pixels stored upright, EXIF Orientation 1")


PHONES = {
    "warm": (Phone("Simulated", "Phone A", 6, "IMG_"), Phone("Simulated", "Phone B", 6, "PXL_")),
    "cool": (Phone("Simulated", "Phone C", 1, "DSC"),),
}
TEST_PHONE = Phone("Simulated", "Phone C", 1, "TEST_")  # stores upright: test photos look the same to everyone


# -- source photos ----------------------------------------------------------------------
def _skimage(name):
    def load():
        import skimage.data as data

        arr = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        return Image.fromarray(np.asarray(arr)).convert("RGB")
    return load


def _matplotlib(filename):
    def load():
        import matplotlib.cbook as cbook

        with cbook.get_sample_data(filename) as f:
            return open_upright(f.read())
    return load


# (name, where it ships, loader). Photos with a clear up and down: that is what a sideways
# phone turns. Textures (grass, gravel) and top-down shots (coins, moon) would not show it.
SOURCES = [
    ("astronaut", "scikit-image", _skimage("astronaut")),
    ("coffee", "scikit-image", _skimage("coffee")),
    ("chelsea (cat)", "scikit-image", _skimage("chelsea")),
    ("rocket", "scikit-image", _skimage("rocket")),
    ("motorcycle", "scikit-image", _skimage("motorcycle")),
    ("camera(man)", "scikit-image", _skimage("camera")),
    ("grace_hopper", "matplotlib", _matplotlib("grace_hopper.jpg")),
]


def load_sources() -> list[tuple[str, str, Image.Image]]:
    """The bundled photos that load offline on this install. Needs at least three."""
    found = []
    for name, package, load in SOURCES:
        try:
            found.append((name, package, load()))
        except Exception:  # package missing, or a fetcher that wants the network
            continue
    if len(found) < 3:
        raise UprightError(
            "the demo needs the photos bundled with scikit-image (install it with "
            "`pip install 'upright[demo]'`); found only "
            + (", ".join(n for n, _, _ in found) or "none"))
    return found


# -- one "shot" -----------------------------------------------------------------------------
def _shot(src: Image.Image, rng: np.random.Generator, light: str, strength: float = LIGHT_STRENGTH) -> Image.Image:
    """A new photo of a scene: random framing and zoom, exposure, contrast, saturation, light."""
    w, h = src.size
    tw, th = PICTURE_SIZE
    scale = rng.uniform(0.5, 0.92)
    cw = min(w, int(round(min(w, h * tw / th) * scale)))
    ch = min(h, int(round(cw * th / tw)))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    bw, bh = int(tw * 1.12), int(th * 1.12)
    im = src.crop((x, y, x + cw, y + ch)).resize((bw, bh), Image.Resampling.BICUBIC)
    angle = rng.uniform(-4, 4)  # hand-held: never perfectly level (the 12% margin hides the corners)
    im = im.rotate(angle, Image.Resampling.BILINEAR, expand=False)
    left, top = (bw - tw) // 2, (bh - th) // 2
    im = im.crop((left, top, left + tw, top + th))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.75, 1.25))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.8, 1.2))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.75, 1.25))
    s = strength + rng.uniform(-LIGHT_JITTER, LIGHT_JITTER)
    sign = 1.0 if light == "warm" else -1.0
    gains = np.array([1 + sign * s, 1.0, 1 - sign * s], np.float32)
    arr = np.asarray(im, np.float32) * gains
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def _encode(picture: Image.Image, phone: Phone, quality: int) -> bytes:
    """The JPEG bytes this phone writes for this (upright) picture."""
    exif = Image.Exif()
    exif[0x0112] = phone.orientation  # no make/model: the only per-class difference in the files
    # is how the pixels are stored (the audit would otherwise report the camera first)
    buf = io.BytesIO()
    store_as(picture, phone.orientation).save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


@dataclass
class DemoData:
    root: Path
    train_dir: Path  # root/photos: the phone-shot training photos (one folder per class)
    test_dir: Path  # root/test-photos: new photos of both classes, stored upright
    labels: tuple[str, ...]
    n_train: dict[str, int]
    n_test: dict[str, int]
    sources: list[str]
    phones: dict[str, list[dict]]
    examples: dict[str, list[str]] = field(default_factory=dict)  # label -> a few training paths

    def story(self) -> list[str]:
        """How the data was made, in plain sentences (printed and put in the report)."""
        src = ", ".join(self.sources)
        lines = [
            f"Source photos: {len(self.sources)} real photos bundled with scikit-image and matplotlib "
            f"({src}). Every demo photo is a new random crop of one of them (random framing, zoom, "
            "slight tilt, exposure, contrast and saturation), saved as a phone JPEG.",
            f"Two classes of the SAME scenes: 'warm' photos have a warm white balance (red x{1 + LIGHT_STRENGTH:.2f}, "
            f"blue x{1 - LIGHT_STRENGTH:.2f}), 'cool' photos a cool one. A real but subtle difference, "
            "like Diet Coke vs Coke Zero.",
        ]
        for label in self.labels:
            ph = "; ".join(f"{p['name']} ({p['stores']})" for p in self.phones[label])
            lines.append(f"Training '{label}' ({self.n_train[label]} photos) was shot with {ph}.")
        lines.append(
            f"Test photos ({sum(self.n_test.values())}, new shots of both classes) were taken with "
            f"{TEST_PHONE.name}, which stores pixels upright: every loader sees them the same way.")
        lines.append("So a loader that ignores the EXIF tag sees every 'warm' training photo lying on its "
                     "side and every 'cool' one upright; upright shows them all as the phone user saw them.")
        return lines


def build_dataset(root, *, per_class: int = DEFAULT_PHOTOS, test_per_class: int | None = None, seed: int = 0,
                  strength: float = LIGHT_STRENGTH) -> DemoData:
    """Write root/photos/<label>/*.jpg (phone-shot) and root/test-photos/<label>/*.jpg (upright)."""
    root = Path(root)
    test_per_class = test_photos_for(per_class) if test_per_class is None else test_per_class
    train_dir, test_dir = root / "photos", root / "test-photos"
    for d in (train_dir, test_dir):
        if d.exists() and any(d.rglob("*")):
            raise UprightError(f"{d}: already exists and is not empty (choose another --out)")
    sources = load_sources()
    rng = np.random.default_rng(seed)
    n_train, n_test, examples = {}, {}, {}
    for label in LABELS:
        phones = PHONES[label]
        for split, folder, n in (("train", train_dir, per_class), ("test", test_dir, test_per_class)):
            out = folder / label
            out.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # every scene in turn, so both classes hold the same mix of scenes
                _name, _pkg, src = sources[i % len(sources)]
                picture = _shot(src, rng, label, strength)
                phone = phones[i % len(phones)] if split == "train" else TEST_PHONE
                number = 1000 + 37 * i + (0 if label == "cool" else 5000)
                path = out / f"{phone.prefix}{number:04d}.jpg"
                path.write_bytes(_encode(picture, phone, int(rng.integers(86, 96))))
                if split == "train" and i < 4:
                    examples.setdefault(label, []).append(str(path))
            (n_train if split == "train" else n_test)[label] = n
    data = DemoData(
        root=root, train_dir=train_dir, test_dir=test_dir, labels=LABELS, n_train=n_train, n_test=n_test,
        sources=[f"{n} ({pkg})" for n, pkg, _ in sources],
        phones={lab: [{"name": p.name, "orientation": p.orientation, "stores": p.stores} for p in PHONES[lab]]
                for lab in LABELS},
        examples=examples,
    )
    (root / "HOW-THIS-DATA-WAS-MADE.txt").write_text(
        "upright demo dataset\n\n" + "\n\n".join(data.story()) + "\n\n"
        "Explore it:\n  upright audit photos\n  upright train photos -o model\n"
        "  upright eval model test-photos\n", encoding="utf-8")
    (root / "demo-data.json").write_text(json.dumps({
        "seed": seed, "per_class": per_class, "test_per_class": test_per_class,
        "light_strength": strength, "sources": data.sources, "phones": data.phones,
    }, indent=2), encoding="utf-8")
    return data

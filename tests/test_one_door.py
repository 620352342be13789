"""The product's core promise: only imaging.py opens or decodes images."""

from __future__ import annotations

import re
from pathlib import Path

import upright

PACKAGE = Path(upright.__file__).parent
DOORS = re.compile(
    r"Image\.open\s*\(|cv2\.(imread|imdecode)|imageio|decode_(jpeg|png|image)|pillow_heif\.(open|read)_heif"
    r"|ImageFile\.Parser|Image\.frombuffer|skimage\.io|turbojpeg|simplejpeg"
)


def test_no_second_door_for_pixels():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "imaging.py" and path.parent == PACKAGE:
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if DOORS.search(code):
                offenders.append(f"{path.relative_to(PACKAGE)}:{no}: {line.strip()}")
    assert not offenders, "images opened outside imaging.py:\n" + "\n".join(offenders)


def test_the_door_itself_is_there():
    text = (PACKAGE / "imaging.py").read_text()
    assert "Image.open(" in text and "def open_upright" in text

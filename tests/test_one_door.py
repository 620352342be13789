"""The product's core promise: only imaging.py opens or decodes images.

The check reads each module's syntax tree, so renaming does not hide a door: every name is
resolved through the module's imports (`from PIL import Image as I`, `import PIL.Image`,
`from PIL.Image import open as o`), through `importlib.import_module("...")` / `__import__`,
names bound to those, and `getattr(obj, "name")`, before it is compared with the doors below.
It also follows what `imaging.open_header(...)` returns (`with open_header(p) as im`, or
`im = open_header(p)...`): a header is for reading tags, and calling a method on it that
decodes pixels (`im.load()`, `im.convert(...)`, ...) is a second door, one that would skip the
door's cost checks. Decoding goes through `open_image` / `open_pixels`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import upright

PACKAGE = Path(upright.__file__).parent

#: Qualified names that decode pixels (a module name forbids everything in it).
DOORS = (
    "PIL.Image.open", "PIL.Image.frombuffer", "PIL.ImageFile.Parser",
    "cv2.imread", "cv2.imdecode", "cv2.imreadmulti",
    "pillow_heif.open_heif", "pillow_heif.read_heif",
    "imageio", "skimage.io", "turbojpeg", "simplejpeg",
)
#: Decoder functions whatever module they come from (tf.io, torchvision.io, ...).
DOOR_SUFFIXES = ("decode_jpeg", "decode_png", "decode_image")
#: Methods of a Pillow image that decode its pixels (forbidden on an open_header result).
DECODING_METHODS = ("load", "convert", "copy", "crop", "resize", "reduce", "thumbnail", "transpose", "rotate",
                    "tobytes", "getdata", "getpixel", "getextrema", "histogram", "split", "save", "filter")


def _is_door(qualified: str) -> bool:
    if qualified.rsplit(".", 1)[-1] in DOOR_SUFFIXES:
        return True
    return any(qualified == d or qualified.startswith(d + ".") for d in DOORS)


class _Doors(ast.NodeVisitor):
    def __init__(self):
        self.names: dict[str, str] = {}  # local name -> qualified name
        self.headers: set[str] = set()  # local names bound to what open_header returns
        self.found: list[tuple[int, str]] = []

    def _is_header_call(self, node: ast.AST) -> bool:
        """open_header(...), however it was imported (relative imports included)."""
        if not isinstance(node, ast.Call):
            return False
        qualified = self.resolve(node.func) or ""
        plain = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        return qualified.endswith("open_header") or plain == "open_header"

    def resolve(self, node: ast.AST) -> str | None:
        """The qualified name an expression stands for, when it is known."""
        if isinstance(node, ast.Name):
            return self.names.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call):
            func = self.resolve(node.func)
            text = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                    for a in node.args]
            if func == "importlib.import_module" and text and text[0]:
                return text[0]
            if func == "builtins.__import__" and text and text[0]:
                return text[0].split(".")[0]  # __import__("a.b") returns the package a
            if func == "builtins.getattr" and len(text) >= 2 and text[1]:
                base = self.resolve(node.args[0])
                return f"{base}.{text[1]}" if base else None
        return None

    def flag(self, node: ast.AST, qualified: str | None) -> None:
        if qualified and _is_door(qualified):
            self.found.append((getattr(node, "lineno", 0), qualified))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.asname:
                self.names[a.asname] = a.name
            else:
                top = a.name.split(".")[0]
                self.names[top] = top
            self.flag(node, a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative imports are the package's own modules
            return
        for a in node.names:
            qualified = f"{node.module}.{a.name}"
            self.names[a.asname or a.name] = qualified
            self.flag(node, qualified)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        qualified = self.resolve(node.value)
        value = node.value.func.value if isinstance(node.value, ast.Call) and \
            isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "__enter__" else node.value
        for target in node.targets:
            if isinstance(target, ast.Name) and qualified:
                self.names[target.id] = qualified
            if isinstance(target, ast.Name) and self._is_header_call(value):
                self.headers.add(target.id)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if isinstance(item.optional_vars, ast.Name) and self._is_header_call(item.context_expr):
                self.headers.add(item.optional_vars.id)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        qualified = self.resolve(node)
        if qualified and _is_door(qualified):
            self.flag(node, qualified)
            return  # one report per expression, not one per prefix
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self.flag(node, self.names.get(node.id))

    def visit_Call(self, node: ast.Call) -> None:
        qualified = self.resolve(node)
        if qualified and _is_door(qualified):
            self.flag(node, qualified)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in DECODING_METHODS and (
                (isinstance(func.value, ast.Name) and func.value.id in self.headers)
                or self._is_header_call(func.value)):
            self.found.append((node.lineno, f"open_header(...).{func.attr}"))
        self.generic_visit(node)


def find_doors(source: str, filename: str = "<snippet>") -> list[str]:
    """'line: qualified.name' for every place in `source` that reaches a pixel decoder."""
    checker = _Doors()
    checker.names.update({"getattr": "builtins.getattr", "__import__": "builtins.__import__"})
    checker.visit(ast.parse(source, filename))
    return [f"{line}: {name}" for line, name in sorted(set(checker.found))]


def test_no_second_door_for_pixels():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "imaging.py":
            continue
        offenders += [f"{path.relative_to(PACKAGE)}:{hit}" for hit in find_doors(path.read_text(), str(path))]
    assert not offenders, "images opened outside imaging.py:\n" + "\n".join(offenders)


def test_the_door_itself_is_there():
    text = (PACKAGE / "imaging.py").read_text()
    assert find_doors(text) and "def open_upright" in text


@pytest.mark.parametrize("snippet", [
    "from PIL import Image\nImage.open('x.jpg')",
    "from PIL import Image as I\nI.open('x.jpg')",
    "import PIL.Image\nPIL.Image.open('x.jpg')",
    "import PIL.Image as pim\npim.open('x.jpg')",
    "from PIL.Image import open\nopen('x.jpg')",
    "from PIL.Image import open as load\nload('x.jpg')",
    "import PIL\nloader = PIL.Image.open\n",
    "import importlib\nimportlib.import_module('PIL.Image').open('x.jpg')",
    "import importlib as il\nm = il.import_module('PIL.Image')\nm.open('x.jpg')",
    "from importlib import import_module\nimport_module('PIL.Image').open('x.jpg')",
    "__import__('PIL.Image').Image.open('x.jpg')",
    "from PIL import Image\ngetattr(Image, 'open')('x.jpg')",
    "import PIL.Image\nf = getattr(PIL.Image, 'open')\n",
    "from PIL import ImageFile\nImageFile.Parser()",
    "from PIL import Image\nImage.frombuffer('RGB', (1, 1), b'...')",
    "from .imaging import open_header\nwith open_header(p) as im:\n    im.load()",
    "from upright.imaging import open_header as oh\nwith oh(p) as im:\n    px = im.convert('RGB')",
    "from upright import imaging\nwith imaging.open_header(p) as im, open('x') as f:\n    im.tobytes()",
    "from .imaging import open_header\nim = open_header(p).__enter__()\nim.load()",
    "import cv2 as c\nc.imread('x.jpg')",
    "from cv2 import imdecode\n",
    "import imageio.v3 as iio\niio.imread('x.jpg')",
    "from skimage import io\nio.imread('x.jpg')",
    "import pillow_heif\npillow_heif.open_heif('x.heic')",
    "from torchvision.io import decode_jpeg\n",
    "import tensorflow as tf\ntf.io.decode_image(b'')",
])
def test_the_check_catches_every_spelling(snippet):
    assert find_doors(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "from PIL import Image\nImage.new('RGB', (1, 1)).transpose(Image.Transpose.ROTATE_90)",
    "from PIL import Image\nImage.fromarray(a).save(buf, 'JPEG')",
    "open('notes.txt').read()",  # the builtin open is not Pillow's
    "from upright.imaging import open_image\nopen_image('x.jpg')",
    "from .imaging import open_header\nwith open_header(p) as im: pass",
    "from .imaging import open_header, read_orientation\nwith open_header(p) as im:\n    read_orientation(im)",
    "from .imaging import open_pixels\nwith open_pixels(p) as im:\n    im.copy()",
    "import importlib\nimportlib.import_module(name)",  # the backbone wheels are imported by name
    "import cv2\ncv2.cvtColor(a, 0)",
])
def test_the_check_passes_what_is_not_a_door(snippet):
    assert find_doors(snippet) == [], snippet

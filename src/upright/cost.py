"""What decoding a file will cost, decided from its header before any pixel buffer exists.

One model for every format (issue 23): the declared canvas x the bytes each pixel costs on
the decoder path that will run, against a memory budget; the coded size against the declared
size; and the decoder paths that run in Python priced by their pixels. The bytes a pixel
costs were measured on 24 MP files of each kind (`python fuzz/limits.py --families` and the
figures in docs/contracts.md):

- Pillow's own decoders (PNG, TIFF, GIF, BMP) hold the picture in Pillow's storage: 1 byte a
  pixel for 1/L/P, 2 for 16-bit grey, 4 for everything else. BMP's RLE decoder (Python)
  holds two more copies of the 8-bit picture. A planar TIFF costs what a contiguous one does
  (measured); its three tile tables are what costs, and containers.survey caps them.
- libwebp (every WebP, through Pillow's animation decoder): the canvas four times (its
  canvas, its frame buffer, the copy handed to Pillow, Pillow's picture): 16 bytes a pixel.
- libavif (Pillow's AVIF plugin): YUV planes, an RGB copy and Pillow's picture: 9 bytes a
  pixel, at the largest 'ispe' the file declares (libavif honours the first one it finds).
- libheif (pillow-heif, read band by band from its buffer): 4.5 bytes a pixel, 6.5 with
  alpha, 1.5 more above 8 bits.
- JPEG: the DCT-reduced picture (libjpeg scales by 1/2, 1/4, 1/8 while decoding), plus all
  DCT coefficients (2 bytes each) when the file has several scans.
- Converting to RGB runs in bands of 2 MP (about 64 MB held at most), then a sized read
  keeps the box-reduced picture; a full-size read adds 4 bytes a pixel for its result.
- Files read whole into memory by their decoder (WebP, AVIF, HEIF) add their own size.

The budget bounds the decode (`decode`); the full-size result a caller asked for comes on
top (`total`), which is what a server reserves from its shared budget (serve/budget.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .containers import Survey

#: Bytes one file's decode may cost: with Python, Pillow and numpy (~60 MB) under 1 GiB of RSS.
DEFAULT_BUDGET = 960 << 20
#: Pixels a Python-speed decoder may loop over (Pillow's BMP RLE: ~6 MP/s on one 2020s core,
#: under 2 MP/s when the fuzzer instruments it): 4 MP, a second at most.
MAX_PYTHON_PIXELS = 4_000_000
#: Declared raw RGB bytes per coded byte: deflate tops out near 1,000:1, JPEG near 1,500:1;
#: only a header lying about its canvas (or a blank canvas nobody photographs) goes further.
MAX_DECLARED_RATIO = 100_000
#: ...checked on canvases of at least this many raw RGB bytes (small files are never refused).
RATIO_FLOOR = 64 << 20
#: Converting to RGB holds at most about this much beside the decoded picture (8 MB bands).
BAND_BYTES = 64 << 20

_STORAGE = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
#: Bytes a pixel costs on each decoder path beside nothing else (see the module docstring).
LIBRARY_BYTES = {"WEBP": 16.0, "AVIF": 9.0, "HEIF": 4.5}
#: Containers whose decoder reads the whole file into memory as it opens it (survey kinds).
READ_WHOLE = ("WEBP", "ISOBMFF")


def storage(mode: str) -> int:
    """Bytes a pixel takes in Pillow's storage for `mode`."""
    return _STORAGE.get(mode, 4)


@dataclass(frozen=True)
class Cost:
    """The price of one read: `decode` bytes held while decoding (what the budget bounds),
    `total` with the result a full-size read returns; `path` says where the bytes go."""

    decode: int
    total: int
    path: str

    def over(self, budget: int) -> bool:
        return self.decode > budget


def plain_rgb(mode: str, info: dict) -> bool:
    """A picture the door returns as decoded, with no conversion (no band, no second copy)."""
    return mode == "RGB" and "transparency" not in info and not info.get("icc_profile")


def reduced(w: int, h: int, size: int | None, gap: int) -> int:
    """Pixels of the box-reduced picture a sized read keeps (the door's REDUCING_GAP)."""
    if not size:
        return w * h
    k = max(1, min(w, h) // (size * gap))
    return -(-w // k) * -(-h // k)


def jpeg_draft_pixels(w: int, h: int, size: int | None) -> int:
    """Pixels libjpeg produces for a sized read: the largest 1/2, 1/4, 1/8 scale that keeps
    the short side at least `size` (Pillow's draft)."""
    if not size:
        return w * h
    scale = 1
    while scale < 8 and min(w, h) // (scale * 2) >= size:
        scale *= 2
    return -(-w // scale) * -(-h // scale)


def coefficient_bytes(w: int, h: int, layers) -> int:
    """libjpeg's whole-image DCT coefficient buffer: 64 coefficients of 2 bytes per 8x8 block
    of every component, at its sampling (layers: Pillow's (id, h, v, table) per component)."""
    layers = list(layers) or [(0, 1, 1, 0)]
    hmax = max(max(lay[1], 1) for lay in layers)
    vmax = max(max(lay[2], 1) for lay in layers)
    return sum(-(-(-(-w * max(lay[1], 1) // hmax)) // 8) * -(-(-(-h * max(lay[2], 1) // vmax)) // 8) * 128
               for lay in layers)


def price(fmt: str, mode: str, info: dict, canvas: tuple[int, int], size: int | None, *, survey: Survey,
          file_size: int, gap: int, coefficients: int = 0, bit_depth: int = 8) -> Cost:
    """The cost of reading a file whose header was opened: `canvas` is the largest picture it
    declares (Pillow's size, or more when the container says so). A full-size read's own
    result (4 bytes a pixel) is in `total`, not in `decode`: the caller asked for it."""
    w, h = canvas
    px = w * h
    convert = not plain_rgb(mode, info)
    picture = px * storage(mode)  # the decoded picture, at full size
    if fmt in ("JPEG", "MPO"):
        decoded = jpeg_draft_pixels(w, h, size) * storage(mode) if size else picture
        held, path = coefficients, "libjpeg" + (f", {coefficients >> 20} MB of DCT coefficients" if coefficients else "")
    elif fmt in LIBRARY_BYTES:
        per = LIBRARY_BYTES[fmt]
        if fmt == "HEIF":
            per += (2 if "A" in mode else 0) + (1.5 if bit_depth > 8 else 0)
        decoded, held = 0, int(px * per) + file_size
        path = {"WEBP": "libwebp holds the whole canvas 4 times", "AVIF": "libavif", "HEIF": "libheif"}[fmt]
        convert = True  # their pixels always go through the RGB conversion
    else:
        decoded, held = picture, (2 * px if survey.rle else 0)
        path = "Pillow" + (", RLE in Python" if survey.rle else "")
    if size:
        held += decoded + reduced(w, h, size, gap) * 4
    elif convert:
        held += decoded  # converted into a new RGB picture: the decoded one is working memory
    if convert:
        held += BAND_BYTES
    result = 0 if size else px * 4
    return Cost(decode=held, total=held + result, path=path)


def declared_reason(canvas: tuple[int, int], survey: Survey, file_size: int) -> str | None:
    """Why a header's declarations alone refuse the file (before anything is decoded), or None."""
    w, h = canvas
    raw = w * h * 3
    if raw >= RATIO_FLOOR and file_size and raw > MAX_DECLARED_RATIO * file_size:
        return (f"a {file_size:,}-byte file declaring a {w}x{h} picture ({raw // file_size:,} bytes of pixels "
                f"per byte, over {MAX_DECLARED_RATIO:,}): a tiny file declaring a huge canvas")
    if survey.rle and w * h > MAX_PYTHON_PIXELS:
        return (f"RLE-compressed BMP of {w}x{h}: Pillow decodes RLE in Python, pixel by pixel, and over "
                f"{MAX_PYTHON_PIXELS // 1_000_000} MP that takes seconds to minutes")
    return None


def over_budget_reason(cost: Cost, canvas: tuple[int, int], budget: int) -> str:
    w, h = canvas
    return (f"decoding this {w}x{h} picture would take about {cost.decode / 2**20:,.0f} MB ({cost.path}), "
            f"over the memory budget of {budget >> 20:,} MB for one file")

"""Seed corpus for the fuzz targets, made in code: every format Pillow and pillow-heif can
write (the ones upright reads and the ones it must refuse), every EXIF orientation, XMP
and the legacy PNG EXIF text, ICC profiles (sRGB, broken), odd modes, animation.

    python fuzz/corpus.py DIR      # writes DIR/<name> files, small (pictures of 32x24)
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

from upright.imaging import store_as  # registers pillow-heif

W, H = 32, 24


def picture(seed: int = 0) -> Image.Image:
    """Corner blocks plus noise: every transform changes it, and it does not compress away."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(60, 200, (H, W, 3), dtype=np.uint8)
    arr[:8, :10] = (220, 30, 30)
    arr[:8, -10:] = (30, 200, 40)
    arr[-8:, :10] = (30, 40, 220)
    return Image.fromarray(arr, "RGB")


def exif(orientation: int | None, make: str = "Upright", model: str = "Fuzz 1") -> bytes:
    e = Image.Exif()
    if orientation is not None:
        e[0x0112] = orientation
    e[0x010F], e[0x0110] = make, model
    return e.tobytes()


def xmp(orientation: int) -> bytes:
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{orientation}"/>'
            "</rdf:RDF></x:xmpmeta>").encode()


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    base = picture()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # Every orientation in every format that carries EXIF.
    for o in range(1, 9):
        stored = store_as(base, o)
        out[f"jpeg-o{o}"] = save(stored, "JPEG", quality=80, exif=exif(o))
        out[f"png-o{o}"] = save(stored, "PNG", exif=exif(o))
        out[f"webp-o{o}"] = save(stored, "WEBP", quality=60, exif=exif(o))
        out[f"tiff-o{o}"] = save(stored, "TIFF", exif=exif(o))
        out[f"heif-o{o}"] = save(stored, "HEIF", quality=50, exif=exif(o))
        out[f"avif-o{o}"] = save(stored, "AVIF", quality=50, exif=exif(o))
    out["jpeg-progressive"] = save(base, "JPEG", quality=70, progressive=True)
    out["jpeg-444-icc"] = save(base, "JPEG", quality=90, subsampling=0, icc_profile=srgb)
    out["jpeg-cmyk"] = save(base.convert("CMYK"), "JPEG", quality=80)
    out["jpeg-grey-xmp"] = save(base.convert("L"), "JPEG", quality=80, xmp=xmp(6))
    out["jpeg-broken-icc"] = save(base, "JPEG", quality=80, icc_profile=b"not a profile" * 8)
    out["jpeg-bad-orientation"] = save(base, "JPEG", quality=80, exif=exif(9))
    out["mpo"] = save(base, "MPO", save_all=True, append_images=[base.rotate(180)], quality=70, exif=exif(6))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp(8).decode())
    out["png-xmp"] = save(base, "PNG", pnginfo=info)
    hexdata = exif(6).hex()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(hexdata) // 2}\n{hexdata}\n")
    out["png-raw-profile"] = save(base, "PNG", pnginfo=info)
    out["png-icc"] = save(base, "PNG", icc_profile=srgb)
    for mode in ("1", "L", "LA", "P", "RGBA", "I;16", "I"):
        img = base.convert("RGBA" if mode == "LA" else mode if mode not in ("I;16", "I") else "L")
        if mode in ("I;16", "I"):
            img = Image.fromarray((np.asarray(img, np.uint16) * 257).astype(np.uint16))
            img = img if mode == "I;16" else img.convert("I")
        elif mode == "LA":
            img = img.convert("LA")
        fmt = "TIFF" if mode == "I" else "PNG"  # PNG has no 32-bit integer mode
        out[f"{fmt.lower()}-{mode.replace(';', '')}"] = save(img, fmt)
    out["png-p-transparency"] = save(base.convert("P"), "PNG", transparency=0)
    out["apng"] = save(base, "PNG", save_all=True, append_images=[base.rotate(180)], duration=50)
    out["webp-lossless-rgba"] = save(base.convert("RGBA"), "WEBP", lossless=True)
    out["webp-animated"] = save(base, "WEBP", save_all=True, append_images=[base.rotate(180)], quality=40)
    for comp in ("tiff_deflate", "tiff_lzw", "packbits", "jpeg", "tiff_adobe_deflate"):
        out[f"tiff-{comp}"] = save(base, "TIFF", compression=comp)
    out["tiff-multipage"] = save(base, "TIFF", save_all=True, append_images=[base.convert("L")])
    out["tiff-float"] = save(Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255, "F"), "TIFF")
    out["tiff-cmyk-icc"] = save(base.convert("CMYK"), "TIFF")
    out["heif-rgba"] = save(base.convert("RGBA"), "HEIF", quality=50)
    out["heif-grey"] = save(base.convert("L"), "HEIF", quality=30)
    out["avif-rgba"] = save(base.convert("RGBA"), "AVIF", quality=40)
    out["gif"] = save(base.convert("P"), "GIF")
    out["gif-animated"] = save(base.convert("P"), "GIF", save_all=True, append_images=[base.rotate(180).convert("P")])
    out["bmp"] = save(base, "BMP")
    out["bmp-grey"] = save(base.convert("L"), "BMP")
    # Formats Pillow writes that upright must refuse cleanly.
    for fmt in ("ICO", "PPM", "TGA", "PCX", "SGI", "IM", "DDS", "QOI", "SPIDER", "MSP", "XBM", "BLP",
                "JPEG2000", "PALM", "EPS", "PDF"):  # ICNS: 1 MB at its smallest size
        img = base.convert({"MSP": "1", "XBM": "1", "PALM": "P", "SPIDER": "F"}.get(fmt, "RGB"))
        try:
            out[f"other-{fmt.lower()}"] = save(img, fmt)
        except Exception:  # an encoder that is not built in, or needs a tool (EPS: Ghostscript)
            pass
    out["text"] = b"just some words, named like a photo\n"
    return out


def write(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (folder / f"{name}-{hashlib.sha1(data).hexdigest()[:8]}").write_bytes(data)
    return len(list(folder.iterdir()))


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "fuzz/work/seeds")
    print(f"{write(target)} seeds in {target}")

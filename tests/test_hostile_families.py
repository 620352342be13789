"""Small files that declare huge work (issue 23): every family of fuzz/families.py, made here
in code at the size measured in the issue, is refused from its header or read within the
memory bound; each refusal names its reason in one line. No timing assertions: a generous
subprocess timeout only stops a test that would hang.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from fixtures import asym_picture, encode

from upright import UnreadableImage, describe, imaging, open_upright
from upright import metadata
from upright.containers import MAX_COUNTED_FRAMES

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ))
import families  # noqa: E402 - fuzz/families.py, the generator the fuzz target uses

GIB = 1 << 30


def reason(data: bytes, size: int | None = 224) -> str:
    with pytest.raises(UnreadableImage) as info:
        open_upright(data, size=size)
    text = info.value.reason
    assert "\n" not in text and len(text) < 300
    return text


# ---- each family, refused for its own reason (in process, fast) ------------------------------

@pytest.mark.parametrize("name,words", [
    ("webp_lossless_canvas", "tiny file declaring a huge canvas"),
    ("webp_animated_canvas", "tiny file declaring a huge canvas"),
    ("avif_extra_ispe", "tiny file declaring a huge canvas"),
    ("gif_canvas", "tiny file declaring a huge canvas"),
    ("tiff_planar_tiles", "2,462,250 strips or tiles"),
    ("bmp_rle_rows", "Pillow decodes RLE in Python"),
    ("jpeg_app1_flood", "EXIF segments"),
    ("jpeg_fill_flood", "fill or junk bytes"),
    ("jpeg_com_flood", "segments"),
    ("png_chunk_flood", "chunks before the image data"),
])
def test_each_family_is_refused_from_its_header(tmp_path, name, words):
    data = families.FAMILIES[name]()
    assert words in reason(data)
    path = tmp_path / f"f{families.EXTENSIONS[name.split('_')[0]]}"
    path.write_bytes(data)
    facts = describe(path)
    assert facts.unreadable and words in facts.unreadable


def test_a_huge_canvas_in_a_file_its_size_is_refused_by_the_cost_model():
    """The same 14000x15000 lossless WebP padded to 70 KB: no longer 'tiny', but libwebp would
    hold the canvas four times (3.3 GB): over the budget, refused before any buffer exists."""
    data = families.webp_lossless_canvas(pad=70_000)
    text = reason(data)
    assert "memory budget" in text and "libwebp" in text and "14000x15000" in text
    small = families.webp_lossless_canvas(800, 600, pad=70_000)  # the same file, a sane canvas
    assert open_upright(small, size=224).size == (299, 224)


def test_the_largest_declared_ispe_prices_an_avif():
    data = families.avif_extra_ispe(6000, 4000)
    with Image.open(io.BytesIO(data)) as im:  # noqa: one-door (the test reads what Pillow reports)
        assert im.size == (6000, 4000)  # libavif reports the first ispe
    assert imaging.estimate(data, 224).decode >= 6000 * 4000 * 9
    last = families.avif_extra_ispe(6000, 4000, first=False)
    assert imaging.estimate(last, 224).decode >= 6000 * 4000 * 9  # priced at the larger one wherever it is


def test_rle_bmp_under_the_python_budget_still_reads():
    img = open_upright(families.bmp_rle_rows(300, 200), size=64)
    assert img.size == (96, 64)


def test_a_long_ifd_chain_is_counted_only_as_far_as_needed(tmp_path):
    path = tmp_path / "chain.tif"
    path.write_bytes(families.tiff_ifd_chain())
    facts = describe(path)
    assert facts.unreadable is None and facts.n_frames == MAX_COUNTED_FRAMES
    small = tmp_path / "five.tif"
    small.write_bytes(families.tiff_ifd_chain(5))
    assert describe(small).n_frames == 5
    assert open_upright(path, size=16).size == (16, 16)


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, n=-1):
        data = super().read(n)
        self.read_bytes += len(data)
        return data

    def readinto(self, b):
        n = super().readinto(b)
        self.read_bytes += n or 0
        return n


def test_a_progressive_jpeg_is_priced_without_reading_its_padding(tmp_path):
    path = families.write(tmp_path, "jpeg_padded")  # 1.3 GB, sparse
    with CountingFile(path) as f:
        img = open_upright(io.BufferedReader(f), size=224)
        assert img.size == (299, 224)
        assert f.read_bytes < 16 << 20, f.read_bytes  # the scan walk stops at EOI
    assert describe(path).stored_size == (1600, 1200)


def test_scans_are_counted_to_the_end_of_image_in_chunks():
    data = families.small_jpeg(640, 480, progressive=True)
    from upright import containers

    found = containers.survey(io.BytesIO(data))
    assert found.progressive and found.body is not None
    scans = containers.jpeg_scan_count(io.BytesIO(data), found.body, 100, 1 << 30)
    assert scans == data.count(b"\xff\xda") and scans > 1


def test_png_image_data_split_into_a_flood_of_chunks_is_refused():
    ihdr = families._png_chunk(b"IHDR", b"\x00\x00\x00\x10\x00\x00\x00\x10\x08\x00\x00\x00\x00")
    import zlib

    raw = zlib.compress((b"\x00" + b"\x80" * 16) * 16)
    idats = b"".join(families._png_chunk(b"IDAT", raw[i:i + 1]) for i in range(len(raw)))
    flood = families._png_chunk(b"IDAT", b"") * 70_000
    data = b"\x89PNG\r\n\x1a\n" + ihdr + flood + idats + families._png_chunk(b"IEND", b"")
    assert "chunks for its picture" in reason(data)
    fine = b"\x89PNG\r\n\x1a\n" + ihdr + idats + families._png_chunk(b"IEND", b"")
    assert open_upright(fine).size == (16, 16)


def test_headers_under_the_caps_still_read():
    for data in (families.jpeg_fill_flood(1000), families.jpeg_com_flood(1000), families.jpeg_app1_flood(8),
                 families.png_chunk_flood(100)):
        assert min(open_upright(data, size=16).size) == 16


# ---- the contract, measured: every family at full size under 1 GiB (subprocess) ---------------

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import families
from upright import UnreadableImage, describe, open_upright

def peak():
    return next(int(l.split()[1]) << 10 for l in open("/proc/self/status") if l.startswith("VmHWM"))

folder = Path(sys.argv[1])
for name in families.FAMILIES:
    path = families.write(folder, name)
    for call in ("describe", "read"):
        open("/proc/self/clear_refs", "w").write("5")  # VmHWM := the RSS now
        t = time.perf_counter()
        if call == "describe":
            facts = describe(path)
            result = facts.unreadable or "ok"
        else:
            try:
                result = "x".join(map(str, open_upright(path, size=224).size))
            except UnreadableImage as exc:
                result = exc.reason
        print(json.dumps({"family": name, "call": call, "peak": peak(), "s": time.perf_counter() - t,
                          "result": result}), flush=True)
    path.unlink()
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures RSS through /proc")
def test_every_family_stays_under_one_gib(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), str(FUZZ)], capture_output=True,
                         text=True, timeout=600)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2 * len(families.FAMILIES), out.stderr[-2000:]
    for row in rows:
        print(f"{row['family']:22s} {row['call']:8s} {row['peak'] / 2**20:6.0f} MB {row['s']:6.2f} s  "
              f"{row['result'][:60]}")
        assert row["peak"] < GIB, row
        assert "\n" not in row["result"]


# ---- caches bounded in bytes -------------------------------------------------------------------

def srgb_profile(pad: int, tag: int) -> bytes:
    """A valid sRGB profile grown by `pad` bytes after its tags (distinct per `tag`)."""
    base = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = bytearray(base + bytes([tag % 251]) * pad)
    data[:4] = len(data).to_bytes(4, "big")
    return bytes(data)


def test_icc_descriptions_are_cached_by_digest_not_by_profile():
    metadata._ICC_DESCRIPTIONS.clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(24):  # 24 distinct 8 MB profiles: the old cache kept every one
            profile = srgb_profile(8 << 20, i)
            metadata.icc_description(profile)
            del profile
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1 << 20, kept
    assert all(len(k) == 32 for k in metadata._ICC_DESCRIPTIONS)
    for i in range(metadata._ICC_DESCRIPTIONS_MAX + 10):
        metadata.icc_description(srgb_profile(16, i))
    assert len(metadata._ICC_DESCRIPTIONS) <= metadata._ICC_DESCRIPTIONS_MAX


def test_a_normal_photo_is_priced_small():
    data = encode(asym_picture(4000, 3000), "JPEG")
    cost = imaging.estimate(data, 224)
    assert cost.decode < 64 << 20 and cost.total == cost.decode
    full = imaging.estimate(data, None)  # the full-size result is the caller's: in total only
    assert full.total >= 4000 * 3000 * 4 > full.decode


def test_a_webp_too_big_to_read_whole_is_refused_before_its_decoder_reads_it(tmp_path):
    path = tmp_path / "huge.webp"
    head = families.webp_lossless_canvas(100, 100)
    with open(path, "wb") as f:  # 1.1 GB, sparse: Pillow's WebP plugin would read it all on open
        f.write(head)
        f.truncate(1_100_000_000)
    facts = describe(path)
    assert facts.unreadable and "reads whole" in facts.unreadable


@pytest.mark.parametrize("data", [
    b"II+\x00\x08\x00\x00\x00" + (2**64 - 5).to_bytes(8, "little") + bytes(32),  # BigTIFF: an IFD past any seek
    b"II*\x00" + (2**32 - 5).to_bytes(4, "little") + bytes(32),
    b"\x89PNG\r\n\x1a\n" + (2**32 - 1).to_bytes(4, "big") + b"IHDR" + bytes(40),
    b"\xff\xd8\xff\xe0\xff\xff" + bytes(10),
    b"GIF89a\x10\x00\x10\x00\x80\x00\x00",
    b"RIFF\x10\x00\x00\x00WEBPVP8X" + bytes(4),
    b"BM" + bytes(20),
    b"\x00\x00\x00\x18ftypavif" + (2**32 - 1).to_bytes(4, "big") + b"meta",
], ids=["bigtiff", "tiff", "png", "jpeg", "gif", "webp", "bmp", "avif"])
def test_malformed_headers_never_break_the_walk(tmp_path, data):
    path = tmp_path / "x.img"
    path.write_bytes(data)
    facts = describe(path)
    assert facts.unreadable and "\n" not in facts.unreadable
    with pytest.raises(UnreadableImage):
        open_upright(data, size=16)

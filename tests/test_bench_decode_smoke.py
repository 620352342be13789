"""The decode benchmark runs (tiny); speed itself is reported by bench/, never asserted."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_decode_bench_quick(capsys):
    import decode

    out = decode.main(["--quick"])
    assert set(out["results"]) >= {"naive-pillow", "imagefolder", "upright", "floor-1/8"}
    assert out["results"]["upright"]["upright"] == "2/2"  # every picture shown upright
    assert out["results"]["imagefolder"]["upright"] == "1/2"  # the EXIF-ignoring loader is wrong
    assert "ms/image" in capsys.readouterr().out

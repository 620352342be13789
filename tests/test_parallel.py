"""The per-file pool (parallel.py): the same results in the same order as one loop, bad files included."""

from __future__ import annotations

import threading
import time

from fixtures import class_picture, messy, write_photo
from upright.pipeline.scan import scan
from upright.metadata import describe
from upright.parallel import ordered_map


def test_ordered_map_keeps_input_order_when_late_items_finish_first():
    seen_threads = set()

    def slow_first(i):
        seen_threads.add(threading.get_ident())
        time.sleep(0.002 * (40 - i) if i < 40 else 0)  # early items finish last
        return i * i

    done = []
    out = ordered_map(slow_first, range(200), workers=4, advance=done.append)
    assert out == [i * i for i in range(200)]
    assert sum(done) == 200
    assert len(seen_threads) > 1  # it really ran on a pool


def test_ordered_map_small_or_single_worker_is_a_plain_loop():
    assert ordered_map(str, [1, 2, 3], workers=8) == ["1", "2", "3"]
    assert ordered_map(str, range(50), workers=1) == [str(i) for i in range(50)]


def test_parallel_describe_and_scan_equal_serial_with_broken_files(tmp_path):
    root = messy(tmp_path / "data")  # unreadable, truncated and odd files among good ones
    for i in range(40):
        write_photo(root / "cat" / f"extra_{i}.jpg", class_picture(0, 200 + i), orientation=(i % 8) + 1)
    (root / "dog" / "garbage.jpg").write_bytes(b"\xff\xd8not a jpeg at all" * 3)
    paths = [str(r.path) for r in scan(root, workers=1).records]
    serial = [describe(p) for p in paths]
    parallel = ordered_map(describe, paths, workers=4)
    assert parallel == serial
    assert any(f.unreadable for f in parallel)  # the broken files became problem facts, no exception
    one, many = scan(root, workers=1), scan(root, workers=4)
    assert many.records == one.records and many.skipped == one.skipped

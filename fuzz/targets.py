"""atheris targets: the one door must answer every input with a picture or UnreadableImage.

    python fuzz/targets.py TARGET [libFuzzer flags] [CORPUS_DIR ...]

TARGET is `open` (open_upright(bytes)), `sized` (open_upright(bytes, size=224)),
`describe` (describe(path): it must never raise at all) or `families`: structure-aware, the
fuzzer's bytes pick one of the hostile families of families.py (declared size against real
data, floods, chains, planar tiles, RLE rows), its parameters, and a few bytes to overwrite;
the file made is then described and read at size 224. A finding is any other exception, an
UnreadableImage that hides a MemoryError (the address-space cap was hit), a hang
(libFuzzer's -timeout) or RSS over -rss_limit_mb. `make fuzz` runs all four.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import warnings

import atheris

AS_LIMIT = int(os.environ.get("FUZZ_AS_LIMIT_MB", "6144")) << 20  # address space: the machine's guard

with atheris.instrument_imports(include=["upright", "PIL", "pillow_heif"]):  # not numpy: slow, not ours
    from upright import UnreadableImage, describe, open_upright

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import families  # noqa: E402 - fuzz/ beside this file


def _check_unreadable(exc: UnreadableImage) -> None:
    if isinstance(exc.__cause__, MemoryError) or "out of memory" in exc.reason:
        raise RuntimeError(f"memory blow-up passed off as unreadable: {exc.reason}") from exc
    if "\n" in exc.reason or not exc.reason:
        raise RuntimeError(f"reason is not one line: {exc.reason!r}")


def open_target(data: bytes) -> None:
    try:
        img = open_upright(data)
        assert img.mode == "RGB" and min(img.size) >= 1
    except UnreadableImage as exc:
        _check_unreadable(exc)


def sized_target(data: bytes) -> None:
    try:
        img = open_upright(data, size=224)
        assert img.mode == "RGB" and min(img.size) == 224, img.size
    except UnreadableImage as exc:
        _check_unreadable(exc)


_TMP = os.path.join(tempfile.mkdtemp(prefix="upright-fuzz-"), "input.img")


def describe_target(data: bytes) -> None:
    with open(_TMP, "wb") as f:
        f.write(data)
    facts = describe(_TMP)  # must never raise
    if facts.unreadable and ("\n" in facts.unreadable or "out of memory" in facts.unreadable):
        raise RuntimeError(f"bad unreadable reason: {facts.unreadable!r}")


def families_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    names = list(families.FAMILIES)
    name = names[fdp.ConsumeIntInRange(0, len(names) - 1)]
    params = families.draw(name, fdp.ConsumeIntInRange)
    built = bytearray(families.FAMILIES[name](**params))
    for _ in range(fdp.ConsumeIntInRange(0, 4)):  # a few bytes overwritten: the structure, bent
        if built:
            built[fdp.ConsumeIntInRange(0, len(built) - 1)] = fdp.ConsumeIntInRange(0, 255)
    describe_target(bytes(built))
    sized_target(bytes(built))


TARGETS = {"open": open_target, "sized": sized_target, "describe": describe_target, "families": families_target}


def main() -> None:
    name = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in TARGETS else None
    if name is None:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    warnings.simplefilter("ignore")
    atheris.Setup(sys.argv, TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""atheris targets: the one door must answer every input with a picture or UnreadableImage.

    python fuzz/targets.py TARGET [libFuzzer flags] [CORPUS_DIR ...]

TARGET is `open` (open_upright(bytes)), `sized` (open_upright(bytes, size=224)) or
`describe` (describe(path): it must never raise at all). A finding is any other exception,
an UnreadableImage that hides a MemoryError (the address-space cap was hit), a hang
(libFuzzer's -timeout) or RSS over -rss_limit_mb. `make fuzz` runs all three.
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


TARGETS = {"open": open_target, "sized": sized_target, "describe": describe_target}


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

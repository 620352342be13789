"""Class names typed on a phone become folder names: normalised, then checked.

A name is a single, portable folder name that every verb reads back as the same label:
Unicode NFC (a phone's "é" and a laptop's "e + combining accent" are one class), no path
separators, nothing hidden (a leading dot), no control or invisible formatting characters,
none of the split folder names (a class called "train" would turn the project into a split
layout), at most MAX_CHARS characters.
"""

from __future__ import annotations

import time
import unicodedata
from typing import Callable

from ..pipeline.scan import SPLIT_DIRS
from ..errors import UprightError

MAX_CHARS = 64
#: Refused anywhere in a name: separators, and what Windows and macOS forbid in file names.
FORBIDDEN = set('/\\:*?"<>|')


class BadName(UprightError):
    """A class name that cannot be a folder name; the message says why in one line."""


def class_name(raw: object) -> str:
    """The normalised class name for `raw`, or BadName with the reason."""
    if not isinstance(raw, str):
        raise BadName("a class name must be text")
    name = unicodedata.normalize("NFC", raw).strip()
    if not name:
        raise BadName("a class name cannot be empty")
    if len(name) > MAX_CHARS:
        raise BadName(f"a class name has at most {MAX_CHARS} characters (this one has {len(name)})")
    if name.startswith("."):
        raise BadName("a class name cannot start with a dot (hidden folders are not classes)")
    bad = sorted({c for c in name if c in FORBIDDEN})
    if bad:
        raise BadName(f"a class name cannot contain {' '.join(bad)} (it is a folder name)")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise BadName("a class name cannot contain control or invisible characters")
    if name.endswith("."):
        raise BadName("a class name cannot end with a dot")
    if name.lower() in SPLIT_DIRS:
        raise BadName(f"'{name}' is a split folder name (train, val, test); pick another class name")
    return name


def same_name(a: str, b: str) -> bool:
    """True when two class names would be one folder on a case-insensitive file system."""
    return a.casefold() == b.casefold()


def timestamp_name(taken: Callable[[str], bool], first: int | None = None) -> str:
    """A fresh name from the time now, YYYYMMDD-HHMMSS: the stamp itself (first None) or
    stamp-<first>, then stamp-<n> for the next n, until `taken(name)` is False (a trash item,
    a model folder)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name, n = (stamp, 2) if first is None else (f"{stamp}-{first}", first + 1)
    while taken(name):
        name, n = f"{stamp}-{n}", n + 1
    return name

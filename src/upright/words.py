"""Counts in words for messages and pages: "1 class", "3 classes", never "1 classes" or "class(es)"."""

from __future__ import annotations


def plural(noun: str) -> str:
    """The English plural of a regular noun (the last word): class -> classes, copy -> copies."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    return noun + "s"


def count(n: int, noun: str, many: str | None = None) -> str:
    """'1 class', '0 classes', '12 photos'; `many` when the plural is irregular."""
    return f"{n} {noun if n == 1 else many or plural(noun)}"


def verb(n: int, one: str, many: str) -> str:
    """The verb that agrees with a count: verb(1, "has", "have") -> "has"."""
    return one if n == 1 else many

"""Exception types that carry a one-line reason for the user."""

from __future__ import annotations


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (cut at `limit`), or its type name if it has none."""
    text = " ".join(str(exc).split())[:limit]
    return text or type(exc).__name__


class UprightError(Exception):
    """A problem the user can act on; the CLI prints it on one line and exits 2."""


class UnreadableImage(UprightError):
    """An image that cannot be decoded; `reason` is one line, `path` may be None for bytes."""

    def __init__(self, path: str | None, reason: str):
        self.path = path
        self.reason = " ".join(str(reason).split()) or "unreadable"
        super().__init__(f"{path}: {self.reason}" if path else self.reason)

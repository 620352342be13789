"""Exception types that carry a one-line reason for the user."""

from __future__ import annotations


class UprightError(Exception):
    """A problem the user can act on; the CLI prints it on one line and exits 2."""


class UnreadableImage(UprightError):
    """An image that cannot be decoded; `reason` is one line, `path` may be None for bytes."""

    def __init__(self, path: str | None, reason: str):
        self.path = path
        self.reason = " ".join(str(reason).split()) or "unreadable"
        super().__init__(f"{path}: {self.reason}" if path else self.reason)

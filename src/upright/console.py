"""Human output: one stderr console, progress bars with counts and ETA, one-line errors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


@contextmanager
def progress(total: int, description: str, enabled: bool = True) -> Iterator:
    """Yield an `advance(n=1)` callable that moves a bar on stderr (silent when disabled)."""
    if not enabled or total <= 0:
        yield lambda n=1: None
        return
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)

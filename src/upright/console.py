"""Human output: one stderr console, progress bars with counts and ETA, one-line errors.

`listening(callback)` lets a program follow the work without a terminal (`upright studio`
streams a training run's steps to the page): inside it, every progress bar, drawn or not,
also reports (description, done, total), and `step(description)` names a step that has no bar;
inside `within(step)`, a listener hears the bars as parts of that step ("step: bar").
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


Listener = Callable[[str, int, int], None]
_listener: ContextVar[Listener | None] = ContextVar("upright_progress_listener", default=None)


@contextmanager
def listening(callback: Listener) -> Iterator[None]:
    """Within this block, progress bars and steps also call callback(description, done, total)."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


@contextmanager
def within(name: str) -> Iterator[None]:
    """Inside this block a listener hears each bar or step as a part of the step `name`
    ("auditing the training photos: reading headers"); the bars drawn on stderr are unchanged."""
    outer = _listener.get()
    if outer is None:
        yield
        return
    with listening(lambda description, done, total: outer(f"{name}: {description}", done, total)):
        yield


def step(description: str) -> None:
    """Tell a listener (if any) that a step without a progress bar starts; prints nothing."""
    listener = _listener.get()
    if listener is not None:
        listener(description, 0, 0)


@contextmanager
def progress(total: int, description: str, enabled: bool = True) -> Iterator:
    """Yield an `advance(n=1)` callable that moves a bar on stderr (silent when disabled);
    a listener (`listening`) hears every advance either way."""
    listener = _listener.get()
    if listener is None:
        with _bar(total, description, enabled) as advance:
            yield advance
        return
    done = 0
    listener(description, 0, total)
    with _bar(total, description, enabled) as advance:
        def both(n: int = 1) -> None:
            nonlocal done
            done += n
            advance(n)
            listener(description, done, total)

        yield both


@contextmanager
def _bar(total: int, description: str, enabled: bool) -> Iterator:
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

"""Progress on a terminal: a bar (rich, which typer brings) for long commands; nothing at all
when stderr is not a terminal, so logs and pipes stay clean."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Update = Callable[[int, int], None]  # (done, total)


def on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(callable(isatty) and isatty())


@contextmanager
def progress_bar(label: str) -> Iterator[Update | None]:
    """Yield an ``update(done, total)`` that draws a bar on stderr, or None off a terminal."""
    if not on_terminal():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def phases(label: str) -> Iterator[Callable[[str], None]]:
    """Yield ``phase(text)``: a spinner on stderr naming the current step, or a no-op."""
    if not on_terminal():
        yield _nothing
        return
    from rich.console import Console

    with Console(stderr=True).status(label) as status:

        def phase(text: str) -> None:
            status.update(f"{label}: {text}")

        yield phase


def _nothing(*_args: Any) -> None:
    return None

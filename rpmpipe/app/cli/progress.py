"""Progress on a terminal: a bar (rich, which typer brings) for long commands; nothing at all
when stderr is not a terminal, so logs and pipes stay clean."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rpmpipe.progress import SILENT, Progress

Update = Callable[[int, int], None]  # (done, total)


def on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(callable(isatty) and isatty())


@contextmanager
def _logs_above_the_bar() -> Iterator[None]:
    """While a bar is drawn (rich has put a proxy in ``sys.stderr``), log lines written to
    stderr go through the proxy, which prints them above the bar instead of through it."""
    moved = []
    proxy = sys.stderr
    real = getattr(proxy, "rich_proxied_file", None)
    if real is not None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is real:
                handler.setStream(proxy)
                moved.append(handler)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(real)


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

        with _logs_above_the_bar():
            yield update


class _Steps:
    """A :class:`rpmpipe.progress.Progress` drawn by rich: one line per step, numbered; a
    step with a total shows its bar and count (e.g. readings scanned out of those stored),
    one without a spinner; every step shows its time, and a finished one a check mark."""

    live = True

    def __init__(self, bar: Any, label: str) -> None:
        self._bar = bar
        self._label = label
        self._task: Any = None
        self._number = 0

    def step(self, label: str, total: int | None = None) -> None:
        self.finish()
        self._number += 1
        self._task = self._bar.add_task(
            f"{self._label} [{self._number}] {label}", total=total, counted=total is not None
        )

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        """The current step is over: its bar full (a total may have been an upper bound)."""
        if self._task is None:
            return
        task = next(t for t in self._bar.tasks if t.id == self._task)
        done = task.total if task.total is not None else 1
        self._bar.update(self._task, total=done, completed=done)
        self._task = None


@contextmanager
def steps(label: str) -> Iterator[Progress]:
    """Yield a :class:`rpmpipe.progress.Progress` that draws each step on stderr on a
    terminal, or the silent one elsewhere (nothing at all is written then)."""
    if not on_terminal():
        yield SILENT
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class State(ProgressColumn):
        """A spinner while the step runs, a check mark once it is over."""

        def __init__(self) -> None:
            super().__init__()
            self._spinner = SpinnerColumn()

        def render(self, task: Any) -> Any:
            return Text("✓", style="green") if task.finished else self._spinner.render(task)

    class Count(ProgressColumn):
        """done/total with thousands separators, for a step that has a total."""

        def render(self, task: Any) -> Any:
            if not task.fields.get("counted"):
                return Text("")
            return Text(f"{int(task.completed):,}/{int(task.total or 0):,}")

    with RichProgress(
        State(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        Count(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        shown = _Steps(bar, label)
        with _logs_above_the_bar():
            yield shown
            shown.finish()

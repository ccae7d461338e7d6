"""How a long-running stage reports its progress, without knowing who (if anyone) watches.

A stage takes a :class:`Progress` and calls ``step(label, total)`` as each step starts and
``advance(n)`` as work is done; the command line passes one that draws a bar on a terminal
(``rpmpipe.app.cli.progress``), everyone else the default :data:`SILENT`, which does nothing.
Labels carry counts and step names only, never patient data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")

# tracked() reports every this many items: a bar redraws a few times a second, and a call
# per item would cost more than the work of a small item.
_EVERY = 1024


class Progress(Protocol):
    """Progress of a stage's steps: one step at a time, each with its own total."""

    @property
    def live(self) -> bool:
        """True when someone watches: a stage may skip work done only to size a bar."""
        ...

    def step(self, label: str, total: int | None = None) -> None:
        """A new step starts (the previous one is over); ``total`` units when known."""
        ...

    def advance(self, amount: int = 1) -> None:
        """``amount`` more units of the current step are done."""
        ...


class _Silent:
    live = False

    def step(self, label: str, total: int | None = None) -> None:
        return None

    def advance(self, amount: int = 1) -> None:
        return None


SILENT: Progress = _Silent()


def tracked(items: Iterable[T], progress: Progress) -> Iterable[T]:
    """``items`` as they are, advancing ``progress`` by one per item (in small chunks)."""
    if not progress.live:
        return items
    return _tracked(items, progress)


def _tracked(items: Iterable[T], progress: Progress) -> Iterator[T]:
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == _EVERY:
            progress.advance(pending)
            pending = 0
    if pending:
        progress.advance(pending)

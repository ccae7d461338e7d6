"""Python's cyclic garbage collector, paused around bulk work.

A metrics or export run builds hundreds of thousands of small objects that make almost no
reference cycles (records, lines, dates, tuples). The collector would walk all of them again
and again: a third of a 100k-patient metrics run, a sixth of a 20k-patient export.
Reference counting still frees them as they go, so memory is unchanged.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic collector paused for the block, and resumed however it ends (if it ran)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

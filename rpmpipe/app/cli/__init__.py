"""The ``rpmpipe`` command.

Each command lives in its own module and is imported only when it runs (or when its own
``--help`` is asked for): ``rpmpipe --help`` and ``rpmpipe --version`` import no pandas,
pyarrow, SQLAlchemy or MQTT client, and ``rpmpipe --version`` not even the command-line
framework. The root group and the table of commands are in :mod:`rpmpipe.app.cli.root`
(``app``, ``COMMANDS`` and ``load_command`` are reachable from here too).
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from rpmpipe import __version__


def main() -> None:
    """The ``rpmpipe`` entry point."""
    if sys.argv[1:] == ["--version"]:
        # The answer needs nothing else: print it before typer and rich are imported.
        sys.stdout.write(f"rpmpipe {__version__}\n")
        return
    from rpmpipe.app.cli.root import main as run

    try:
        run()
    finally:
        # The process ends here: what the command's libraries hold (pyarrow, SQLAlchemy,
        # numpy: a hundred thousand objects, about 0.1 s a collection) is set aside from the
        # collections of the interpreter's teardown, which took 0.4-0.7 s after a metrics
        # run and 0.1-0.2 s once set aside. Finalizers and exit handlers run as before.
        gc.freeze()


def __getattr__(name: str) -> Any:
    if name in ("app", "COMMANDS", "CommandEntry", "RootGroup", "load_command"):
        from rpmpipe.app.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

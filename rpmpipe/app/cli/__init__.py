"""The ``rpmpipe`` command.

Each command lives in its own module and is imported only when it runs (or when its own
``--help`` is asked for): ``rpmpipe --help`` and ``rpmpipe --version`` import no pandas,
pyarrow, SQLAlchemy or MQTT client, and ``rpmpipe --version`` not even the command-line
framework. The root group and the table of commands are in :mod:`rpmpipe.app.cli.root`
(``app``, ``COMMANDS`` and ``load_command`` are reachable from here too).
"""

from __future__ import annotations

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

    run()


def __getattr__(name: str) -> Any:
    if name in ("app", "COMMANDS", "CommandEntry", "RootGroup", "load_command"):
        from rpmpipe.app.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

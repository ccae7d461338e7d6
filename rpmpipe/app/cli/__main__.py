"""``python -m rpmpipe.app.cli``: the same as the ``rpmpipe`` command."""

from __future__ import annotations

from rpmpipe.app.cli import main

main()

"""Show a written report on localhost (optional: the files open from disk as they are)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        # Request lines name patient pages; they stay out of the terminal and the logs.
        return

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def make_server(site: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for ``site`` bound to 127.0.0.1 only (``port`` 0 picks a free one)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)

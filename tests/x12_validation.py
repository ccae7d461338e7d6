"""Validate an 837P with pyx12 and fail on any error it reports.

pyx12 4.0 reports errors in three places: the return value of ``x12n_document`` (False when a
segment is invalid or the error handler counted errors), the error tree it can dump as JSON,
and messages on the ``pyx12`` logger (e.g. "does not look like an X12 data file"). We collect
all three, so a file counts as valid only when every channel is clean.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyx12.params
import pyx12.x12n_document


@dataclass(frozen=True)
class X12Report:
    ok: bool
    errors: tuple[str, ...]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _walk_errors(node: Any, found: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "errors" and isinstance(value, list):
                found.extend(json.dumps(e, sort_keys=True, default=str) for e in value)
            else:
                _walk_errors(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk_errors(item, found)


def validate_837(path: Path) -> X12Report:
    param = pyx12.params.params()
    logger = logging.getLogger("pyx12")
    handler = _Collect()
    logger.addHandler(handler)
    fd_997 = io.StringIO()
    fd_json = io.StringIO()
    try:
        ok = pyx12.x12n_document.x12n_document(
            param=param, src_file=str(path), fd_997=fd_997, fd_html=None, fd_json=fd_json
        )
    finally:
        logger.removeHandler(handler)
    found: list[str] = []
    if fd_json.getvalue():
        _walk_errors(json.loads(fd_json.getvalue()), found)
    found.extend(handler.messages)
    # A 999 with an IK5 other than "A" (accepted) is a rejection even if nothing else said so.
    ack = fd_997.getvalue()
    if "IK5*" in ack and "IK5*A" not in ack:
        found.append(f"999 does not accept the transaction: {ack!r}")
    return X12Report(ok=bool(ok) and not found, errors=tuple(found))


def assert_valid_837(path: Path) -> None:
    report = validate_837(path)
    assert report.ok, "pyx12 rejects {}:\n{}".format(
        path, "\n".join(report.errors) or "(no detail)"
    )

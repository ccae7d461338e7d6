"""Validate an 837P three ways and fail on any error: pyx12, x12sdk, and rpmpipe's own checks.

- pyx12 validates against the 005010X222A1 implementation guide.
- x12sdk (the maintained continuation of LinuxForHealth's x12) parses the file into its typed
  837P models, whose validators reject missing loops and segments, bad counts, bad amounts and
  claim totals that disagree with the lines: an independent second reading.
- ``rpmpipe.billing_export.claim_checks`` checks what neither does (NPI check digits, MBI,
  ZIP+4, CLM01 length and uniqueness, REF*6R, rendering provider under an organisation...).

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
from x12sdk.io import X12ModelReader

from rpmpipe.billing_export.claim_checks import check_837p


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
    """Errors from pyx12, x12sdk and the semantic checks, each prefixed with its source."""
    found = [f"pyx12: {e}" for e in pyx12_errors(path)]
    found.extend(f"x12sdk: {e}" for e in x12sdk_errors(path))
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as exc:
        found.append(f"rpmpipe: not readable as ASCII ({exc})")
    else:
        found.extend(f"rpmpipe: {e}" for e in check_837p(text))
    return X12Report(ok=not found, errors=tuple(found))


def x12sdk_errors(path: Path) -> list[str]:
    """What x12sdk's 837P models reject (empty when every transaction parses)."""
    models = 0
    try:
        with X12ModelReader(str(path)) as reader:
            for model in reader.models():
                models += 1
                if "837" not in type(model).__module__:
                    return [f"transaction parsed as {type(model).__module__}, not an 837"]
    except Exception as exc:  # noqa: BLE001 - any failure to read the file is a rejection
        return [f"{type(exc).__name__}: {exc}"[:2000]]
    return [] if models else ["no transaction found"]


def pyx12_errors(path: Path, *, acknowledge: bool = True) -> list[str]:
    """Every error pyx12 reports for ``path``; ``acknowledge`` also checks its 999.

    pyx12 4.0 cannot write a 999 for an 835 (it needs ST03, which the 835 guide marks Not
    Used), so 835s are checked through the error tree and the log alone.
    """
    param = pyx12.params.params()
    logger = logging.getLogger("pyx12")
    handler = _Collect()
    logger.addHandler(handler)
    fd_997 = io.StringIO()
    fd_json = io.StringIO()
    try:
        ok = pyx12.x12n_document.x12n_document(
            param=param,
            src_file=str(path),
            fd_997=fd_997 if acknowledge else None,
            fd_html=None,
            fd_json=fd_json,
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
    if not ok and not found:
        found.append("rejected (no detail)")
    return found


def assert_valid_837(path: Path) -> None:
    report = validate_837(path)
    assert report.ok, "{} is rejected:\n{}".format(path, "\n".join(report.errors) or "(no detail)")


def assert_valid_835(path: Path) -> None:
    """pyx12 accepts the 835 (005010X221A1) at ``path``."""
    errors = pyx12_errors(path, acknowledge=False)
    assert not errors, "pyx12 rejects {}:\n{}".format(path, "\n".join(errors))

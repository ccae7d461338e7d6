"""The one exception tree of rpmpipe.

::

    RpmpipeError
     ├── ConfigError            a setting is missing or has a bad value (names the setting)
     ├── RegistryImportError    a CSV/JSONL import row is bad (names file, row and field);
     │                          nothing of that file is written
     ├── DecodeError            a payload cannot become a reading (terminal: quarantine it);
     │                          carries a reason code such as ``bad_json`` or ``unknown_device``
     ├── TransientError         the broker or database is away (retry with backoff)
     └── ExportError            an export cannot be written as asked (e.g. missing claim data)
"""

from __future__ import annotations


class RpmpipeError(Exception):
    """Root of every error rpmpipe raises on purpose."""


class ConfigError(RpmpipeError):
    """A setting is missing or invalid; the message names the setting and where it came from."""


class RegistryImportError(RpmpipeError):
    """A bad row in an import file; the whole file is rejected."""

    def __init__(self, path: str, row: int, field: str | None, message: str) -> None:
        where = path + (f", row {row}" if row else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")
        self.path = path
        self.row = row
        self.field = field
        self.detail = message


class DecodeError(RpmpipeError):
    """A payload (or one item of a batched sync) that cannot be stored as a reading."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


class TransientError(RpmpipeError):
    """An outage worth retrying: broker unreachable, database locked or restarting."""


class ExportError(RpmpipeError):
    """An export that cannot be produced as asked."""

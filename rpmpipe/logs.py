"""Structured logging: an event name and fields, one line per event.

On a terminal the lines are short text (``12:01:07 warning export_lines_held lines=2``);
otherwise, or with ``log_format = "json"``, each is one JSON object for a log collector.

Fields are ids, counts and reasons. Never pass names, birth dates, addresses, member ids or
raw payloads: the PHI guard below drops any field whose name says it holds them.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_PHI_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "name",
        "birth_date",
        "dob",
        "address",
        "address1",
        "city",
        "zip",
        "member_id",
        "payload",
        "raw",
        "password",
    }
)


OWN_LOGGERS = ("rpmpipe", "ingest", "metrics", "billing_export", "simulators")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


class _TextFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value ...`` in local time: for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        clock = datetime.fromtimestamp(record.created, UTC).astimezone().strftime("%H:%M:%S")
        line = f"{clock} {record.levelname.lower():<7} {record.getMessage()} {tail}".rstrip()
        if record.exc_info and record.exc_info[0] is not None:
            line += f" error_type={record.exc_info[0].__name__}"
        return line


class EventLogger:
    """``log.info("batch_stored", rows=120, files=1)``: an event name plus safe fields."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def _emit(self, level: int, event: str, fields: dict[str, Any], exc: bool = False) -> None:
        if self._log.isEnabledFor(level):
            safe = {k: v for k, v in fields.items() if k not in _PHI_FIELDS}
            self._log.log(level, event, extra={"fields": safe}, exc_info=exc)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, exc: bool = False, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields, exc)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)


def resolve_format(fmt: str, stream: Any) -> str:
    """``json`` or ``text``: ``auto`` is text on a terminal and JSON anywhere else."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Route rpmpipe's logs to stderr (or ``stream``) as JSON lines or short text lines."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    chosen_format = resolve_format(fmt, stream)
    handler.setFormatter(_JsonFormatter() if chosen_format == "json" else _TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Only rpmpipe's own loggers follow the chosen level. Third-party libraries (MQTT brokers
    # and clients, markdown, asyncio, SQLAlchemy) may log payloads or SQL parameters at DEBUG,
    # so they stay at WARNING whatever the level: no PHI leaks through them.
    chosen = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(max(logging.WARNING, chosen))
    for ours in OWN_LOGGERS:
        logging.getLogger(ours).setLevel(chosen)

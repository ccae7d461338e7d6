"""The one exception tree of rpmpipe.

::

    RpmpipeError                   code, fields; exit 1 unless a branch says otherwise
     ├── UsageError                a flag or argument has a bad value (exit 2)
     │    └── AsOfError            an as-of date after today in its zone (code ``as_of_future``)
     ├── ConfigError               a setting is missing or has a bad value (exit 2); names the
     │                             setting (``fields["setting"]``) and where it came from
     ├── RegistryImportError       a CSV/JSONL import row is bad (names file, row and field);
     │                             nothing of that file is written
     ├── RegistryRecordError       an id the registry does not hold, or a change it cannot take
     ├── DecodeError               a payload cannot become a reading (terminal: quarantine it);
     │                             carries a reason code such as ``bad_json`` or ``unknown_device``
     ├── TransientError            the broker or database is away (retry with backoff; exit 4)
     │    └── ServiceUnavailable   a service or the disk cannot be used: says what and where
     ├── ExportError               an export cannot be written as asked (e.g. missing claim data)
     └── RemitError                an 835 remittance file cannot be read (names the file)

Every error has a ``code`` (a short snake_case word callers branch on, never the message
text) and ``fields`` (ids, paths, setting names: never PHI). ``exit_code`` is the command's
exit status when the error reaches the command line (see ``rpmpipe.app.cli.exits``).

Outside the tree, :func:`is_transient` tells the two kinds of failure apart at the edges:
``OSError`` (a full or unwritable disk, a refused socket) and a lost or refused database
connection are transient (retry with backoff); everything else a message can cause (a value
out of range, a constraint, a bug) is terminal (quarantine the message, acknowledge, go on).
"""

from __future__ import annotations

from typing import Any, ClassVar

# Exit codes of every command (README "Exit codes", `rpmpipe --help`).
EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_HELD = 3
EXIT_UNAVAILABLE = 4


class RpmpipeError(Exception):
    """Root of every error rpmpipe raises on purpose."""

    default_code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_DATA

    def __init__(self, message: str = "", *, code: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.fields: dict[str, Any] = fields


class UsageError(RpmpipeError):
    """A command-line value that cannot be used (a bad date, an unknown format)."""

    default_code = "bad_usage"
    exit_code = EXIT_USAGE


class AsOfError(UsageError):
    """An as-of date after today: its periods have not ended, so nothing can be final.

    Fields: ``as_of``, ``today`` (dates) and ``zone`` (the IANA zone "today" is taken in).
    """

    default_code = "as_of_future"


class ConfigError(RpmpipeError):
    """A setting is missing or invalid; the message names the setting and where it came from.

    ``fields["setting"]`` is the dotted setting name when one setting is at fault.
    """

    default_code = "bad_setting"
    exit_code = EXIT_USAGE


class RegistryImportError(RpmpipeError):
    """A bad row in an import file; the whole file is rejected.

    ``code`` is ``unknown_reference`` when the row names an id the registry does not hold
    (``field`` says which), ``out_of_range`` when a care activity's ``started_at`` is outside
    the accepted range, else ``bad_row``.
    """

    default_code = "bad_row"

    def __init__(
        self, path: str, row: int, field: str | None, message: str, *, code: str | None = None
    ) -> None:
        where = path + (f", row {row}" if row else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}", code=code, path=path, row=row, field=field)
        self.path = path
        self.row = row
        self.field = field
        self.detail = message


class RegistryRecordError(RpmpipeError):
    """A registry change that names an id the registry does not hold, or cannot be made."""

    default_code = "not_found"


class DecodeError(RpmpipeError):
    """A payload (or one item of a batched sync) that cannot be stored as a reading."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}", code=code)
        self.detail = message


class TransientError(RpmpipeError):
    """An outage worth retrying: broker unreachable, database locked or restarting."""

    default_code = "transient"
    exit_code = EXIT_UNAVAILABLE


class ServiceUnavailable(TransientError):
    """A database, broker or directory that cannot be used right now.

    ``fields``: ``service`` (``database``, ``broker``, ``disk``) and ``where`` (a host and
    database without the password, or a path). The message says both.
    """

    default_code = "unavailable"


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage worth retrying rather than something a message caused.

    ``OSError`` and SQLAlchemy's ``OperationalError``/``InterfaceError``/``DisconnectionError``
    (connection refused, lost, database locked or restarting), and any exception chained from
    one (``raise ... from``), are transient; a SQLAlchemy error whose connection was invalidated is too.
    """
    from sqlalchemy import exc as sa

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TransientError | OSError):
            return True
        if isinstance(current, sa.OperationalError | sa.InterfaceError | sa.DisconnectionError):
            return True
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa.TimeoutError):  # no pooled connection in time
            return True
        current = current.__cause__
    return False


class ExportError(RpmpipeError):
    """An export that cannot be produced as asked."""

    default_code = "export_failed"


class RemitError(RpmpipeError):
    """An 835 remittance file that cannot be read; nothing of it is recorded."""

    default_code = "bad_remittance"

"""What every command module shares: the settings built by the global options, failing, and
the edge where any error becomes one line on stderr and an exit code.

Exit codes (README "Exit codes", ``rpmpipe --help``): 0 done, 1 data error, 2 usage or
settings error, 3 done with lines held back, 4 a service unavailable (broker, database, disk).
"""

from __future__ import annotations

import errno
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from rpmpipe.errors import EXIT_DATA, RpmpipeError, ServiceUnavailable

if TYPE_CHECKING:
    from rpmpipe.settings import Settings

EXIT_CODES_HELP = (
    "Exit codes: 0 done; 1 data error (a bad row, a bad payload); 2 usage or settings error; "
    "3 done with lines held back; 4 a service unavailable (broker, database, disk)."
)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built by the global options (commands call this first)."""
    from rpmpipe.settings import Settings

    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


def fail(message: str, code: int = EXIT_DATA) -> typer.Exit:
    """Print ``error: message`` to stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def database_where(url: str) -> str:
    """The registry's address for a message: scheme, user, host, port and database, no password."""
    try:
        from sqlalchemy.engine import URL, make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - an unparseable URL is reported elsewhere
        from rpmpipe.settings import redact_url

        return redact_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {parsed.database}"
    bare = URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    )
    return str(bare.render_as_string(hide_password=True))


def _database_error(exc: BaseException) -> bool:
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is None:
        return False
    return isinstance(exc, sa.OperationalError | sa.InterfaceError) or (
        isinstance(exc, sa.DBAPIError) and exc.connection_invalidated
    )


def as_edge_error(exc: BaseException, settings: Settings | None) -> RpmpipeError | None:
    """The rpmpipe error an outside failure stands for, or None when it is not one we know.

    A database that cannot be reached or opened and a directory that cannot be written are
    services unavailable (exit 4): the message names what failed and where, never a password.
    """
    if isinstance(exc, RpmpipeError):
        return exc
    if _database_error(exc):
        url = settings.effective_database_url if settings is not None else ""
        where = database_where(url) if url else "the registry database"
        orig = getattr(exc, "orig", None) or exc
        reason = _first_line(str(orig)) or type(orig).__name__
        if url and settings is not None and settings.database_url:
            password = _password(url)
            if password:
                reason = reason.replace(password, "***")
        return ServiceUnavailable(
            f"registry database unavailable ({where}): {reason}", service="database", where=where
        )
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError):
        path = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
        if path:
            verb = "cannot use" if exc.errno == errno.ENOENT else "cannot write"
            return ServiceUnavailable(f"{verb} {path}: {reason}", service="disk", where=str(path))
        return ServiceUnavailable(f"disk error: {reason}", service="disk", where="")
    return None


def _password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(url).password or "")
    except Exception:  # noqa: BLE001
        return ""


class EdgeGroup(TyperGroup):
    """The root command group: every failure a command does not handle itself ends here as
    one ``error:`` line and the exit code of its kind, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - translated below, or re-raised as it is
            from rpmpipe.settings import Settings

            settings = ctx.obj if isinstance(ctx.obj, Settings) else None
            known = as_edge_error(exc, settings)
            if known is None:
                raise
            typer.echo(f"error: {known}", err=True)
            raise typer.Exit(known.exit_code) from None

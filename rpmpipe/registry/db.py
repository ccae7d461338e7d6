"""Opening the registry database and bringing its schema up to date."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from rpmpipe.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest migration. A registry already there is not handed to Alembic (importing it costs
# more than the rest of a short command); tests/registry/test_db.py keeps this in step.
SCHEMA_HEAD = "0009"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    Bound parameters never appear in an error's text (``hide_parameters``): a failed statement
    would otherwise print names, birth dates and member ids into tracebacks and logs.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"setting 'database_url': not a SQLAlchemy URL ({exc})") from None
    kwargs: dict[str, Any] = {"future": True, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # The registry holds PHI: create it 0600 (SQLite gives -wal/-shm the same mode).
            Path(parsed.database).touch(mode=0o600, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # An unreachable server fails in seconds rather than after the OS's TCP timeout.
            kwargs["connect_args"] = {"connect_timeout": 10}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (WAL fsynced) when it returns, so the export ledger is
            # durable before a run directory is published (a power cut cannot bill twice).
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

    return engine


def current_revision(engine: Engine) -> str | None:
    """The registry's Alembic revision, or None for an empty database."""
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no alembic_version table yet
        return None
    return str(value) if value is not None else None


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied (idempotent)."""
    if current_revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_registry(url: str, migrate: bool = True) -> Engine:
    """Engine for the registry, migrated to the current schema."""
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # The ORM is imported by the commands that use it, not by every one that opens an engine.
    from sqlalchemy.orm import Session, sessionmaker

    return sessionmaker(engine, class_=Session, expire_on_commit=False)

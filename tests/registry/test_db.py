"""Registry schema: Alembic migrations bring an empty database to the head, once."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from rpmpipe.registry.db import (
    MIGRATIONS,
    SCHEMA_HEAD,
    current_revision,
    make_engine,
    open_registry,
)
from rpmpipe.registry.models import Base


def test_schema_head_constant_is_the_newest_migration() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_empty_database_is_migrated_to_head_with_every_table(database_url: str) -> None:
    assert current_revision(make_engine(database_url)) is None
    engine = open_registry(database_url)
    assert current_revision(engine) == SCHEMA_HEAD
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    open_registry(database_url)  # a second open finds it at head and changes nothing
    assert current_revision(engine) == SCHEMA_HEAD


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = open_registry(database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_a_claims_ledger_lines_are_found_by_an_index(tmp_path: object) -> None:
    """An appeal packet (per claim) and an 835's import look the ledger up by claim id: a
    scan of every line ever exported, once per claim, before the index."""
    from sqlalchemy import text

    engine = open_registry(f"sqlite:///{tmp_path}/registry.db")
    with engine.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN QUERY PLAN SELECT run_id FROM export_ledger WHERE claim_id = 'RP1'")
        ).all()
    engine.dispose()
    assert any("USING INDEX ix_export_ledger_claim_id" in str(step[-1]) for step in plan), plan

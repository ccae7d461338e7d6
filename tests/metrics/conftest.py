"""Fixtures for metrics tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from billing_identity import OTHER_ORGANISATION_NPI, identity_overrides
from engagement_world import World
from sqlalchemy import Engine
from test_metrics_job import seed_registry, write_readings

from rpmpipe.registry.db import open_registry
from rpmpipe.settings import Settings, load_settings


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def seeded(tmp_path: Path, database_url: str) -> tuple[Settings, Engine]:
    """Settings and a registry (SQLite, and PostgreSQL when configured) holding the seed
    patients, with their readings written as Parquet under the data dir."""
    settings = load_settings(
        None,
        env={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database_url": database_url,
            # The seed enrollments are ordered under 1234567893: a practitioner of the clinic.
            **identity_overrides(OTHER_ORGANISATION_NPI, "1234567893"),
        },
    )
    engine = open_registry(database_url)
    seed_registry(engine)
    write_readings(settings.readings_dir)
    return settings, engine

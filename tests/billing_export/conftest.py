"""Fixtures of the billing-export tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from rpmpipe.registry.db import open_registry


@pytest.fixture
def registry(database_url: str) -> Iterator[Engine]:
    """A migrated registry on SQLite and (when configured) PostgreSQL."""
    engine = open_registry(database_url)
    yield engine
    engine.dispose()

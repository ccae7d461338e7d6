"""Fixtures of the billing-export tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from x12_validation import assert_valid_837

from rpmpipe.registry.db import open_registry


@pytest.fixture
def registry(database_url: str) -> Iterator[Engine]:
    """A migrated registry on SQLite and (when configured) PostgreSQL."""
    engine = open_registry(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def every_837_is_valid(tmp_path: Path) -> Iterator[None]:
    """After each test, pyx12 must accept every ``*.837`` the test left under tmp_path.

    Deliberately broken files are written with another suffix (``.broken``).
    """
    yield
    for path in sorted(tmp_path.rglob("*.837")):
        assert_valid_837(path)

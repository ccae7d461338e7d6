"""Shared fixtures.

``stack`` is the one parametrised fixture for service tests: it yields a broker URL, a
database URL and settings for

- ``embedded``: the in-process amqtt broker and a SQLite file (always), and
- ``external``: Mosquitto and PostgreSQL from ``RPMPIPE_TEST_BROKER_URL`` and
  ``RPMPIPE_TEST_DATABASE_URL`` (skipped when unset; a failure when
  ``RPMPIPE_REQUIRE_SERVICES=1``).

Each test gets its own topic root, client id, data dir and (on PostgreSQL) schema, so tests
sharing one broker and one database never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from required import REQUIRE_SERVICES, unavailable
from service_settings import make_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rpmpipe.embedded_broker import EmbeddedBroker
from rpmpipe.settings import Settings

TEST_BROKER_URL = os.environ.get("RPMPIPE_TEST_BROKER_URL", "")
TEST_DATABASE_URL = os.environ.get("RPMPIPE_TEST_DATABASE_URL", "")


@dataclass(frozen=True)
class Stack:
    name: str
    broker_url: str
    database_url: str
    protocol: str
    settings: Settings
    embedded_broker: EmbeddedBroker | None = None


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


def _external_or_skip() -> None:
    if TEST_BROKER_URL and TEST_DATABASE_URL:
        return
    message = "RPMPIPE_TEST_BROKER_URL and RPMPIPE_TEST_DATABASE_URL are not set"
    unavailable(message)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    _external_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(TEST_DATABASE_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        if REQUIRE_SERVICES:
            pytest.fail(
                f"PostgreSQL at {make_url(TEST_DATABASE_URL).render_as_string()} unusable: {exc}"
            )
        pytest.skip(f"PostgreSQL unusable: {exc}")
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["embedded", "external"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Stack:
    if request.param == "embedded":
        broker: EmbeddedBroker = request.getfixturevalue("embedded_broker")
        db = f"sqlite:///{tmp_path / 'registry.db'}"
        settings = make_settings(tmp_path / "data", broker.url, db, "3.1.1")
        return Stack("embedded", broker.url, db, "3.1.1", settings, broker)
    _external_or_skip()
    db = request.getfixturevalue("pg_schema_url")
    settings = make_settings(tmp_path / "data", TEST_BROKER_URL, db, "5")
    return Stack("external", TEST_BROKER_URL, db, "5", settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry database: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests that need no services: SQLite and a tmp data dir."""
    return make_settings(
        tmp_path / "data", "mqtt://127.0.0.1:1", f"sqlite:///{tmp_path / 'registry.db'}", "5"
    )


@pytest.fixture(autouse=True)
def every_837_is_valid(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that has a tmp_path, every ``*.837`` it left there must pass pyx12,
    x12sdk and rpmpipe's semantic checks (``x12_validation``).

    Deliberately broken files are written with another suffix (``.broken``).
    """
    if "tmp_path" not in request.fixturenames:
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    yield
    from x12_validation import assert_valid_837

    for path in sorted(tmp_path.rglob("*.837")):
        assert_valid_837(path)

"""Settings of one service test: its own data dir, client id and topic root.

A module of its own (not conftest) so that test files anywhere import it by one unambiguous
name: ``from conftest import`` resolves to whichever conftest.py is first on the path.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from rpmpipe.settings import Settings, load_settings


def make_settings(
    data_dir: Path, broker_url: str, database_url: str, protocol: str, **extra: object
) -> Settings:
    tag = uuid.uuid4().hex[:10]
    overrides: dict[str, object] = {
        "data_dir": str(data_dir),
        "database_url": database_url,
        "broker.url": broker_url,
        "broker.protocol": protocol,
        "broker.client_id": f"rpmpipe-test-{tag}",
        "broker.username": "rpmpipe-test",
        "broker.topic_root": f"rpmtest/{tag}/rpm/v1",
        "broker.flush_seconds": 0.2,
    }
    overrides.update(extra)
    return load_settings(None, env={}, overrides=overrides)

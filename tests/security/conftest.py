"""Fixtures for the security tests; the broker harness lives in ``mosquitto_harness``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mosquitto_harness import DEVICES, SecuredBroker, free_port, need_mosquitto, run_as_for_tests

from rpmpipe.security.broker_config import write_broker_config


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    """A running Mosquitto configured by broker-config for DEVICES."""
    need_mosquitto()
    topic_root = f"rpmtest/{uuid.uuid4().hex[:10]}/rpm/v1"
    broker = SecuredBroker(tmp_path / "broker", free_port(), topic_root)
    write_broker_config(
        broker.directory,
        DEVICES,
        topic_root,
        broker.port,
        datetime.now(UTC),
        run_as=run_as_for_tests(),
    )
    broker.start()
    yield broker
    broker.stop()

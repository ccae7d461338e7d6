"""Rerunning broker-config against a running Mosquitto, then SIGHUP: the rotation procedure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mosquitto_harness import DEVICES, SecuredBroker, open_session, run_as_for_tests

from rpmpipe.security.broker_config import write_broker_config

pytestmark = pytest.mark.services


def _rerun(broker: SecuredBroker, devices: tuple[str, ...]) -> None:
    write_broker_config(broker.directory, devices, broker.topic_root, broker.port,
                        datetime.now(UTC), run_as=run_as_for_tests())  # fmt: skip


def _accepted(broker: SecuredBroker, username: str, password: str | None = None) -> bool:
    session = open_session(broker.settings(username, password=password))
    try:
        return session.accepted
    finally:
        session.close()


def test_new_device_can_connect_after_rerun_and_reload(secured_broker: SecuredBroker) -> None:
    old_password = secured_broker.password(DEVICES[0])
    _rerun(secured_broker, (*DEVICES, "SC-000099"))
    secured_broker.reload()
    assert _accepted(secured_broker, "SC-000099")
    assert secured_broker.password(DEVICES[0]) == old_password
    assert _accepted(secured_broker, DEVICES[0], old_password)


def test_rotated_password_replaces_the_old_one(secured_broker: SecuredBroker) -> None:
    old_password = secured_broker.password(DEVICES[0])
    creds = secured_broker.directory / "credentials.csv"
    lines = creds.read_text().splitlines(keepends=True)
    creds.write_text("".join(line for line in lines if f",{DEVICES[0]}," not in line))
    _rerun(secured_broker, DEVICES)
    secured_broker.reload()
    assert secured_broker.password(DEVICES[0]) != old_password
    assert not _accepted(secured_broker, DEVICES[0], old_password)
    assert _accepted(secured_broker, DEVICES[0])
    assert _accepted(secured_broker, DEVICES[1])


def test_device_removed_from_registry_is_locked_out(secured_broker: SecuredBroker) -> None:
    password = secured_broker.password(DEVICES[2])
    _rerun(secured_broker, DEVICES[:2])
    secured_broker.reload()
    assert not _accepted(secured_broker, DEVICES[2], password)

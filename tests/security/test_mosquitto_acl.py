"""A real Mosquitto running the generated configuration enforces TLS, passwords and the ACL.

MQTT 5 clients are used so that refusals come back as reason codes (CONNACK, PUBACK,
SUBACK) instead of silence. Non-delivery is shown with a sentinel: the forbidden message is
published first, then an allowed one from the same connection; Mosquitto handles a
connection's packets in order, so once the sentinel arrives the forbidden one would have too.
"""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mosquitto_harness import DEVICES, SecuredBroker, open_session

from rpmpipe.errors import ConfigError
from rpmpipe.mqtt import make_client
from rpmpipe.security import certs

NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86

pytestmark = pytest.mark.services


def test_anonymous_client_is_refused(secured_broker: SecuredBroker) -> None:
    session = open_session(secured_broker.settings())
    try:
        assert not session.accepted
        assert session.connack.value in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    finally:
        session.close()


def test_wrong_password_is_refused(secured_broker: SecuredBroker) -> None:
    wrong = "not-the-password"  # noqa: S105 - the point of the test
    session = open_session(secured_broker.settings(DEVICES[0], password=wrong))
    try:
        assert not session.accepted
        assert session.connack.value in (NOT_AUTHORIZED, BAD_CREDENTIALS)
    finally:
        session.close()


def test_plain_tcp_client_gets_no_mqtt_session(secured_broker: SecuredBroker) -> None:
    plain = secured_broker.settings(
        DEVICES[0],
        url=f"mqtt://127.0.0.1:{secured_broker.port}",
        ca="",
        allow_insecure_password=True,
    )
    session = open_session(plain)
    try:
        assert session.connack is None  # no CONNACK at all: the TLS port never spoke MQTT
        assert session.closed
    finally:
        session.close()


def test_configuration_has_no_plain_listener(secured_broker: SecuredBroker) -> None:
    lines = (secured_broker.directory / "mosquitto.conf").read_text().splitlines()
    listeners = [line for line in lines if line.startswith(("listener", "port ", "bind_address"))]
    assert listeners == [f"listener {secured_broker.port} 127.0.0.1"]
    assert "allow_anonymous false" in lines
    for tls_line in ("cafile", "certfile", "keyfile"):
        assert any(line.startswith(tls_line + " ") for line in lines)


def test_plain_client_with_password_is_refused_before_connecting(
    secured_broker: SecuredBroker,
) -> None:
    plain = secured_broker.settings(
        DEVICES[0], url=f"mqtt://127.0.0.1:{secured_broker.port}", ca=""
    )
    with pytest.raises(ConfigError, match="plain TCP"):
        make_client(plain, "never-connects")


def test_device_reading_reaches_ingest_over_a_shared_subscription(
    secured_broker: SecuredBroker,
) -> None:
    root = secured_broker.topic_root
    ingest = open_session(secured_broker.settings("ingest"))
    device = open_session(secured_broker.settings(DEVICES[0]))
    try:
        assert ingest.accepted and device.accepted
        granted = ingest.subscribe(f"$share/rpmpipe/{root}/devices/+/readings")
        assert not granted.is_failure
        topic = f"{root}/devices/{DEVICES[0]}/readings"
        assert not device.publish(topic, b'{"reading": 1}').is_failure
        assert ingest.wait_for_messages(1) == [(topic, b'{"reading": 1}')]
    finally:
        device.close()
        ingest.close()


def test_device_cannot_publish_on_another_devices_topic(secured_broker: SecuredBroker) -> None:
    root = secured_broker.topic_root
    ingest = open_session(secured_broker.settings("ingest"))
    intruder = open_session(secured_broker.settings(DEVICES[0]))
    try:
        assert not ingest.subscribe(f"{root}/#").is_failure
        forged = intruder.publish(f"{root}/devices/{DEVICES[1]}/readings", b"forged")
        assert forged.value == NOT_AUTHORIZED
        own = f"{root}/devices/{DEVICES[0]}/readings"
        intruder.publish(own, b"sentinel")
        assert ingest.wait_for_messages(1) == [(own, b"sentinel")]
    finally:
        intruder.close()
        ingest.close()


def test_care_app_publishes_activities_but_not_readings(secured_broker: SecuredBroker) -> None:
    root = secured_broker.topic_root
    ingest = open_session(secured_broker.settings("ingest"))
    care = open_session(secured_broker.settings("care-app"))
    try:
        assert not ingest.subscribe(f"{root}/#").is_failure
        forged = care.publish(f"{root}/devices/{DEVICES[0]}/readings", b"forged")
        assert forged.value == NOT_AUTHORIZED
        assert not care.publish(f"{root}/activities", b"activity").is_failure
        assert ingest.wait_for_messages(1) == [(f"{root}/activities", b"activity")]
    finally:
        care.close()
        ingest.close()


def test_ingest_may_read_but_not_publish(secured_broker: SecuredBroker) -> None:
    ingest = open_session(secured_broker.settings("ingest"))
    try:
        topic = f"{secured_broker.topic_root}/devices/{DEVICES[0]}/readings"
        assert ingest.publish(topic, b"forged").value == NOT_AUTHORIZED
        activities = f"{secured_broker.topic_root}/activities"
        assert ingest.publish(activities, b"x").value == NOT_AUTHORIZED
    finally:
        ingest.close()


def test_device_receives_no_other_devices_readings(secured_broker: SecuredBroker) -> None:
    """Mosquitto grants a wildcard SUBACK but checks 'read' on every message it would deliver."""
    root = secured_broker.topic_root
    snoop = open_session(secured_broker.settings(DEVICES[0]))
    ingest = open_session(secured_broker.settings("ingest"))
    other = open_session(secured_broker.settings(DEVICES[1]))
    try:
        snoop.subscribe(f"{root}/#")
        ingest.subscribe(f"{root}/#")
        topic = f"{root}/devices/{DEVICES[1]}/readings"
        other.publish(topic, b"private")
        assert ingest.wait_for_messages(1) == [(topic, b"private")]
        # The reading was routed before this PUBACK is sent on the snoop's own connection,
        # so had it been delivered to the snoop it would be here by now.
        snoop.publish(f"{root}/devices/{DEVICES[0]}/readings", b"own")
        assert snoop.messages == []
    finally:
        for s in (other, ingest, snoop):
            s.close()


def test_client_without_the_private_ca_rejects_the_broker(secured_broker: SecuredBroker) -> None:
    client, address = make_client(secured_broker.settings("ingest", ca=""), "no-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect(address.host, address.port)


def test_client_checks_the_broker_host_name(secured_broker: SecuredBroker, tmp_path: Path) -> None:
    """A certificate from the right CA but for another host name is refused."""
    d = secured_broker.directory
    secured_broker.stop()
    ca = certs.KeyPair((d / "ca.crt").read_bytes(), (d / "ca.key").read_bytes())
    other = certs.issue_server(ca, ("broker.example.org",), datetime.now(UTC))
    (d / "server.crt").write_bytes(other.cert_pem)
    (d / "server.key").write_bytes(other.key_pem)
    secured_broker.start()
    client, address = make_client(secured_broker.settings("ingest"), "wrong-name")
    with pytest.raises(ssl.SSLCertVerificationError, match="(?i)hostname|IP address mismatch"):
        client.connect(address.host, address.port)


def test_client_reaches_the_broker_by_localhost_name(secured_broker: SecuredBroker) -> None:
    session = open_session(
        secured_broker.settings("ingest", url=f"mqtts://localhost:{secured_broker.port}")
    )
    try:
        assert session.accepted
    finally:
        session.close()


def test_tls_port_speaks_no_plain_mqtt(secured_broker: SecuredBroker) -> None:
    """A raw MQTT CONNECT in clear text gets no CONNACK: the connection is just closed."""
    connect = bytes.fromhex("101000044d5154540402003c0004616e6f6e")  # MQTT 3.1.1, id "anon"
    with socket.create_connection(("127.0.0.1", secured_broker.port), timeout=15) as sock:
        sock.sendall(connect)
        try:
            reply = sock.recv(4)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"\x20")  # 0x20 is CONNACK

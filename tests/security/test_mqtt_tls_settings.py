"""Client-side TLS and credential settings: mqtts URLs, pinned CA, no passwords in clear."""

# ruff: noqa: S105, S106  (the passwords here are test values)

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from rpmpipe.errors import ConfigError
from rpmpipe.mqtt import make_client, parse_broker, tls_context
from rpmpipe.security import certs
from rpmpipe.settings import BrokerSettings, load_settings

NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """ca.crt plus a leaf certificate/key usable as a client certificate."""
    ca = certs.issue_ca("test CA", NOW)
    leaf = certs.issue_server(ca, ("device.example",), NOW)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "client.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "client.key").write_bytes(leaf.key_pem)
    (tmp_path / "other.key").write_bytes(certs.issue_ca("other", NOW).key_pem)
    return tmp_path


def test_password_over_plain_tcp_is_refused() -> None:
    with pytest.raises(ConfigError, match="plain TCP"):
        parse_broker(BrokerSettings(url="mqtt://broker:1883", username="u", password="p"))


def test_password_inside_a_plain_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="plain TCP"):
        parse_broker(BrokerSettings(url="mqtt://u:p@broker:1883"))


def test_password_over_plain_tcp_allowed_only_when_asked() -> None:
    address = parse_broker(
        BrokerSettings(
            url="mqtt://broker", username="u", password="p", allow_insecure_password=True
        )
    )
    assert (address.tls, address.port, address.username, address.password) == (
        False,
        1883,
        "u",
        "p",
    )


def test_username_without_password_is_fine_over_plain_tcp() -> None:
    assert parse_broker(BrokerSettings(url="mqtt://broker", username="ingest")).username == "ingest"


def test_environment_names_reach_the_broker_settings(pki: Path) -> None:
    env = {
        "RPMPIPE_BROKER_URL": "mqtts://broker.example:8884",
        "RPMPIPE_BROKER_USERNAME": "ingest",
        "RPMPIPE_BROKER_PASSWORD": "pw",
        "RPMPIPE_BROKER_CA": str(pki / "ca.crt"),
        "RPMPIPE_BROKER_CERTFILE": str(pki / "client.crt"),
        "RPMPIPE_BROKER_KEYFILE": str(pki / "client.key"),
    }
    broker = load_settings(None, env=env).broker
    address = parse_broker(broker)
    assert (address.host, address.port, address.tls) == ("broker.example", 8884, True)
    assert (address.username, address.password) == ("ingest", "pw")
    assert broker.ca == str(pki / "ca.crt")
    assert (broker.certfile, broker.keyfile) == (str(pki / "client.crt"), str(pki / "client.key"))


def test_insecure_password_switch_comes_from_the_environment() -> None:
    env = {
        "RPMPIPE_BROKER_URL": "mqtt://broker",
        "RPMPIPE_BROKER_PASSWORD": "pw",
        "RPMPIPE_BROKER_ALLOW_INSECURE_PASSWORD": "true",
    }
    assert parse_broker(load_settings(None, env=env).broker).password == "pw"
    env["RPMPIPE_BROKER_ALLOW_INSECURE_PASSWORD"] = "false"
    with pytest.raises(ConfigError, match="plain TCP"):
        parse_broker(load_settings(None, env=env).broker)


@pytest.mark.parametrize("scheme", ["mqtts", "ssl"])
def test_tls_schemes_default_to_port_8883(scheme: str) -> None:
    address = parse_broker(BrokerSettings(url=f"{scheme}://broker", password="p"))
    assert (address.tls, address.port) == (True, 8883)


def test_credentials_in_the_url_are_percent_decoded() -> None:
    address = parse_broker(BrokerSettings(url="mqtts://dev%2F1:p%40ss@broker"))
    assert (address.username, address.password) == ("dev/1", "p@ss")


@pytest.mark.parametrize("name", ["ca", "certfile", "keyfile"])
def test_tls_files_with_a_plain_url_are_an_error(name: str) -> None:
    with pytest.raises(ConfigError, match=f"broker.{name}"):
        parse_broker(BrokerSettings(url="mqtt://broker", **{name: "/x"}))


def test_keyfile_needs_a_certfile() -> None:
    with pytest.raises(ConfigError, match="broker.keyfile"):
        parse_broker(BrokerSettings(url="mqtts://broker", keyfile="/x.key"))


def test_context_verifies_the_server_and_its_name(pki: Path) -> None:
    context = tls_context(BrokerSettings(url="mqtts://broker", ca=str(pki / "ca.crt")))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert subjects == [{"commonName": "test CA"}]


def test_missing_ca_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="broker.ca"):
        tls_context(BrokerSettings(url="mqtts://broker", ca=str(tmp_path / "nope.crt")))


def test_client_certificate_is_loaded(pki: Path) -> None:
    settings = BrokerSettings(
        url="mqtts://broker", ca=str(pki / "ca.crt"),
        certfile=str(pki / "client.crt"), keyfile=str(pki / "client.key"),
    )  # fmt: skip
    client, address = make_client(settings, "c1", protocol=mqtt.MQTTv5)
    assert address.tls


def test_mismatched_client_key_names_the_setting(pki: Path) -> None:
    settings = BrokerSettings(
        url="mqtts://broker", ca=str(pki / "ca.crt"),
        certfile=str(pki / "client.crt"), keyfile=str(pki / "other.key"),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="broker.certfile"):
        tls_context(settings)


def test_paho_client_keeps_hostname_checking_on(pki: Path) -> None:
    client, _ = make_client(BrokerSettings(url="mqtts://broker", ca=str(pki / "ca.crt")), "c2")
    assert client._tls_insecure is False  # paho skips its own name check when this is True

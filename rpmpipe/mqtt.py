"""Connecting to the broker: URL parsing, TLS, credentials, and the paho client."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from rpmpipe.errors import ConfigError
from rpmpipe.settings import BrokerSettings


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str
    password: str


def parse_broker(settings: BrokerSettings) -> BrokerAddress:
    """Host, port, TLS and credentials from ``broker.url`` and the credential settings."""
    parts = urlsplit(settings.url)
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ConfigError(f"setting 'broker.url': no host in {parts.scheme}://{parts.netloc}")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError("setting 'broker.url': the port is not a number") from None
    username = settings.username or unquote(parts.username or "")
    password = settings.password or unquote(parts.password or "")
    if password and not tls and not settings.allow_insecure_password:
        raise ConfigError(
            "setting 'broker.url': refusing to send a broker password over plain TCP; use "
            "mqtts:// or set broker.allow_insecure_password = true (RPMPIPE_BROKER_ALLOW_INSECURE_PASSWORD)"
        )
    return BrokerAddress(parts.hostname, port, tls, username, password)


def make_client(
    settings: BrokerSettings,
    client_id: str,
    *,
    protocol: int = mqtt.MQTTv311,
    clean: bool = True,
    manual_ack: bool = False,
    max_inflight: int = 20,
) -> tuple[mqtt.Client, BrokerAddress]:
    """A configured, not yet connected paho client and the address to connect it to."""
    address = parse_broker(settings)
    kwargs: dict[str, object] = {
        "callback_api_version": CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": protocol,
        "manual_ack": manual_ack,
    }
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = clean
    client = mqtt.Client(**kwargs)  # type: ignore[arg-type]
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    if address.username:
        client.username_pw_set(address.username, address.password or None)
    if address.tls:
        context = ssl.create_default_context(cafile=settings.ca or None)
        if settings.certfile:
            context.load_cert_chain(settings.certfile, settings.keyfile or None)
        client.tls_set_context(context)
    return client, address

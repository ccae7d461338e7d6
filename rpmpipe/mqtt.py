"""Connecting to the broker: URL parsing, TLS, credentials, and the paho client."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from rpmpipe.errors import ConfigError
from rpmpipe.settings import BrokerSettings

# Mosquitto's count of PUBLISH messages it dropped for full queues (max_queued_messages) since
# it started, published every sys_interval seconds.
BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"


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
            "mqtts:// or set broker.allow_insecure_password = true "
            "(RPMPIPE_BROKER_ALLOW_INSECURE_PASSWORD)"
        )
    if not tls:
        # A CA or client certificate with a plain URL means TLS was intended: say so rather
        # than silently connecting in clear text.
        for name in ("ca", "certfile", "keyfile"):
            if getattr(settings, name):
                raise ConfigError(
                    f"setting 'broker.{name}' is set but broker.url is not mqtts:// "
                    f"({parts.scheme}://{parts.hostname}:{port}); use mqtts:// for TLS"
                )
    if settings.keyfile and not settings.certfile:
        raise ConfigError("setting 'broker.keyfile' needs broker.certfile (the client certificate)")
    return BrokerAddress(parts.hostname, port, tls, username, password)


def tls_context(settings: BrokerSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the broker's certificate and host name.

    ``broker.ca`` pins a private CA (the one ``rpmpipe broker-config`` writes); without it
    the system trust store is used. ``broker.certfile``/``keyfile`` add a client certificate.
    """
    try:
        context = ssl.create_default_context(cafile=settings.ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"setting 'broker.ca': cannot load {settings.ca!r}: {_reason(exc)}"
        ) from None
    # create_default_context already does this; stated so a later edit cannot loosen it quietly.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.certfile:
        try:
            context.load_cert_chain(settings.certfile, settings.keyfile or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"setting 'broker.certfile'/'broker.keyfile': cannot load {settings.certfile!r}: "
                f"{_reason(exc)}"
            ) from None
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def make_client(
    settings: BrokerSettings,
    client_id: str,
    *,
    protocol: int = mqtt.MQTTv311,
    clean: bool = True,
    manual_ack: bool = False,
    max_inflight: int = 20,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> tuple[mqtt.Client, BrokerAddress]:
    """A configured, not yet connected paho client (of ``client_class``, paho's or a
    subclass) and the address to connect it to."""
    address = parse_broker(settings)
    kwargs: dict[str, object] = {
        "callback_api_version": CallbackAPIVersion.VERSION2,
        "client_id": client_id,
        "protocol": protocol,
        "manual_ack": manual_ack,
    }
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = clean
    client = client_class(**kwargs)  # type: ignore[arg-type]
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    if address.username:
        client.username_pw_set(address.username, address.password or None)
    if address.tls:
        client.tls_set_context(tls_context(settings))
    return client, address

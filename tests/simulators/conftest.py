"""Fleets shared by the simulator tests, and a plain paho subscriber to see what arrives."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rpmpipe.mqtt import parse_broker
from rpmpipe.settings import Settings
from rpmpipe.simulators import Fleet, build_fleet

START = date(2026, 11, 2)  # a Monday


@pytest.fixture(scope="session")
def small_fleet() -> Fleet:
    """Five patients (one of each adherence profile) over ten days."""
    return build_fleet(5, START, 10, seed=11)


@pytest.fixture(scope="session")
def month_fleet() -> Fleet:
    """Ten patients over 30 days: long enough for fading, drop-out and offline runs to show."""
    return build_fleet(10, START, 30, seed=5)


@dataclass
class Received:
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)
    expected: int = 0

    def wait(self, timeout: float) -> list[tuple[str, bytes]]:
        self.enough.wait(timeout)
        with self.lock:
            return list(self.messages)


@contextmanager
def subscriber(settings: Settings, expected: int) -> Iterator[Received]:
    """A bare paho client (with a username, as the embedded broker requires) on <root>/#."""
    address = parse_broker(settings.broker)
    protocol = mqtt.MQTTv5 if settings.broker.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"sim-test-sub-{uuid.uuid4().hex[:8]}",
        protocol=protocol,
    )
    client.username_pw_set("sim-test")
    received = Received(expected=expected)
    subscribed = threading.Event()

    def on_connect(c: mqtt.Client, _u: object, _f: object, _rc: object, _p: object) -> None:
        c.subscribe(f"{settings.broker.topic_root}/#", qos=1)

    def on_subscribe(*_args: object) -> None:
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with received.lock:
            received.messages.append((msg.topic, bytes(msg.payload)))
            if len(received.messages) >= received.expected:
                received.enough.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        assert subscribed.wait(15), "subscriber did not get its SUBACK"
        yield received
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def subscribe() -> object:
    """``with subscribe(settings, expected) as received: ...``"""
    return subscriber

"""Test harness: a real Mosquitto started from the configuration `rpmpipe broker-config` writes.

Each broker is a ``/usr/sbin/mosquitto -c DIR/mosquitto.conf`` subprocess on a free loopback
port. Without the binary the tests are skipped, or fail under ``RPMPIPE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from required import unavailable

from rpmpipe.mqtt import make_client
from rpmpipe.security.broker_config import credentials_by_user
from rpmpipe.settings import BrokerSettings

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEVICES = ("BP-000001", "BP-000002", "SC-000003")
# Hang guard for network waits; never a performance assertion.
WAIT = 15.0


def need_mosquitto() -> str:
    if Path(MOSQUITTO).is_file():
        return MOSQUITTO
    unavailable(f"{MOSQUITTO} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_as_for_tests() -> str:
    # As root Mosquitto drops to 'mosquitto' unless told otherwise; the tmp dir is root's.
    return "root" if os.geteuid() == 0 else ""


@dataclass
class SecuredBroker:
    directory: Path
    port: int
    topic_root: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def password(self, username: str) -> str:
        return credentials_by_user(self.directory)[username].password

    def settings(
        self, username: str = "", password: str | None = None, **extra: Any
    ) -> BrokerSettings:
        if password is None:
            password = self.password(username) if username else ""
        values: dict[str, Any] = {
            "url": self.url,
            "username": username,
            "password": password,
            "ca": str(self.directory / "ca.crt"),
            "topic_root": self.topic_root,
        }
        values.update(extra)
        return BrokerSettings(**values)

    def start(self) -> None:
        self.log_path = self.directory.parent / f"mosquitto-{self.port}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [need_mosquitto(), "-c", str(self.directory / "mosquitto.conf"), "-v"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log_path.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not open its port")

    def reload(self) -> None:
        """SIGHUP: Mosquitto rereads the password file and ACL (the rotation procedure).

        Mosquitto is single-threaded: it logs "Reloading config" and rereads the files in
        the same turn of its loop, so packets it reads after the line appears see new files.
        """
        assert self.process is not None
        before = self.log_path.read_bytes().count(b"Reloading config")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while self.log_path.read_bytes().count(b"Reloading config") == before:
            assert time.monotonic() < deadline, "mosquitto did not log the reload"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Session:
    """A connected (or refused) paho client with what it saw, for assertions."""

    client: mqtt.Client
    connack: Any = None
    settled: threading.Event = field(default_factory=threading.Event)  # CONNACK or close
    closed: bool = False
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    got_message: threading.Condition = field(default_factory=threading.Condition)

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def wait_for_messages(self, count: int) -> list[tuple[str, bytes]]:
        with self.got_message:
            assert self.got_message.wait_for(lambda: len(self.messages) >= count, WAIT), (
                f"expected {count} messages, got {self.messages}"
            )
            return list(self.messages)

    def publish(self, topic: str, payload: bytes) -> Any:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        acks: dict[int, Any] = {}
        done = threading.Event()

        def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            acks[mid] = reason
            done.set()

        self.client.on_publish = on_publish
        info = self.client.publish(topic, payload, qos=1)
        assert done.wait(WAIT), "no PUBACK"
        return acks[info.mid]

    def subscribe(self, topic: str) -> Any:
        """Subscribe at QoS 1 and return the SUBACK reason code."""
        result: list[Any] = []
        done = threading.Event()

        def on_subscribe(_c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
            result.extend(codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos=1)
        assert done.wait(WAIT), "no SUBACK"
        return result[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def open_session(settings: BrokerSettings, client_id: str | None = None) -> Session:
    """Connect with MQTT 5 (its CONNACK/PUBACK/SUBACK reason codes show what was refused)."""
    client, address = make_client(
        settings, client_id or f"sec-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    session = Session(client)

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        session.connack = reason
        session.settled.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        session.closed = True
        session.settled.set()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with session.got_message:
            session.messages.append((msg.topic, bytes(msg.payload)))
            session.got_message.notify_all()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.connect(address.host, address.port, keepalive=30)
    client.loop_start()
    assert session.settled.wait(WAIT), "no CONNACK and no close"
    return session

"""The generated Mosquitto configuration against a real Mosquitto: nothing is lost at the broker,
nobody else gets in. Client-id takeover, kill -9 of the broker, size limit, queue overflow,
who owns the secrets, TLS suites and retained messages.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mosquitto_harness import (
    DEVICES,
    WAIT,
    SecuredBroker,
    free_port,
    need_mosquitto,
    open_session,
    run_as_for_tests,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from rpmpipe.mqtt import make_client
from rpmpipe.security.broker_config import write_broker_config
from rpmpipe.security.mosquitto import AUTOSAVE_SECONDS
from rpmpipe.settings import BrokerSettings

pytestmark = pytest.mark.services


def make_broker(directory: Path, **options: Any) -> SecuredBroker:
    need_mosquitto()
    topic_root = f"rpmtest/{uuid.uuid4().hex[:10]}/rpm/v1"
    broker = SecuredBroker(directory, free_port(), topic_root)
    run_as = options.pop("run_as", run_as_for_tests())
    write_broker_config(
        directory, DEVICES, topic_root, broker.port, datetime.now(UTC), run_as=run_as, **options
    )
    return broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    b = make_broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Queue:
    """Ingest's persistent session (MQTT 5, no clean start): what the broker queues for it."""

    def __init__(self, broker: SecuredBroker, client_id: str = "rpmpipe-ingest") -> None:
        self.broker = broker
        self.client_id = client_id
        self.received: list[bytes] = []
        self._lock = threading.Lock()

    def _client(self) -> mqtt.Client:
        client, _ = make_client(
            self.broker.settings("ingest"), self.client_id, protocol=mqtt.MQTTv5
        )

        def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.received.append(bytes(msg.payload))

        client.on_message = on_message
        return client

    def connect(self, subscribe: bool) -> mqtt.Client:
        client = self._client()
        connected = threading.Event()
        subscribed = threading.Event()
        client.on_connect = lambda *_a: connected.set()
        client.on_subscribe = lambda *_a: subscribed.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", self.broker.port, 30, clean_start=False, properties=props)
        client.loop_start()
        assert connected.wait(WAIT), "ingest's session was not accepted"
        if subscribe:
            client.subscribe(f"{self.broker.topic_root}/devices/+/readings", qos=1)
            assert subscribed.wait(WAIT)
        return client

    def drain(self, expected: int, settle: float = 2.0) -> int:
        """Reconnect and count what the broker delivers (waits ``settle`` after the last)."""
        client = self.connect(subscribe=False)
        deadline = time.monotonic() + WAIT * 2
        last, seen = time.monotonic(), -1
        while time.monotonic() < deadline:
            with self._lock:
                n = len(self.received)
            if n != seen:
                seen, last = n, time.monotonic()
            if n >= expected and time.monotonic() - last > 0.3:
                break
            if time.monotonic() - last > settle:
                break
            time.sleep(0.05)
        client.disconnect()
        client.loop_stop()
        return len(self.received)


def away(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def publish_acked(broker: SecuredBroker, device: str, n: int, size: int = 60) -> int:
    """Publish ``n`` QoS 1 readings as ``device``; returns how many the broker PUBACKed."""
    client, _ = make_client(
        broker.settings(device), f"pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(100)
    acked: list[int] = []

    def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            acked.append(mid)

    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.on_publish = on_publish
    client.connect("127.0.0.1", broker.port, 30)
    client.loop_start()
    assert connected.wait(WAIT)
    topic = f"{broker.topic_root}/devices/{device}/readings"
    infos = [client.publish(topic, f"{i:06d}".encode().ljust(size, b"."), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(WAIT)
    time.sleep(0.2)
    away(client)
    return len(acked)


# --- 6. client-id takeover -------------------------------------------------------------------


def test_a_device_connecting_with_ingests_client_id_cannot_drop_its_queued_readings(
    broker: SecuredBroker,
) -> None:
    queue = Queue(broker)
    away(queue.connect(subscribe=True))
    published = publish_acked(broker, DEVICES[0], 200)
    assert published == 200
    # A device's credential, ingest's client id, clean start: on a broker that trusts client
    # ids this replaces ingest's session and drops its queue.
    thief, _ = make_client(broker.settings(DEVICES[1]), queue.client_id, protocol=mqtt.MQTTv5)
    done = threading.Event()
    thief.on_connect = lambda *_a: done.set()
    thief.connect("127.0.0.1", broker.port, 30, clean_start=True)
    thief.loop_start()
    assert done.wait(WAIT)
    time.sleep(0.5)
    away(thief)
    stored = queue.drain(200)
    assert stored == 200, f"published 200, delivered {stored}, lost {200 - stored}"


def test_each_ingest_worker_has_its_own_user_and_so_its_own_session(tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker", ingest_workers=2)
    broker.start()
    try:
        # The same --client-id setting on both workers: the broker names them by user.
        sessions = []
        for user in ("ingest", "ingest-2"):
            sessions.append(open_session(broker.settings(user), client_id="rpmpipe-ingest"))
        time.sleep(1.0)
        assert all(s.accepted and not s.closed for s in sessions)
        for s in sessions:
            s.close()
    finally:
        broker.stop()


# --- 7. kill -9 of the broker ------------------------------------------------------------------


def test_acknowledged_readings_survive_kill_9_of_the_broker(tmp_path: Path) -> None:
    broker = make_broker(tmp_path / "broker")
    broker.start()
    try:
        queue = Queue(broker)
        away(queue.connect(subscribe=True))
        published = publish_acked(broker, DEVICES[0], 3000)
        assert published == 3000
        time.sleep(AUTOSAVE_SECONDS + 1.5)  # the stated durability window, and a margin
        assert broker.process is not None
        broker.process.kill()  # SIGKILL: no shutdown save
        broker.process.wait(WAIT)
        broker.start()
        stored = queue.drain(3000)
    finally:
        broker.stop()
    assert stored == 3000, f"published 3000, delivered {stored}, lost {3000 - stored}"


# --- 3. size limits ----------------------------------------------------------------------------


def test_the_broker_refuses_a_payload_over_the_size_limit(broker: SecuredBroker) -> None:
    queue = Queue(broker)
    away(queue.connect(subscribe=True))
    device = open_session(broker.settings(DEVICES[0]))
    topic = f"{broker.topic_root}/devices/{DEVICES[0]}/readings"
    ok = device.publish(topic, b"x" * 1000)
    assert not ok.is_failure
    device.client.publish(topic, b"x" * (20 * 1024 * 1024), qos=1)
    time.sleep(2)
    device.close()
    delivered = queue.drain(2)
    assert delivered == 1, "the 20 MB payload reached ingest's queue"


# --- 8. queue overflow is visible ------------------------------------------------------------


def test_a_full_broker_queue_shows_in_ingests_counters(tmp_path: Path) -> None:
    from rpmpipe.ingest.stats import prometheus_text
    from rpmpipe.ingest.subscriber import IngestService, run_until
    from rpmpipe.registry.db import open_registry
    from rpmpipe.registry.imports import import_rows
    from rpmpipe.settings import load_settings

    broker = make_broker(tmp_path / "broker", readings_per_device_day=1, min_queued_messages=50)
    broker.start()
    try:
        settings = load_settings(
            None,
            env={},
            overrides={
                "data_dir": str(tmp_path / "data"),
                "broker.url": broker.url,
                "broker.username": "ingest",
                "broker.password": broker.password("ingest"),
                "broker.ca": str(broker.directory / "ca.crt"),
                "broker.topic_root": broker.topic_root,
            },
        )
        engine = open_registry(settings.effective_database_url)
        import_rows(
            engine,
            "devices",
            [{"device_id": d, "kind": "bp_cuff", "model": "t"} for d in DEVICES],
            source="test",
        )
        run_until(IngestService(settings.ingest, engine), lambda s: s.subscribed > 0, 15)
        assert publish_acked(broker, DEVICES[0], 80) == 80  # 30 more than the queue holds
        stats = run_until(
            IngestService(settings.ingest, engine),
            lambda s: (s.broker_dropped or 0) > 0 and s.processed >= 50,
            30,
        )
        engine.dispose()
    finally:
        broker.stop()
    assert stats.processed == 50
    assert stats.broker_dropped == 30
    assert "rpmpipe_ingest_broker_dropped_messages 30" in prometheus_text(stats)


# --- 12. the broker's user owns no secret ------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership can only be handed over by root")
def test_the_broker_user_reads_its_files_but_can_replace_no_secret() -> None:
    need_mosquitto()
    parent = Path(tempfile.mkdtemp(prefix="rpmpipe-broker-"))
    parent.chmod(0o711)  # lets the broker's user reach its directory, nothing more
    try:
        broker = make_broker(parent / "broker", run_as="mosquitto")
        d = broker.directory
        entries = {p.name: p.stat() for p in [d, *d.iterdir()]}
        assert entries["broker"].st_uid == 0
        for secret in ("credentials.csv", "ca.key"):
            assert entries[secret].st_uid == 0 and stat.S_IMODE(entries[secret].st_mode) == 0o600
        for name in ("mosquitto.conf", "passwd", "acl", "ca.crt", "server.crt", "server.key"):
            assert entries[name].st_uid == 0, name
            assert stat.S_IMODE(entries[name].st_mode) == 0o640, name
        # What a compromised broker process could try, as its own user:
        attempt = (
            "import os, sys\n"
            "d = sys.argv[1]\n"
            "for action in (lambda: open(d + '/credentials.csv', 'a'),\n"
            "               lambda: open(d + '/ca.crt', 'a'),\n"
            "               lambda: open(d + '/new.csv', 'w'),\n"
            "               lambda: os.rename(d + '/ca.crt', d + '/old.crt')):\n"
            "    try:\n"
            "        action()\n"
            "    except PermissionError:\n"
            "        continue\n"
            "    print('allowed')\n"
            "open(d + '/persistence/probe', 'w').close()\n"
            "os.unlink(d + '/persistence/probe')\n"
            "print(open(d + '/passwd').read().count(':'))\n"
        )
        result = subprocess.run(
            ["/usr/bin/python3", "-c", attempt, str(d)],  # not a venv under /root
            user="mosquitto",
            group="mosquitto",
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "allowed" not in result.stdout
        # And the broker runs from it, dropping to that user.
        broker.start()
        try:
            session = open_session(broker.settings("ingest"))
            assert session.accepted
            session.close()
        finally:
            broker.stop()
    finally:
        subprocess.run(["rm", "-rf", str(parent)], check=False)


# --- 13. TLS suites, retained messages ---------------------------------------------------------


def tls12_handshake(port: int, ca: Path, ciphers: str) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return True
    except ssl.SSLError:
        return False


def test_tls_1_2_offers_only_aead_suites(broker: SecuredBroker) -> None:
    ca = broker.directory / "ca.crt"
    assert tls12_handshake(broker.port, ca, "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not tls12_handshake(broker.port, ca, "ECDHE-ECDSA-AES128-SHA")  # CBC, SHA-1 MAC
    assert not tls12_handshake(broker.port, ca, "ECDHE-ECDSA-AES256-SHA384")  # CBC


def test_a_retained_message_from_a_device_is_not_kept(broker: SecuredBroker) -> None:
    topic = f"{broker.topic_root}/devices/{DEVICES[0]}/readings"
    device = open_session(broker.settings(DEVICES[0]))
    device.client.publish(topic, b'{"retained": true}', qos=1, retain=True)
    time.sleep(1.0)
    device.close()
    later = open_session(broker.settings("ingest"))
    later.subscribe(f"{broker.topic_root}/devices/+/readings")
    time.sleep(1.5)
    later.close()
    assert later.messages == [], "a device's retained message was kept and delivered"


def test_the_size_limit_is_a_setting_written_into_the_config(tmp_path: Path) -> None:
    assert BrokerSettings().message_size_limit == 262_144
    broker = make_broker(tmp_path / "broker", message_size_limit=100_000)
    text = (broker.directory / "mosquitto.conf").read_text()
    assert "message_size_limit 100000" in text
    assert f"autosave_interval {AUTOSAVE_SECONDS}" in text
    assert "use_username_as_clientid true" in text

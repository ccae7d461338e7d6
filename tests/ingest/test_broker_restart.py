"""A Mosquitto restart mid-stream: ingest reconnects with backoff and nothing is lost."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import (
    bp_payload,
    publish,
    reading_topic,
    register_devices,
    stored_readings,
    wait_for,
)
from required import unavailable

from rpmpipe.embedded_broker import free_port
from rpmpipe.ingest.subscriber import IngestService
from rpmpipe.registry.db import open_registry
from rpmpipe.settings import Settings

pytestmark = pytest.mark.services

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """A private Mosquitto with on-disk persistence, restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        store = workdir / "store"
        store.mkdir()
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {store}/\nlog_dest none\n"
            # Started as root, Mosquitto drops to user "mosquitto", which cannot write here.
            f"user {getpass.getuser()}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)])
        wait_for(self._listening, 10, "mosquitto to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: Mosquitto saves its persistence file
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if not Path(MOSQUITTO).exists():
        unavailable("mosquitto is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


def test_broker_restart_mid_stream_loses_nothing_and_stores_once(
    mosquitto: Mosquitto, settings: Settings
) -> None:
    s = settings.replace(
        broker=settings.broker.__class__(
            **{
                **settings.broker.__dict__,
                "url": f"mqtt://127.0.0.1:{mosquitto.port}",
                "batch_size": 50,
            }
        )
    )
    engine = open_registry(s.effective_database_url)
    register_devices(engine, ["BP-1"])
    service = IngestService(s.ingest, engine)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: service.stats.subscribed > 0, 15, "ingest to subscribe")
        topic = reading_topic(s, "BP-1")
        publish(s, [(topic, bp_payload("BP-1", i)) for i in range(300)])
        wait_for(lambda: service.stats.processed >= 100, 30, "some progress")
        mosquitto.stop()
        time.sleep(1.0)
        mosquitto.start()
        # Published while ingest is still backing off: queued in its persistent session.
        publish(s, [(topic, bp_payload("BP-1", i)) for i in range(300, 450)])
        wait_for(lambda: service.stats.connects >= 2, 30, "ingest to reconnect")
        publish(s, [(topic, bp_payload("BP-1", i)) for i in range(450, 600)])
        wait_for(lambda: stored_readings(s).num_rows >= 600, 60, "every reading after the restart")
        assert service.stats.connects >= 2, "ingest should have reconnected"
    finally:
        stop.set()
        runner.join(30)
        engine.dispose()
    keys = stored_readings(s).column("dedup_key").to_pylist()
    assert len(keys) == len(set(keys)) == 600

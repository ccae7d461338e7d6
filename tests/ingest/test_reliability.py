"""Nothing stalls ingest: poison messages, a database outage, keepalive during retries,
errors that say what, leftover temp files, a session taken over. Real Mosquitto and PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from ingest_helpers import (
    bp_payload,
    drop_session,
    publish,
    reading_topic,
    register_devices,
    register_patient,
    stored_readings,
    wait_for,
)
from paho.mqtt.enums import CallbackAPIVersion
from service_settings import make_settings
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url

from rpmpipe.embedded_broker import free_port
from rpmpipe.errors import ServiceUnavailable
from rpmpipe.ingest.quarantine import read_quarantine
from rpmpipe.ingest.sink import store_lock
from rpmpipe.ingest.subscriber import MAX_ATTEMPTS, IngestService, run_until
from rpmpipe.mqtt import parse_broker
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import CareActivity
from rpmpipe.settings import Settings

pytestmark = pytest.mark.services

TEST_BROKER_URL = os.environ.get("RPMPIPE_TEST_BROKER_URL", "")


DEVICES = [f"BP-{i:03d}" for i in range(10)]


@dataclass
class Live:
    settings: Settings
    engine: Engine
    database_url: str


def live_stack(tmp_path: Path, database_url: str, **extra: object) -> Live:
    settings = make_settings(tmp_path / "data", TEST_BROKER_URL, database_url, "5", **extra)
    engine = open_registry(database_url)
    register_devices(engine, DEVICES)
    register_patient(engine)
    return Live(settings, engine, database_url)


@pytest.fixture
def live(tmp_path: Path, pg_schema_url: str) -> Iterator[Live]:
    """Mosquitto on 127.0.0.1:1883 and a fresh PostgreSQL schema."""
    stack = live_stack(tmp_path, pg_schema_url)
    yield stack
    stack.engine.dispose()
    drop_session(stack.settings, stack.settings.broker.client_id, "5")


@contextmanager
def running(service: IngestService) -> Iterator[IngestService]:
    """``service`` consuming in a thread (subscribed on entry), stopped on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: service.stats.subscribed > 0, 15, "ingest to subscribe")
        yield service
    finally:
        stop.set()
        thread.join(30)


def readings(settings: Settings, n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [
        (reading_topic(settings, DEVICES[i % 10]), bp_payload(DEVICES[i % 10], i))
        for i in range(start, start + n)
    ]


def activity(settings: Settings, activity_id: str, started_at: str) -> tuple[str, bytes]:
    doc = {
        "activity_id": activity_id,
        "patient_id": "P1",
        "staff_id": "RN-1",
        "started_at": started_at,
        "minutes": 12,
        "kind": "phone_call",
        "interactive": True,
    }
    return f"{settings.broker.topic_root}/activities", orjson.dumps(doc)


def activity_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(CareActivity.activity_id)).scalars())


# --- 1. poison messages --------------------------------------------------------------------


def test_a_poison_activity_is_quarantined_and_the_1000_readings_around_it_are_stored(
    live: Live,
) -> None:
    s = live.settings
    poison = activity(s, "A-POISON", "9999-12-31T23:59:59-14:00")
    with running(IngestService(s.ingest, live.engine)) as service:
        publish(s, [*readings(s, 500), poison, *readings(s, 500, start=500)])
        wait_for(lambda: service.stats.processed >= 1001, 60, "every message handled")
    assert service.stats.processed == 1001
    assert len(stored_readings(s)) == 1000
    q = read_quarantine(s.quarantine_dir).to_pylist()
    assert len(q) == 1 and q[0]["topic"] == poison[0]
    # The registry refuses the date itself (a terminal error) or validation names it.
    assert q[0]["reason_code"] in {"internal_error", "bad_activity", "bad_time"}
    if q[0]["reason_code"] == "internal_error":
        assert q[0]["reason"].endswith("while handling the message") or "Error" in q[0]["reason"]
    # It was acknowledged: a restart gets nothing back.
    again = run_until(IngestService(s.ingest, live.engine), lambda st: False, 3)
    assert again.received == 0


def test_a_message_failing_the_same_way_n_times_while_the_database_answers_is_quarantined(
    live: Live,
) -> None:
    # A trigger makes PostgreSQL cancel the insert of this one activity (SQLSTATE 57014, an
    # OperationalError like an outage) while every other statement succeeds.
    with live.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
                "IF NEW.activity_id = 'A-POISON' THEN "
                "RAISE EXCEPTION 'cancelled' USING ERRCODE = '57014'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON care_activities "
                "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            )
        )
    s = live.settings
    good = activity(s, "A-GOOD", "2026-11-03T10:00:00-06:00")
    poison = activity(s, "A-POISON", "2026-11-03T11:00:00-06:00")
    with running(IngestService(s.ingest, live.engine)) as service:
        publish(s, [*readings(s, 100), poison, good, *readings(s, 100, start=100)])
        wait_for(lambda: service.stats.processed >= 202, 90, "every message handled")
    assert service.stats.processed == 202
    assert len(stored_readings(s)) == 200
    assert activity_ids(live.engine) == {"A-GOOD"}
    q = read_quarantine(s.quarantine_dir).to_pylist()
    assert [r["reason_code"] for r in q] == ["internal_error"]
    assert f"OperationalError {MAX_ATTEMPTS} times" in q[0]["reason"]
    again = run_until(IngestService(s.ingest, live.engine), lambda st: False, 3)
    assert again.received == 0


# --- 2. a database outage does not stop readings -------------------------------------------


class CuttableProxy:
    """A TCP forwarder to PostgreSQL that the test can cut (refusing new connections and
    dropping open ones) and restore: a real database outage without stopping the server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        assert self._listener is not None
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()


def test_readings_are_stored_and_acknowledged_while_the_database_is_down(
    tmp_path: Path, pg_schema_url: str
) -> None:
    url = make_url(pg_schema_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    stack = live_stack(tmp_path, proxied)
    s = stack.settings
    service = IngestService(s.ingest, stack.engine)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: service.stats.subscribed > 0, 15, "ingest to subscribe")
        proxy.cut()
        act = activity(s, "A-1", "2026-11-03T10:00:00-06:00")
        publish(s, [*readings(s, 150), act, *readings(s, 150, start=150)])
        # Readings do not wait for the database: all 300 stored and acknowledged meanwhile.
        wait_for(lambda: service.stats.stored >= 300, 30, "the readings during the outage")
        wait_for(lambda: service.stats.processed >= 300, 10, "their acknowledgement")
        assert service.stats.processed == 300  # the activity waits, unacknowledged
        assert service.stats.activities == 0
        proxy.restore()
        wait_for(lambda: service.stats.activities == 1, 60, "the activity after the outage")
        wait_for(lambda: service.stats.processed == 301, 10, "its acknowledgement")
    finally:
        stop.set()
        thread.join(30)
        stack.engine.dispose()
        drop_session(s, s.broker.client_id, "5")
    assert len(stored_readings(s)) == 300
    check = open_registry(pg_schema_url)
    assert activity_ids(check) == {"A-1"}
    check.dispose()


# --- 4 and 5. keepalive while retrying, errors that say what ----------------------------------


def test_keepalive_is_serviced_while_a_failed_write_is_retried_and_the_log_names_errno_and_path(
    tmp_path: Path, pg_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    stack = live_stack(tmp_path, pg_schema_url, **{"broker.keepalive_seconds": 2})
    s = stack.settings
    service = IngestService(s.ingest, stack.engine)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    with caplog.at_level(logging.ERROR, logger="rpmpipe.ingest"):
        thread.start()
        try:
            wait_for(lambda: service.stats.subscribed > 0, 15, "ingest to subscribe")
            # The readings dir becomes a file: every write fails with ENOTDIR.
            readings_dir = s.readings_dir
            readings_dir.rmdir()
            readings_dir.write_bytes(b"")
            publish(s, readings(s, 20))
            wait_for(lambda: service.stats.write_errors >= 1, 15, "a failed write")
            # Mosquitto drops a client silent for 1.5 keepalives (3 s): wait well past that.
            time.sleep(8)
            readings_dir.unlink()
            wait_for(lambda: service.stats.processed >= 20, 60, "the write after the fix")
            assert service.stats.connects == 1, "the broker dropped ingest during the retries"
        finally:
            stop.set()
            thread.join(30)
            stack.engine.dispose()
            drop_session(s, s.broker.client_id, "5")
    assert len(stored_readings(s)) == 20
    failed = [r for r in caplog.records if r.getMessage() == "batch_write_failed"]
    fields = failed[0].fields  # type: ignore[attr-defined]
    assert fields["errno_name"] == "ENOTDIR"
    assert fields["path"].startswith(str(s.readings_dir))
    assert "retry_at" in fields and fields["retry_in_seconds"] > 0


def test_messages_keep_coming_in_while_a_batch_waits_for_the_store(
    tmp_path: Path, pg_schema_url: str
) -> None:
    stack = live_stack(tmp_path, pg_schema_url, **{"broker.batch_size": 10})
    s = stack.settings
    service = IngestService(s.ingest, stack.engine)
    try:
        with running(service):
            # Another writer holds the store: the first batch of 10 waits for it.
            with store_lock(s.readings_dir):
                publish(s, readings(s, 30))
                # The next batch still comes in (the in-flight window is two batches).
                wait_for(lambda: service.stats.received >= 20, 30, "the second batch")
                assert service.stats.processed == 0  # nothing acknowledged before its write
                assert len(stored_readings(s)) == 0
            wait_for(lambda: service.stats.processed >= 30, 30, "every message written")
        assert service.stats.processed == 30
        assert len(stored_readings(s)) == 30
        # Each was acknowledged after its write: the session brings none back.
        again = run_until(IngestService(s.ingest, stack.engine), lambda st: False, 3)
        assert again.received == 0
    finally:
        stack.engine.dispose()
        drop_session(s, s.broker.client_id, "5")


def test_temp_files_left_by_a_killed_writer_are_removed_at_start_up(live: Live) -> None:
    s = live.settings
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    partition = s.readings_dir / "date=2026-11-03"
    partition.mkdir(parents=True)
    left = (
        partition / f".part-rpmpipe-ingest-{dead.pid}-18a2b3c4d5e6f708-000001.parquet.0a1b2c3d.tmp"
    )
    left.write_bytes(b"half a file")
    q_left = s.quarantine_dir
    q_left.mkdir(parents=True, exist_ok=True)
    q_tmp = q_left / f".part-x-{dead.pid}-18a2b3c4d5e6f708-000002.parquet.00ff00ff.tmp"
    q_tmp.write_bytes(b"")
    run_until(IngestService(s.ingest, live.engine), lambda st: st.subscribed > 0, 15)
    assert not left.exists() and not q_tmp.exists()


# --- issue 16: checks before subscribing, a session taken over ------------------------------


def test_a_session_taken_over_repeatedly_stops_ingest_naming_the_client_id(live: Live) -> None:
    s = live.settings
    service = IngestService(s.ingest, live.engine)
    address = parse_broker(s.broker)
    stop_thief = threading.Event()

    def thief() -> None:
        # Another process with ingest's client id: connects, holds a moment, again.
        while not stop_thief.is_set():
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=s.broker.client_id, protocol=mqtt.MQTTv5
            )
            c.username_pw_set("rpmpipe-test")
            c.connect(address.host, address.port)
            c.loop_start()
            stop_thief.wait(0.5)
            c.disconnect()
            c.loop_stop()
            stop_thief.wait(0.3)

    wait_subscribed = threading.Thread(target=thief, daemon=True)
    thread_started = False
    try:
        with pytest.raises(ServiceUnavailable) as caught:

            def start_thief_when_subscribed(st: object) -> bool:
                nonlocal thread_started
                if not thread_started and service.stats.subscribed > 0:
                    wait_subscribed.start()
                    thread_started = True
                return False

            run_until(service, start_thief_when_subscribed, 60)
    finally:
        stop_thief.set()
        if thread_started:
            wait_subscribed.join(10)
    assert s.broker.client_id in str(caught.value)
    assert "taken over" in str(caught.value)


def test_an_unwritable_data_dir_is_one_clear_error_before_subscribing(live: Live) -> None:
    s = live.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    (s.data_dir / "readings").write_bytes(b"")  # a file where the readings dir should be
    with pytest.raises(ServiceUnavailable) as caught:
        IngestService(s.ingest, live.engine).run(threading.Event())
    assert str(s.readings_dir) in str(caught.value)
    assert "not writable" in str(caught.value)


def test_an_unreachable_registry_is_one_clear_error_before_subscribing(tmp_path: Path) -> None:
    # Neither the registry nor the broker answers: the registry is checked first, so the
    # error names it (a broker error here would mean ingest tried to subscribe first). No
    # service is needed, so this runs without RPMPIPE_TEST_BROKER_URL too.
    free = free_port()
    url = f"postgresql+psycopg://postgres:pw-{uuid.uuid4().hex[:6]}@127.0.0.1:{free}/test"
    broker = f"mqtt://127.0.0.1:{free_port()}"
    settings = make_settings(tmp_path / "data", broker, url, "5")
    from rpmpipe.registry.db import make_engine

    engine = make_engine(url)
    with pytest.raises(ServiceUnavailable) as caught:
        IngestService(settings.ingest, engine).run(threading.Event())
    assert f"127.0.0.1:{free}/test" in str(caught.value)
    assert "pw-" not in str(caught.value)

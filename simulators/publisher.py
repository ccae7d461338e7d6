"""Publishing simulated traffic to the broker: QoS 1, every result checked, paced or flat out.

``publish(broker, messages, speed="max")`` sends each ``SimMessage`` with QoS 1 and only
returns when the broker has acknowledged every one (PUBACK, counted per message id in
``on_publish``). A publish the client refuses, a PUBACK with an MQTT 5 failure reason, or no
acknowledgement progress for ``ack_timeout`` seconds raises ``TransientError``.

Pacing: ``speed="max"`` sends as fast as the broker acknowledges; ``"realtime"`` or a factor
(``"60"`` = one simulated minute per second) replays the simulated send times. ``rate``
caps messages per second; when it asks for more than one connection gives
(``PER_CONNECTION_RATE``), the messages are spread over several connections. A topic always
goes through the same connection, so per-device order is kept.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from rpmpipe.errors import TransientError
from rpmpipe.files import private_dir, write_private
from rpmpipe.logs import get_logger
from rpmpipe.mqtt import make_client, parse_broker
from rpmpipe.settings import BrokerSettings
from rpmpipe.simulators.faults import FaultManifest
from rpmpipe.simulators.traffic import SimMessage

log = get_logger(__name__)

# Messages per second one paho connection sustains with QoS 1 on loopback, with margin
# (measured: about 10 000/s to Mosquitto 2.0, 5 000/s to the embedded amqtt broker).
PER_CONNECTION_RATE = 4000.0
MAX_CONNECTIONS = 16
# Unacknowledged messages per connection before the sender waits (bounded memory, real rate).
WINDOW = 1000
SIMULATOR_USERNAME = "simulator"


@dataclass(frozen=True)
class PublishStats:
    messages: int = 0
    acked: int = 0
    readings: int = 0
    activities: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # reading | batch | activity
    by_type: dict[str, int] = field(default_factory=dict)  # blood_pressure | body_weight | activity
    by_format: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    elapsed_seconds: float = 0.0

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


def parse_speed(speed: str | float) -> float | None:
    """``max`` → None (no pacing), ``realtime`` → 1.0, a positive number → that factor."""
    if isinstance(speed, int | float):
        factor = float(speed)
    elif speed == "max":
        return None
    elif speed == "realtime":
        return 1.0
    else:
        try:
            factor = float(speed)
        except ValueError:
            raise ValueError(
                f"speed must be max, realtime or a positive number, got {speed!r}"
            ) from None
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"speed must be max, realtime or a positive number, got {speed!r}")
    return factor


class _Connection:
    """One paho client with its own accounting of unacknowledged message ids."""

    def __init__(self, broker: BrokerSettings, client_id: str, protocol: int) -> None:
        self.client, self.address = make_client(
            broker, client_id, protocol=protocol, clean=True, max_inflight=100
        )
        self.client_id = client_id
        self.cond = threading.Condition()
        self.pending: set[int] = set()
        self.early: set[int] = set()  # PUBACKs that beat the publish() return
        self.acked = 0
        self.failures: list[str] = []
        self.connected = threading.Event()
        self.refused: str | None = None
        self.closing = False
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 10)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            self.refused = str(reason)
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if not self.closing:
            log.warning("simulator_disconnected", client_id=self.client_id, reason=str(reason))

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self.cond:
            if getattr(reason, "is_failure", False):
                self.failures.append(str(reason))
            if mid in self.pending:
                self.pending.discard(mid)
                self.acked += 1
            else:
                self.early.add(mid)
            self.cond.notify_all()

    def open(self, timeout: float) -> None:
        where = f"{self.address.host}:{self.address.port}"
        try:
            self.client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise TransientError(f"broker {where} unreachable: {exc}") from None
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.close()
            raise TransientError(f"broker {where} did not answer CONNECT within {timeout:.0f}s")
        if self.refused:
            self.close()
            raise TransientError(f"broker {where} refused the connection: {self.refused}")

    def send(self, message: SimMessage, ack_timeout: float) -> None:
        self.wait_below(WINDOW, ack_timeout)
        info = self.client.publish(message.topic, message.payload, qos=message.qos)
        # NO_CONN: paho keeps the QoS 1 message and sends it after the automatic reconnect.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise TransientError(f"publish to {message.topic} failed: {mqtt.error_string(info.rc)}")
        with self.cond:
            if info.mid in self.early:
                self.early.discard(info.mid)
                self.acked += 1
            else:
                self.pending.add(info.mid)

    def wait_below(self, limit: int, ack_timeout: float) -> None:
        """Wait until fewer than ``limit`` messages are unacknowledged (progress-based timeout)."""
        with self.cond:
            while len(self.pending) >= max(limit, 1) or self.failures:
                if self.failures:
                    raise TransientError(
                        f"broker rejected {len(self.failures)} publish(es): {self.failures[0]}"
                    )
                before = self.acked
                self.cond.wait(ack_timeout)
                if self.acked == before and len(self.pending) >= max(limit, 1):
                    raise TransientError(
                        f"no PUBACK for {ack_timeout:.0f}s; {len(self.pending)} message(s) "
                        "unacknowledged"
                    )

    def drain(self, ack_timeout: float) -> None:
        with self.cond:
            while self.pending:
                before = self.acked
                self.cond.wait(ack_timeout)
                if self.acked == before and self.pending:
                    raise TransientError(
                        f"no PUBACK for {ack_timeout:.0f}s; {len(self.pending)} message(s) "
                        "unacknowledged"
                    )
            if self.failures:
                raise TransientError(
                    f"broker rejected {len(self.failures)} publish(es): {self.failures[0]}"
                )

    def close(self) -> None:
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()


class _Tally:
    def __init__(self) -> None:
        self.messages = 0
        self.readings = 0
        self.activities = 0
        self.by_kind: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()
        self.by_format: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    def add(self, m: SimMessage) -> None:
        self.messages += 1
        self.by_kind[m.kind] += 1
        self.by_format[m.fmt] += 1
        if m.kind == "activity":
            self.activities += 1
            self.by_type["activity"] += 1
        else:
            self.readings += len(m.reading_ids)
            self.by_type.update(m.reading_types)
        if m.fault:
            self.faults[m.fault] += 1

    def snapshot(self, acked: int, connections: int, elapsed: float) -> PublishStats:
        return PublishStats(
            self.messages,
            acked,
            self.readings,
            self.activities,
            dict(self.by_kind),
            dict(self.by_type),
            dict(self.by_format),
            dict(self.faults),
            connections,
            elapsed,
        )


def connection_count(rate: float | None, connections: int | None = None) -> int:
    """How many connections to open: as asked, or enough for ``rate`` messages per second."""
    if connections is not None:
        return max(1, min(connections, MAX_CONNECTIONS))
    if rate is None:
        return 1
    return max(1, min(math.ceil(rate / PER_CONNECTION_RATE), MAX_CONNECTIONS))


def publish(
    broker: BrokerSettings,
    messages: Iterable[SimMessage],
    *,
    speed: str | float = "max",
    rate: float | None = None,
    connections: int | None = None,
    progress: Callable[[PublishStats], object] | None = None,
    progress_seconds: float = 2.0,
    ack_timeout: float = 30.0,
) -> PublishStats:
    """Publish ``messages`` in order with QoS 1; return when every one is acknowledged."""
    factor = parse_speed(speed)
    if rate is not None and (not math.isfinite(rate) or rate <= 0):
        raise ValueError(f"rate must be a positive number of messages per second, got {rate!r}")
    if not parse_broker(broker).username:
        # Brokers such as the embedded one keep sessions only for named clients.
        broker = replace(broker, username=SIMULATOR_USERNAME)
    protocol = mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311
    run = uuid.uuid4().hex[:8]
    count = connection_count(rate, connections)
    conns: list[_Connection] = []
    tally = _Tally()
    started = time.monotonic()

    def acked() -> int:
        return sum(c.acked for c in conns)

    try:
        for k in range(count):
            conn = _Connection(broker, f"rpmpipe-sim-{run}-{k}", protocol)
            conns.append(conn)
            conn.open(timeout=15.0)
        log.info("simulator_publishing", connections=count, speed=str(speed), rate=rate)
        sim_start = None
        last_progress = started
        for n, m in enumerate(messages):
            if sim_start is None:
                sim_start = m.send_at
            due = started
            if factor is not None:
                due = started + (m.send_at - sim_start).total_seconds() / factor
            if rate is not None:
                due = max(due, started + n / rate)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conns[zlib.crc32(m.topic.encode()) % count].send(m, ack_timeout)
            tally.add(m)
            now = time.monotonic()
            if progress is not None and now - last_progress >= progress_seconds:
                last_progress = now
                progress(tally.snapshot(acked(), count, now - started))
        for conn in conns:
            conn.drain(ack_timeout)
    finally:
        for conn in conns:
            conn.close()
    stats = tally.snapshot(acked(), count, time.monotonic() - started)
    log.info(
        "simulator_published",
        messages=stats.messages,
        acked=stats.acked,
        readings=stats.readings,
        activities=stats.activities,
        seconds=round(stats.elapsed_seconds, 3),
    )
    if progress is not None:
        progress(stats)
    return stats


def write_manifest(path: str | Path, manifest: FaultManifest) -> Path:
    """Write the fault manifest atomically (mode 0600; a new directory gets 0700)."""
    target = Path(path)
    if not target.parent.exists():
        private_dir(target.parent)
    return write_private(target, manifest.to_json())

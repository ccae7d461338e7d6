"""Ingest counters, a thread-safe snapshot, and their Prometheus text exposition."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class StatsSnapshot:
    received: int = 0  # messages taken off the broker
    processed: int = 0  # messages written (or quarantined) and acknowledged
    stored: int = 0  # readings newly written
    duplicates: int = 0  # readings dropped as already stored
    activities: int = 0  # care activities committed
    quarantined: dict[str, int] = field(default_factory=dict)  # by reason code
    flushes: int = 0
    flush_seconds_total: float = 0.0
    flush_seconds_max: float = 0.0
    connects: int = 0
    subscribed: int = 0  # subscriptions confirmed by the broker (once per connection)
    connected: bool = False
    write_errors: int = 0
    # The broker's own count of messages it dropped for full queues (None: not reported).
    broker_dropped: int | None = None

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())


class IngestStats:
    """Counters updated by the subscriber thread(s); read with :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._quarantined: Counter[str] = Counter()
        self._flush_total = 0.0
        self._flush_max = 0.0
        self._connected = False
        self._broker_dropped: int | None = None
        # Incremented by paho's network thread alone, once per message: a plain attribute
        # keeps the lock off the hottest path (int increments are atomic under the GIL).
        self.received = 0

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def quarantine(self, code: str, n: int = 1) -> None:
        with self._lock:
            self._quarantined[code] += n

    def flushed(self, seconds: float) -> None:
        with self._lock:
            self._counts["flushes"] += 1
            self._flush_total += seconds
            self._flush_max = max(self._flush_max, seconds)

    def set_broker_dropped(self, n: int) -> None:
        with self._lock:
            self._broker_dropped = n

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected
            if connected:
                self._counts["connects"] += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            c = self._counts
            return StatsSnapshot(
                received=self.received,
                processed=c["processed"],
                stored=c["stored"],
                duplicates=c["duplicates"],
                activities=c["activities"],
                quarantined=dict(self._quarantined),
                flushes=c["flushes"],
                flush_seconds_total=self._flush_total,
                flush_seconds_max=self._flush_max,
                connects=c["connects"],
                subscribed=c["subscribed"],
                connected=self._connected,
                write_errors=c["write_errors"],
                broker_dropped=self._broker_dropped,
            )


def prometheus_text(s: StatsSnapshot) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP rpmpipe_ingest_{name} {help_text}")
        lines.append(f"# TYPE rpmpipe_ingest_{name} {kind}")
        for labels, value in samples:
            lines.append(f"rpmpipe_ingest_{name}{labels} {value:g}")

    metric("messages_received_total", "counter", "MQTT messages received.", [("", s.received)])
    metric(
        "messages_processed_total",
        "counter",
        "MQTT messages durably handled and acknowledged.",
        [("", s.processed)],
    )
    metric("readings_stored_total", "counter", "Readings newly stored.", [("", s.stored)])
    metric(
        "readings_duplicate_total",
        "counter",
        "Readings dropped as already stored.",
        [("", s.duplicates)],
    )
    metric("activities_stored_total", "counter", "Care activities committed.", [("", s.activities)])
    metric(
        "quarantined_total",
        "counter",
        "Payloads or items quarantined, by reason code.",
        [(f'{{reason="{code}"}}', n) for code, n in sorted(s.quarantined.items())] or [("", 0)],
    )
    metric(
        "flush_seconds",
        "summary",
        "Time to write and acknowledge a batch.",
        [("_sum", s.flush_seconds_total), ("_count", s.flushes)],
    )
    metric("flush_seconds_max", "gauge", "Longest batch flush so far.", [("", s.flush_seconds_max)])
    metric(
        "write_errors_total", "counter", "Failed batch writes (retried).", [("", s.write_errors)]
    )
    metric(
        "connected", "gauge", "1 while connected to the broker.", [("", 1 if s.connected else 0)]
    )
    if s.broker_dropped is not None:
        metric(
            "broker_dropped_messages",
            "gauge",
            "Messages the broker dropped for full queues since it started "
            "($SYS/broker/publish/messages/dropped); above 0 means readings were lost there.",
            [("", s.broker_dropped)],
        )
    return "\n".join(lines) + "\n"


def serve_metrics(stats: IngestStats, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; call ``shutdown()`` to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = prometheus_text(stats.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes are not events worth logging

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="ingest-metrics", daemon=True).start()
    return server

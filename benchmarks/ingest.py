"""Ingest throughput against the limit: `rpmpipe ingest` vs a bare paho subscriber.

Both drain the same backlog (N readings queued on a persistent session while they were away)
as fresh processes, on the same broker, in the same run. Prints JSON with both wall times
(process start to the last message handled), rates, and ingest_rate / bare_rate.

By default a private Mosquitto is started on a free port with unlimited offline queues:
the stock configuration keeps at most 1000 queued messages per offline session, far below
the backlog. ``--broker-url`` uses an existing broker instead (it must allow the backlog).

    .venv/bin/python benchmarks/ingest.py [--count 200000] [--broker-url mqtt://127.0.0.1:1883]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pyarrow.dataset as ds
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TOPIC_ROOT = "bench/rpm/v1"
DEVICES = 1000
RECEIVE_MAXIMUM = 4000  # what ingest asks for with batch_size 2000 (two batches in flight)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def connect_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def make_session(url: str, client_id: str) -> None:
    """Create a persistent session subscribed to the readings topics, then leave."""
    host, port = host_port(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set("bench")
    c.connect(host, port, clean_start=False, properties=connect_props())
    c.loop_start()
    info = c.subscribe(f"{TOPIC_ROOT}/devices/+/readings", qos=1)
    deadline = time.monotonic() + 10
    while not c.is_connected() or info[0] != mqtt.MQTT_ERR_SUCCESS:
        if time.monotonic() > deadline:
            raise SystemExit("could not subscribe")
        time.sleep(0.05)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def payload(i: int) -> tuple[str, bytes]:
    device = f"BP-{i % DEVICES:06d}"
    at = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(seconds=13 * i)
    doc = {
        "device_id": device,
        "reading_id": f"{device}-{i}",
        "measured_at": at.isoformat(),
        "type": "blood_pressure",
        "systolic_mmhg": 100 + i % 60,
        "diastolic_mmhg": 60 + i % 30,
        "pulse_bpm": 55 + i % 40,
    }
    return f"{TOPIC_ROOT}/devices/{device}/readings", orjson.dumps(doc)


def publish_backlog(url: str, count: int) -> float:
    host, port = host_port(url)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv311
    )
    c.username_pw_set("bench")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    started = time.perf_counter()
    last = None
    for i in range(count):
        if i % 1000 == 0:
            # Packet ids wrap at 65535: keep fewer than that awaiting PUBACK.
            while len(c._out_messages) > 20_000:  # noqa: SLF001
                time.sleep(0.01)
        topic, body = payload(i)
        last = c.publish(topic, body, qos=1)
        if last.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"publish failed: {last.rc}")
    assert last is not None
    last.wait_for_publish(600)
    while c._out_messages:  # noqa: SLF001 - wait until every PUBACK is in
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    return elapsed


def bare_worker(url: str, count: int, client_id: str) -> None:
    """The limit: a paho subscriber that only counts (and acks) the backlog."""
    host, port = host_port(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set("bench")
    seen = 0

    def on_message(client: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            client.disconnect()

    c.on_message = on_message
    c.connect(host, port, clean_start=False, properties=connect_props())
    c.loop_forever()
    print(seen)


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
        "log_dest none\n"
    )
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"mqtt://127.0.0.1:{port}"


def register_devices(data_dir: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rpmpipe.registry.db import open_registry
    from rpmpipe.registry.imports import import_rows

    engine = open_registry(f"sqlite:///{data_dir / 'registry.db'}")
    rows = [
        {"device_id": f"BP-{i:06d}", "kind": "bp_cuff", "model": "bench"} for i in range(DEVICES)
    ]
    import_rows(engine, "devices", rows, source="benchmark")
    engine.dispose()


def run_ingest(url: str, data_dir: Path, count: int, client_id: str) -> float:
    port = free_port()
    env = {
        **os.environ,
        "RPMPIPE_DATA_DIR": str(data_dir),
        "RPMPIPE_BROKER_URL": url,
        "RPMPIPE_BROKER_TOPIC_ROOT": TOPIC_ROOT,
        "RPMPIPE_BROKER_USERNAME": "bench",
        "RPMPIPE_BROKER_PROTOCOL": "5",
        "RPMPIPE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    rpmpipe = [str(Path(sys.executable).parent / "rpmpipe")]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*rpmpipe, "ingest", "--client-id", client_id, "--metrics-port", str(port)], env=env
    )
    processed = 0
    while processed < count:
        time.sleep(0.05)
        if proc.poll() is not None:
            raise SystemExit(f"rpmpipe ingest exited early with {proc.returncode}")
        try:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
                .read()
                .decode()
            )
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("rpmpipe_ingest_messages_processed_total "):
                processed = int(float(line.split()[1]))
    elapsed = time.perf_counter() - started
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return elapsed


def one_run(url: str, workdir: Path, count: int, run: int) -> dict[str, object]:
    """Queue a fresh backlog for both sessions, drain it with each, return the figures."""
    data_dir = workdir / f"data-{run}"
    data_dir.mkdir()
    register_devices(data_dir)
    ingest_id, bare_id = f"bench-ingest-{run}", f"bench-bare-{run}"
    make_session(url, ingest_id)
    make_session(url, bare_id)
    publish_seconds = publish_backlog(url, count)

    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--bare-worker",
            "--broker-url",
            url,
            "--count",
            str(count),
            "--client-id",
            bare_id,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    bare_seconds = time.perf_counter() - started
    assert int(out.stdout.strip()) >= count

    ingest_seconds = run_ingest(url, data_dir, count, ingest_id)
    table = ds.dataset(data_dir / "readings", format="parquet", partitioning="hive").to_table(
        columns=["dedup_key"]
    )
    return {
        "publish_seconds": round(publish_seconds, 3),
        "bare_seconds": round(bare_seconds, 3),
        "bare_rate": round(count / bare_seconds),
        "ingest_seconds": round(ingest_seconds, 3),
        "ingest_rate": round(count / ingest_seconds),
        "ratio": round(bare_seconds / ingest_seconds, 3),
        "stored_rows": table.num_rows,
        "stored_unique": len(set(table.column("dedup_key").to_pylist())),
        "parquet_files": sum(1 for _ in (data_dir / "readings").rglob("*.parquet")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--broker-url", default="")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median ratio is reported")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", default="bench-bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        bare_worker(args.broker_url, args.count, args.client_id)
        return
    workdir = Path(tempfile.mkdtemp(prefix="rpmpipe-bench-"))
    broker = None
    try:
        url = args.broker_url
        if not url:
            broker, url = start_mosquitto(workdir)
        runs = [one_run(url, workdir, args.count, i) for i in range(args.repeat)]
        ratios = sorted(float(str(r["ratio"])) for r in runs)
        result = {
            "count": args.count,
            "broker": "private mosquitto (unlimited offline queue)" if broker else url,
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "median_ratio": ratios[len(ratios) // 2],
            "bar": 0.5,
            "runs": runs,
        }
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Ingest throughput against the limit: `rpmpipe ingest` vs a bare paho subscriber.

Both drain the same backlog (N device syncs queued on a persistent session while they were
away) as fresh processes, on the same broker, in the same run. The backlog is the simulator's
fleet traffic (native payloads, batched store-and-forward syncs included), its fleet registered
so that ingest accepts every device. Prints JSON with both wall times
(process start to the last message handled), rates, and ingest_rate / bare_rate.

By default a private Mosquitto is started on a free port with unlimited offline queues:
the stock configuration keeps at most 1000 queued messages per offline session, far below
the backlog. ``--broker-url`` uses an existing broker instead (it must allow the backlog).

    .venv/bin/python benchmarks/ingest.py [--count 200000] [--mode single|fleet|both] [--repeat 3]
        [--protocol 5|3.1.1|both] [--max-inflight 0] [--as-installed]

The bare subscriber imports paho alone. ``--as-installed`` hides the dev extra's pandas from
``rpmpipe ingest`` (pyarrow would import it on the first array), as a runtime install is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from rpmpipe.simulators import Fleet, SimMessage

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOPIC_ROOT = "bench/rpm/v1"
RECEIVE_MAXIMUM = 4000  # what ingest asks for with batch_size 2000 (two batches in flight)
PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
# Hides the dev extra's pandas from `rpmpipe ingest` (--as-installed): pyarrow imports pandas
# on its first array when it can, which a runtime install (pandas is dev-only) never pays.
NO_PANDAS = "raise ImportError('pandas is not installed (runtime dependencies only)')\n"


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


def session_client(url: str, client_id: str, protocol: str) -> mqtt.Client:
    """A connected client resuming (or creating) the persistent session ``client_id``."""
    host, port = host_port(url)
    if protocol == "5":
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set("bench")
        c.connect(host, port, clean_start=False, properties=connect_props())
    else:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PROTOCOLS[protocol],
            clean_session=False,
        )
        c.username_pw_set("bench")
        c.connect(host, port)
    return c


def make_session(url: str, client_id: str, protocol: str) -> None:
    """Create a persistent session subscribed to the readings topics, then leave."""
    c = session_client(url, client_id, protocol)
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


def simulated_backlog(count: int, single: bool = False) -> tuple[Fleet, list[SimMessage]]:
    """The first ``count`` device syncs of a simulated fleet big enough to send them.

    ``single``: only syncs of one reading each, what most devices send live (the batched
    store-and-forward syncs of the fleet are left out).
    """
    from rpmpipe.simulators import build_fleet, simulate

    days = 30
    patients = max(10, count // (2 * days))
    while True:
        fleet = build_fleet(patients=patients, start=date(2026, 10, 1), days=days, seed=11)
        sim = simulate(
            fleet, topic_root=TOPIC_ROOT, fmt="native", until=datetime(2026, 11, 1, tzinfo=UTC)
        )
        syncs = [
            m
            for m in sim.messages
            if m.kind != "activity" and (not single or len(m.reading_ids) == 1)
        ]
        if len(syncs) >= count:
            return fleet, syncs[:count]
        patients *= 2


def publish_backlog(url: str, messages: list[SimMessage]) -> float:
    from rpmpipe.settings import load_settings
    from rpmpipe.simulators import publish

    settings = load_settings(
        None,
        env={},
        overrides={
            "broker.url": url,
            "broker.protocol": "5",
            "broker.username": "bench",
            "broker.topic_root": TOPIC_ROOT,
        },
    )
    stats = publish(settings.broker, messages, speed="max")
    if stats.acked != len(messages):
        raise SystemExit(f"only {stats.acked} of {len(messages)} publishes acknowledged")
    return stats.elapsed_seconds


def bare_worker(url: str, count: int, client_id: str, protocol: str) -> None:
    """The limit: a paho subscriber that only counts (and acks) the backlog."""
    c = session_client(url, client_id, protocol)
    seen = 0

    def on_message(client: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal seen
        seen += 1
        if seen >= count:
            client.disconnect()

    c.on_message = on_message
    c.loop_forever()
    print(seen)


def start_mosquitto(workdir: Path, max_inflight: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\n"
        f"max_inflight_messages {max_inflight}\n"
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


def register_fleet(data_dir: Path, fleet: Fleet) -> None:
    from rpmpipe.registry.db import open_registry
    from rpmpipe.registry.imports import import_rows

    engine = open_registry(f"sqlite:///{data_dir / 'registry.db'}")
    for kind, rows in fleet.registry_rows().items():
        import_rows(engine, kind, rows, source="benchmark")
    engine.dispose()


def run_ingest(
    url: str, data_dir: Path, readings: int, client_id: str, protocol: str, as_installed: bool
) -> float:
    """Seconds from starting ``rpmpipe ingest`` until it has stored ``readings`` readings.

    Stored readings, not processed messages: after a reconnect the broker redelivers what was
    written but not yet acknowledged, and those second copies are processed too.
    """
    port = free_port()
    env = {
        **os.environ,
        "RPMPIPE_DATA_DIR": str(data_dir),
        "RPMPIPE_BROKER_URL": url,
        "RPMPIPE_BROKER_TOPIC_ROOT": TOPIC_ROOT,
        "RPMPIPE_BROKER_USERNAME": "bench",
        "RPMPIPE_BROKER_PROTOCOL": protocol,
        "RPMPIPE_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }
    if as_installed:
        shim = data_dir.parent / "no-dev-extras"
        (shim / "pandas").mkdir(parents=True, exist_ok=True)
        (shim / "pandas" / "__init__.py").write_text(NO_PANDAS)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p
        )
    # BENCH_RPMPIPE: another command to measure (e.g. "python run_other_checkout.py").
    rpmpipe = os.environ.get("BENCH_RPMPIPE", "").split() or [
        str(Path(sys.executable).parent / "rpmpipe")
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*rpmpipe, "ingest", "--client-id", client_id, "--metrics-port", str(port)], env=env
    )
    stored = 0
    while stored < readings:
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
            if line.startswith("rpmpipe_ingest_readings_stored_total "):
                stored = int(float(line.split()[1]))
    elapsed = time.perf_counter() - started
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return elapsed


def one_run(
    url: str,
    workdir: Path,
    fleet: Fleet,
    messages: list[SimMessage],
    run: str,
    protocol: str,
    as_installed: bool,
) -> dict[str, object]:
    """Queue a fresh backlog for both sessions, drain it with each, return the figures."""
    import pyarrow.dataset as ds

    count = len(messages)
    data_dir = workdir / f"data-{run}"
    data_dir.mkdir()
    register_fleet(data_dir, fleet)
    ingest_id, bare_id = f"bench-ingest-{run}", f"bench-bare-{run}"
    make_session(url, ingest_id, protocol)
    make_session(url, bare_id, protocol)
    publish_seconds = publish_backlog(url, messages)

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
            "--protocol",
            protocol,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    bare_seconds = time.perf_counter() - started
    assert int(out.stdout.strip()) >= count

    readings = len({r for m in messages for r in m.reading_ids})
    ingest_seconds = run_ingest(url, data_dir, readings, ingest_id, protocol, as_installed)
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
        "readings_sent": readings,
        "stored_rows": table.num_rows,
        "stored_unique": len(set(table.column("dedup_key").to_pylist())),
        "parquet_files": sum(1 for _ in (data_dir / "readings").rglob("*.parquet")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--broker-url", default="")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median ratio is reported")
    parser.add_argument(
        "--mode",
        choices=["single", "fleet", "both"],
        default="both",
        help="single: one reading per message; fleet: the simulator's traffic with batched syncs",
    )
    parser.add_argument(
        "--protocol",
        choices=["5", "3.1.1", "both"],
        default="5",
        help="MQTT version of both subscribers; both: each run drains one backlog per version",
    )
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=0,
        help="the private broker's max_inflight_messages (0: unlimited; stock Mosquitto: 20), "
        "which bounds unacknowledged QoS 1 messages to an MQTT 3.1.1 client",
    )
    parser.add_argument(
        "--as-installed",
        action="store_true",
        help="run rpmpipe ingest without the dev extra's pandas, as a runtime install has it",
    )
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", default="bench-bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        bare_worker(args.broker_url, args.count, args.client_id, args.protocol)
        return
    workdir = Path(tempfile.mkdtemp(prefix="rpmpipe-bench-"))
    broker = None
    try:
        url = args.broker_url
        if not url:
            broker, url = start_mosquitto(workdir, args.max_inflight)
        modes = ["single", "fleet"] if args.mode == "both" else [args.mode]
        result: dict[str, object] = {
            "count": args.count,
            "broker": "private mosquitto (unlimited offline queue)" if broker else url,
            "cpus": os.cpu_count(),
            "bar": 0.8,
            "broker_max_inflight": args.max_inflight if broker else None,
            "ingest_environment": "runtime dependencies only" if args.as_installed else "dev venv",
        }
        protocols = ["5", "3.1.1"] if args.protocol == "both" else [args.protocol]
        for mode in modes:
            fleet, messages = simulated_backlog(args.count, single=mode == "single")
            runs: dict[str, list[dict[str, object]]] = {p: [] for p in protocols}
            for i in range(args.repeat):  # the protocols take turns, under the same load
                for protocol in protocols:
                    run = f"{mode}-{protocol}-{i}"
                    runs[protocol].append(
                        one_run(url, workdir, fleet, messages, run, protocol, args.as_installed)
                    )
            for protocol, done in runs.items():
                ratios = sorted(float(str(r["ratio"])) for r in done)
                rates = sorted(int(str(r["ingest_rate"])) for r in done)
                key = mode if len(protocols) == 1 else f"{mode}_mqtt{protocol}"
                result[key] = {
                    "protocol": protocol,
                    "fleet_patients": len(fleet.patients),
                    "median_ratio": ratios[len(ratios) // 2],
                    "median_ingest_rate": rates[len(rates) // 2],
                    "runs": done,
                }
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result, indent=2))
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

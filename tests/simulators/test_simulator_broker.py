"""The publisher against a real broker: what a plain subscriber receives is what was simulated."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import DeviceAssignment, Enrollment, Patient
from rpmpipe.simulators import FAULT_KINDS, Fleet, PublishStats, build_fleet, publish, simulate

pytestmark = pytest.mark.services


def decode(payload: bytes) -> list[tuple[str, datetime, str]] | None:
    """(type, measured_at, reading id) of each item, in any simulator format; None if not JSON."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, dict) and "readings" in body:
        body = body["readings"]
    out = []
    for item in body if isinstance(body, list) else [body]:
        if "resourceType" in item:
            kind = (
                "blood_pressure"
                if item["code"]["coding"][0]["code"] == "85354-9"
                else "body_weight"
            )
            out.append((kind, datetime.fromisoformat(item["effectiveDateTime"]), item["id"]))
        elif "header" in item:
            name = item["header"]["schema_id"]["name"]
            kind = "blood_pressure" if name == "blood-pressure" else "body_weight"
            when = item["body"]["effective_time_frame"]["date_time"]
            out.append((kind, datetime.fromisoformat(when), item["header"]["id"]))
        else:
            out.append(
                (item["type"], datetime.fromisoformat(item["measured_at"]), item["reading_id"])
            )
    return out


def test_broker_receives_every_device_type_day_activity_and_fault(
    stack: Any, small_fleet: Fleet, subscribe: Any
) -> None:
    settings = stack.settings
    root = settings.broker.topic_root
    sim = simulate(small_fleet, topic_root=root, fmt="mixed", faults=True)
    assert sim.manifest is not None
    progress: list[PublishStats] = []
    with subscribe(settings, len(sim.messages)) as received:
        stats = publish(settings.broker, sim.messages, speed="max", progress=progress.append)
        got = received.wait(60)

    assert stats.messages == stats.acked == len(sim.messages)
    assert progress and progress[-1] == stats
    # Exactly what was sent, duplicates included.
    assert Counter(got) == Counter((m.topic, m.payload) for m in sim.messages)

    devices = {t.split("/")[-2] for t, _ in got if t.endswith("/readings")}
    fleet_devices = {d.device_id for d in small_fleet.devices}
    unregistered = {f.device_id for f in sim.manifest.faults if f.kind == "unregistered_device"}
    assert devices == fleet_devices | unregistered

    types: Counter[str] = Counter()
    days: set[date] = set()
    arrived_ids: Counter[str] = Counter()
    not_json = 0
    for topic, payload in got:
        if topic == f"{root}/activities":
            continue
        items = decode(payload)
        if items is None:
            not_json += 1
            continue
        for kind, measured, rid in items:
            types[kind] += 1
            arrived_ids[rid] += 1
            if measured.tzinfo is not None:
                days.add(measured.date())
    assert set(types) == {"blood_pressure", "body_weight"}
    window = {small_fleet.start.fromordinal(small_fleet.start.toordinal() + k) for k in range(10)}
    assert window <= days

    activities = [orjson.loads(p) for t, p in got if t == f"{root}/activities"]
    assert activities and stats.activities == len(activities)
    assert {a["kind"] for a in activities} >= {"phone_call", "video_visit", "data_review"}
    assert {a["patient_id"] for a in activities} < {p.patient_id for p in small_fleet.patients}

    assert not_json == 1  # the malformed_json fault
    for fault in sim.manifest.faults:
        if fault.kind == "malformed_json":
            continue
        for rid in fault.reading_ids:
            assert arrived_ids[rid] >= 1, (fault.kind, rid)
        if fault.kind == "duplicate":
            assert arrived_ids[fault.reading_ids[0]] == 2
    assert set(stats.faults) == set(FAULT_KINDS)


def test_publisher_paces_over_several_connections_keeping_device_order(
    stack: Any, subscribe: Any
) -> None:
    settings = stack.settings
    fleet = build_fleet(3, date(2026, 11, 2), 3, seed=21)
    sim = simulate(fleet, topic_root=settings.broker.topic_root, fmt="native")
    with subscribe(settings, len(sim.messages)) as received:
        # 3 simulated days in about 0.3 s; 2000 msg/s cap; three connections.
        stats = publish(settings.broker, sim.messages, speed="1000000", rate=2000, connections=3)
        got = received.wait(60)
    assert stats.connections == 3 and stats.acked == len(sim.messages) == len(got)
    sent_order: dict[str, list[bytes]] = defaultdict(list)
    for m in sim.messages:
        sent_order[m.topic].append(m.payload)
    got_order: dict[str, list[bytes]] = defaultdict(list)
    for topic, payload in got:
        got_order[topic].append(payload)
    assert got_order == sent_order


def test_cli_registers_the_fleet_idempotently_and_publishes(
    stack: Any, subscribe: Any, tmp_path: Path
) -> None:
    settings = stack.settings
    root = settings.broker.topic_root
    env = {"RPMPIPE_BROKER_TOPIC_ROOT": root, "RPMPIPE_BROKER_PROTOCOL": stack.protocol}
    manifest = tmp_path / "manifest.json"
    args = [
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        stack.database_url,
        "--broker-url",
        stack.broker_url,
        "--log-level",
        "WARNING",
        "simulate",
        "--patients",
        "3",
        "--days",
        "3",
        "--start",
        "2026-11-02",
        "--faults",
        "--format",
        "fhir",
        "--seed",
        "9",
        "--manifest",
        str(manifest),
    ]
    # The CLI's horizon is the start of the current UTC day: the same seed, the same messages.
    today = datetime.combine(datetime.now(UTC).date(), time(0), UTC)
    expected = simulate(
        build_fleet(3, date(2026, 11, 2), 3, seed=9),
        topic_root=root,
        fmt="fhir",
        faults=True,
        until=today,
    )
    runner = CliRunner()
    with subscribe(settings, len(expected.messages)) as received:
        result = runner.invoke(app, args, env=env)
        got = received.wait(60)
    assert result.exit_code == 0, result.output
    assert f"published {len(expected.messages)} messages" in result.output
    data = json.loads(manifest.read_text())
    assert {f["kind"] for f in data["faults"]} == set(FAULT_KINDS)
    assert Counter(got) == Counter((m.topic, m.payload) for m in expected.messages)

    engine = open_registry(stack.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Patient)) == 3
            # Three RPM enrollments, and CCM beside RPM for the second patient.
            assert conn.scalar(select(func.count()).select_from(Enrollment)) == 4
            assert (conn.scalar(select(func.count()).select_from(DeviceAssignment)) or 0) >= 3
    finally:
        engine.dispose()
    again = runner.invoke(app, [*args[:-2], "--no-register"], env=env)
    assert again.exit_code == 0, again.output
    assert "registered patients" not in again.output
    rerun = runner.invoke(app, args, env=env)
    assert rerun.exit_code == 0, rerun.output
    assert "registered patients: 3 (0 new, 0 updated, 3 unchanged)" in rerun.output


def test_cli_rejects_bad_options_with_a_clear_message(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path), "simulate", "--no-register"]
    for extra, message in (
        (["--format", "xml"], "--format"),
        (["--speed", "fast"], "--speed"),
        (["--start", "11/02/2026"], "--start"),
        (["--rate", "-1"], "--rate"),
    ):
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code != 0
        assert message in result.output


def test_publish_to_an_unreachable_broker_raises_a_transient_error(tmp_path: Path) -> None:
    from rpmpipe.errors import TransientError
    from rpmpipe.settings import load_settings

    settings = load_settings(
        None, env={}, overrides={"broker.url": "mqtt://127.0.0.1:1", "data_dir": str(tmp_path)}
    )
    sim = simulate(build_fleet(1, date(2026, 11, 2), 1, seed=1))
    with pytest.raises(TransientError, match="unreachable"):
        publish(settings.broker, sim.messages)

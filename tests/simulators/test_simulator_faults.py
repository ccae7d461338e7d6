"""Injected faults: every kind present, and the manifest says exactly what was sent."""

from __future__ import annotations

import json
import stat
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from rpmpipe.simulators import (
    FAULT_KINDS,
    Fleet,
    SimMessage,
    Simulation,
    build_fleet,
    simulate,
    write_manifest,
)


def items_of(m: SimMessage) -> list[dict[str, Any]]:
    body = orjson.loads(m.payload)
    if isinstance(body, dict) and "readings" in body:
        body = body["readings"]
    return body if isinstance(body, list) else [body]


@pytest.fixture(scope="module")
def faulty(month_fleet: Fleet) -> Simulation:
    return simulate(month_fleet, topic_root="t/v1", fmt="native", faults=True)


def carrying(sim: Simulation, reading_id: str) -> list[SimMessage]:
    return [m for m in sim.messages if reading_id in m.reading_ids]


def test_manifest_lists_every_fault_kind_once_per_ten_patients(faulty: Simulation) -> None:
    assert faulty.manifest is not None
    assert faulty.manifest.counts() == {kind: 1 for kind in FAULT_KINDS}
    bigger = simulate(build_fleet(40, faulty.messages[0].send_at.date(), 20, seed=2), faults=True)
    assert bigger.manifest is not None
    counts = bigger.manifest.counts()
    assert counts["duplicate"] == 4 and counts["burst"] == 1 and counts["unregistered_device"] == 2


def test_every_manifest_entry_matches_the_messages_sent(faulty: Simulation) -> None:
    assert faulty.manifest is not None
    faulted = Counter(m.fault for m in faulty.messages if m.fault)
    assert set(faulted) == set(FAULT_KINDS)
    for fault in faulty.manifest.faults:
        for rid in fault.reading_ids:
            sent = carrying(faulty, rid)
            assert sent, (fault.kind, rid)
            assert all(m.topic == fault.topic and m.device_id == fault.device_id for m in sent)


def test_clean_traffic_has_no_fault_markers(month_fleet: Fleet) -> None:
    sim = simulate(month_fleet, faults=False)
    assert sim.manifest is None
    assert not [m for m in sim.messages if m.fault]


def one(sim: Simulation, kind: str) -> Any:
    assert sim.manifest is not None
    return next(f for f in sim.manifest.faults if f.kind == kind)


def test_duplicate_resends_the_identical_payload_later(faulty: Simulation) -> None:
    fault = one(faulty, "duplicate")
    sent = carrying(faulty, fault.reading_ids[0])
    assert len(sent) == 2
    assert sent[0].payload == sent[1].payload
    assert sent[1].send_at > sent[0].send_at


def test_late_sync_arrives_days_after_measurement(faulty: Simulation) -> None:
    (sent,) = carrying(faulty, one(faulty, "late_sync").reading_ids[0])
    measured = datetime.fromisoformat(items_of(sent)[0]["measured_at"])
    assert sent.send_at - measured >= timedelta(days=2)


def test_out_of_order_readings_arrive_newest_first(faulty: Simulation) -> None:
    fault = one(faulty, "out_of_order")
    order = [rid for m in faulty.messages for rid in m.reading_ids if rid in fault.reading_ids]
    assert order == list(fault.reading_ids)
    measured = [
        datetime.fromisoformat(items_of(carrying(faulty, rid)[0])[0]["measured_at"])
        for rid in order
    ]
    assert measured == sorted(measured, reverse=True)


def test_clock_skew_reading_is_timed_past_the_horizon(month_fleet: Fleet) -> None:
    until = datetime.combine(month_fleet.end + timedelta(days=1), datetime.min.time(), UTC)
    sim = simulate(month_fleet, faults=True, until=until)
    (sent,) = carrying(sim, one(sim, "clock_skew").reading_ids[0])
    measured = datetime.fromisoformat(items_of(sent)[0]["measured_at"])
    assert measured - sent.send_at > timedelta(minutes=10)
    assert measured > until + timedelta(hours=12)
    assert sent.send_at <= until


def test_malformed_payloads_are_bad_in_the_announced_way(faulty: Simulation) -> None:
    (bad,) = carrying(faulty, one(faulty, "malformed_json").reading_ids[0])
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.payload)
    (naive,) = carrying(faulty, one(faulty, "naive_timestamp").reading_ids[0])
    assert datetime.fromisoformat(items_of(naive)[0]["measured_at"]).tzinfo is None
    (bp,) = carrying(faulty, one(faulty, "diastolic_ge_systolic").reading_ids[0])
    item = items_of(bp)[0]
    assert item["diastolic_mmhg"] >= item["systolic_mmhg"]
    (weight,) = carrying(faulty, one(faulty, "unknown_unit").reading_ids[0])
    assert items_of(weight)[0]["unit"] not in ("kg", "lb")


def test_unregistered_device_is_not_in_the_fleet(faulty: Simulation, month_fleet: Fleet) -> None:
    fault = one(faulty, "unregistered_device")
    assert fault.device_id not in {d.device_id for d in month_fleet.devices}
    assert len(fault.reading_ids) == 3


def test_burst_sends_many_readings_of_one_device_in_two_minutes(faulty: Simulation) -> None:
    fault = one(faulty, "burst")
    sent = [carrying(faulty, rid)[0] for rid in fault.reading_ids]
    assert len(sent) == 25
    assert max(m.send_at for m in sent) - min(m.send_at for m in sent) <= timedelta(minutes=2)
    days = {datetime.fromisoformat(items_of(m)[0]["measured_at"]).date() for m in sent}
    assert len(days) == 1


def test_faulty_readings_never_reuse_clean_reading_ids(month_fleet: Fleet) -> None:
    clean = {rid for m in simulate(month_fleet).messages for rid in m.reading_ids}
    sim = simulate(month_fleet, faults=True)
    assert sim.manifest is not None
    for fault in sim.manifest.faults:
        reused = clean & set(fault.reading_ids)
        if fault.kind in ("duplicate", "late_sync", "out_of_order"):
            assert reused == set(fault.reading_ids)
        else:
            assert not reused, fault.kind


def test_faults_work_in_every_format(small_fleet: Fleet) -> None:
    for fmt in ("omh", "fhir", "mixed"):
        sim = simulate(small_fleet, fmt=fmt, faults=True)
        assert sim.manifest is not None
        assert all(n >= 1 for n in sim.manifest.counts().values()), fmt


def test_manifest_file_is_private_json(faulty: Simulation, tmp_path: Path) -> None:
    assert faulty.manifest is not None
    path = write_manifest(tmp_path / "out" / "faults.json", faulty.manifest)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert len(data["faults"]) == len(faulty.manifest.faults)
    assert {f["kind"] for f in data["faults"]} == set(FAULT_KINDS)
    assert all(f["topic"].startswith("t/v1/devices/") and f["expected"] for f in data["faults"])

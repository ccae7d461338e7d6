"""What the fleet sends: determinism, adherence profiles, formats, units, care activity."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from rpmpipe.simulators import Fleet, SimMessage, build_fleet, default_start, simulate
from rpmpipe.simulators.publisher import connection_count, parse_speed
from rpmpipe.simulators.traffic import LB_PER_KG


def native_items(messages: tuple[SimMessage, ...]) -> list[dict[str, Any]]:
    """Every clean reading of native-format messages, batches flattened."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.kind == "activity" or m.fault:
            continue
        body = orjson.loads(m.payload)
        if isinstance(body, dict) and "readings" in body:
            body = body["readings"]
        out.extend(body if isinstance(body, list) else [body])
    return out


def local_days(fleet: Fleet, items: list[dict[str, Any]], patient_id: str) -> list[date]:
    devices = {d.device_id for d in fleet.devices_of(patient_id)}
    return sorted(
        {
            datetime.fromisoformat(i["measured_at"]).date()
            for i in items
            if i["device_id"] in devices
        }
    )


def patient_with(fleet: Fleet, profile: str) -> str:
    return next(p.patient_id for p in fleet.patients if p.profile == profile)


def test_same_seed_gives_byte_identical_messages_in_every_format(small_fleet: Fleet) -> None:
    for fmt in ("native", "omh", "fhir", "mixed"):
        a = simulate(small_fleet, topic_root="t/v1", fmt=fmt, faults=True)
        b = simulate(
            build_fleet(5, small_fleet.start, 10, seed=11), topic_root="t/v1", fmt=fmt, faults=True
        )
        assert a == b
        assert a.manifest is not None and a.manifest.to_json() == b.manifest.to_json()  # type: ignore[union-attr]
    other = simulate(build_fleet(5, small_fleet.start, 10, seed=12), topic_root="t/v1")
    assert other.messages != simulate(small_fleet, topic_root="t/v1").messages


def test_messages_come_in_send_order_on_contract_topics(small_fleet: Fleet) -> None:
    sim = simulate(small_fleet, topic_root="t/v1", fmt="mixed")
    sends = [m.send_at for m in sim.messages]
    assert sends == sorted(sends)
    for m in sim.messages:
        assert m.qos == 1
        if m.kind == "activity":
            assert m.topic == "t/v1/activities"
        else:
            assert m.topic == f"t/v1/devices/{m.device_id}/readings"
            assert m.send_at.tzinfo is not None


def test_timestamps_carry_the_patients_local_offset(small_fleet: Fleet) -> None:
    items = native_items(simulate(small_fleet).messages)
    zone_of = {
        d.device_id: ZoneInfo(small_fleet.patient_of_device(d.device_id).timezone)
        for d in small_fleet.devices
    }
    assert items
    for item in items:
        stamp = datetime.fromisoformat(item["measured_at"])
        assert stamp.utcoffset() == stamp.astimezone(zone_of[item["device_id"]]).utcoffset()


def test_cuffs_send_morning_and_evening_with_plausible_values(month_fleet: Fleet) -> None:
    items = [
        i for i in native_items(simulate(month_fleet).messages) if i["type"] == "blood_pressure"
    ]
    hours = {datetime.fromisoformat(i["measured_at"]).hour for i in items}
    assert hours & {6, 7} and hours & {19, 20, 21}
    for i in items:
        assert 80 <= i["systolic_mmhg"] <= 220
        assert i["diastolic_mmhg"] < i["systolic_mmhg"]
        assert 35 <= i["pulse_bpm"] <= 150
    assert any(i.get("irregular_heartbeat") for i in items)
    assert len({i["reading_id"] for i in items}) == len(items)


def test_scales_send_in_lb_and_kg_consistent_with_body_weight(month_fleet: Fleet) -> None:
    items = [i for i in native_items(simulate(month_fleet).messages) if i["type"] == "body_weight"]
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in items:
        by_device[i["device_id"]].append(i)
    units = {d: {i["unit"] for i in rows} for d, rows in by_device.items()}
    assert {"lb"} in units.values() and {"kg"} in units.values()
    for rows in by_device.values():
        kg = [i["weight"] / (LB_PER_KG if i["unit"] == "lb" else 1) for i in rows]
        assert 45 <= min(kg) and max(kg) <= 175
        assert max(kg) - min(kg) < 8  # slow drift, not noise


def test_fhir_and_omh_encode_the_same_readings_with_their_units(small_fleet: Fleet) -> None:
    fhir = [
        orjson.loads(m.payload)
        for m in simulate(small_fleet, fmt="fhir").messages
        if m.kind == "reading"
    ]
    bp = next(o for o in fhir if o["code"]["coding"][0]["code"] == "85354-9")
    assert [c["code"]["coding"][0]["code"] for c in bp["component"]] == [
        "8480-6",
        "8462-4",
        "8867-4",
    ]
    weight_codes = {
        o["valueQuantity"]["code"] for o in fhir if o["code"]["coding"][0]["code"] == "29463-7"
    }
    assert weight_codes == {"kg", "[lb_av]"}
    assert all(
        o["device"]["identifier"]["value"] == o["device"]["reference"].split("/")[1] for o in fhir
    )
    omh = [
        orjson.loads(m.payload)
        for m in simulate(small_fleet, fmt="omh").messages
        if m.kind == "reading"
    ]
    names = {o["header"]["schema_id"]["name"] for o in omh}
    assert names == {"blood-pressure", "body-weight"}
    assert {o["body"]["body_weight"]["unit"] for o in omh if "body_weight" in o["body"]} == {
        "kg",
        "lb",
    }
    assert all(
        o["header"]["acquisition_provenance"]["source_name"].startswith(("BP-", "SC-")) for o in omh
    )
    # Same measurements, whatever the encoding.
    native = simulate(small_fleet, fmt="native").messages
    assert [m.send_at for m in native] == [
        m.send_at for m in simulate(small_fleet, fmt="omh").messages
    ]


def test_mixed_format_gives_each_device_one_format(small_fleet: Fleet) -> None:
    sim = simulate(small_fleet, fmt="mixed")
    formats: dict[str | None, set[str]] = defaultdict(set)
    for m in sim.messages:
        if m.kind != "activity":
            formats[m.device_id].add(m.fmt)
    assert all(len(f) == 1 for f in formats.values())
    assert set().union(*formats.values()) == {"native", "omh", "fhir"}


def test_drop_out_patient_stops_sending(month_fleet: Fleet) -> None:
    items = native_items(simulate(month_fleet).messages)
    days = local_days(month_fleet, items, patient_with(month_fleet, "drop_out"))
    assert days
    assert days[-1] <= month_fleet.start + timedelta(days=int(30 * 0.45))
    steady = local_days(month_fleet, items, patient_with(month_fleet, "steady"))
    assert steady[-1] >= month_fleet.end - timedelta(days=2)


def test_weekend_gaps_patient_sends_nothing_on_saturday_or_sunday(month_fleet: Fleet) -> None:
    items = native_items(simulate(month_fleet).messages)
    days = local_days(month_fleet, items, patient_with(month_fleet, "weekend_gaps"))
    assert len(days) >= 15
    assert all(d.weekday() < 5 for d in days)


def test_fading_patient_sends_on_fewer_days_late_in_the_window(month_fleet: Fleet) -> None:
    items = native_items(simulate(month_fleet).messages)
    days = local_days(month_fleet, items, patient_with(month_fleet, "fading"))
    first = [d for d in days if d < month_fleet.start + timedelta(days=10)]
    last = [d for d in days if d >= month_fleet.start + timedelta(days=20)]
    assert len(first) > len(last)


def test_store_and_forward_sends_batches_after_offline_days(month_fleet: Fleet) -> None:
    patient = patient_with(month_fleet, "store_and_forward")
    devices = {d.device_id for d in month_fleet.devices_of(patient)}
    sim = simulate(month_fleet)
    mine = [m for m in sim.messages if m.device_id in devices]
    assert mine and all(m.kind == "batch" for m in mine)
    assert max(len(m.reading_ids) for m in mine) >= 3
    shapes = set()
    for m in mine:
        body = orjson.loads(m.payload)
        shapes.add(type(body).__name__)
        items = body["readings"] if isinstance(body, dict) else body
        assert [i["reading_id"] for i in items] == list(m.reading_ids)
        # Nothing is sent before it was measured; the batch holds days of readings.
        assert all(datetime.fromisoformat(i["measured_at"]) <= m.send_at for i in items)
    # Offline 2-4 days between syncs (the last sync closes the window whenever it comes).
    sends = sorted(m.send_at for m in mine if (m.device_id or "").startswith("BP-"))[:-1]
    assert len(sends) >= 4
    assert all(b - a >= timedelta(days=2) for a, b in zip(sends, sends[1:], strict=False))
    other = [m for m in sim.messages if m.device_id and m.device_id not in devices]
    assert all(m.kind == "reading" for m in other)


def test_store_and_forward_batches_use_both_shapes() -> None:
    # Patients 5 and 13 are store-and-forward; with their scales/cuffs both shapes appear.
    fleet = build_fleet(16, date(2026, 11, 2), 14, seed=4)
    shapes = set()
    for m in simulate(fleet).messages:
        if m.kind == "batch":
            shapes.add(type(orjson.loads(m.payload)).__name__)
    assert shapes == {"list", "dict"}


def management(fleet: Fleet, messages: tuple[SimMessage, ...]) -> dict[str, tuple[int, int, int]]:
    """Per patient: (interactive minutes, all minutes, interactive contacts) in the window."""
    out: dict[str, list[int]] = {p.patient_id: [0, 0, 0] for p in fleet.patients}
    for m in messages:
        if m.kind == "activity":
            a = orjson.loads(m.payload)
            if a.get("program", "RPM") != "RPM":  # CCM/PCM time counts for its own program
                continue
            row = out[a["patient_id"]]
            row[1] += a["minutes"]
            if a["interactive"]:
                row[0] += a["minutes"]
                row[2] += 1
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def test_care_activity_gives_billable_short_and_non_interactive_months(small_fleet: Fleet) -> None:
    sim = simulate(small_fleet, topic_root="t/v1")
    per_patient = management(small_fleet, sim.messages)
    kinds = set()
    for interactive, total, contacts in per_patient.values():
        if interactive >= 20:
            kinds.add("20+")
        elif contacts and 10 <= total <= 19:
            kinds.add("10-19")
        elif total and not contacts:
            kinds.add("no interactive contact")
        elif not total:
            kinds.add("none")
    assert kinds == {"20+", "10-19", "no interactive contact", "none"}
    for m in sim.messages:
        if m.kind == "activity":
            a = orjson.loads(m.payload)
            assert a["activity_id"].startswith("A-")
            assert datetime.fromisoformat(a["started_at"]).tzinfo is not None
            assert a["interactive"] == (a["kind"] in ("phone_call", "video_visit"))
            assert Decimal(a["minutes"]) > 0


def test_until_drops_everything_not_yet_sent(small_fleet: Fleet) -> None:
    until = datetime.combine(small_fleet.start + timedelta(days=4), datetime.min.time(), UTC)
    sim = simulate(small_fleet, fmt="native", faults=True, until=until)
    assert sim.messages and max(m.send_at for m in sim.messages) <= until
    for item in native_items(sim.messages):
        assert datetime.fromisoformat(item["measured_at"]) <= until


def test_default_window_ends_yesterday() -> None:
    now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert default_start(now, 30) == date(2026, 10, 31)


def test_speed_and_connection_parsing() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("60") == 60.0
    for bad in ("0", "-2", "fast", "nan"):
        with pytest.raises(ValueError):
            parse_speed(bad)
    assert connection_count(None) == 1
    assert connection_count(100.0) == 1
    assert connection_count(10_000.0) == 3
    assert connection_count(10**9) == 16
    assert connection_count(None, connections=4) == 4


def test_part_of_the_fleet_logs_ccm_and_pcm_time_with_care_plans(small_fleet: Fleet) -> None:
    sim = simulate(small_fleet, topic_root="t/v1")
    programs = {
        (a["patient_id"], a.get("program", "RPM"), a.get("performer", "clinical_staff"))
        for m in sim.messages
        if m.kind == "activity"
        for a in [orjson.loads(m.payload)]
    }
    ccm = {pid for pid, prog, _ in programs if prog == "CCM"}
    assert ccm and ccm < {p.patient_id for p in small_fleet.patients}
    assert {who for _, prog, who in programs if prog == "PCM"} <= {"physician"}
    planned = {(c.patient_id, c.program) for c in small_fleet.care_plans}
    enrolled = {(e.patient_id, e.program) for e in small_fleet.enrollments if e.program != "RPM"}
    assert planned == enrolled and {pid for pid, prog in planned if prog == "CCM"} == ccm

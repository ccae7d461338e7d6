"""The synthetic fleet: deterministic, registry-ready, and varied enough to mean something."""

from __future__ import annotations

import re
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import KINDS, import_rows
from rpmpipe.registry.models import Device, Enrollment, Patient
from rpmpipe.settings import npi_is_valid
from rpmpipe.simulators import PROFILES, Fleet, build_fleet

MBI = re.compile(
    r"^[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9][0-9][AC-HJKMNP-RT-Y]"
    r"[AC-HJKMNP-RT-Y0-9][0-9][AC-HJKMNP-RT-Y]{2}[0-9]{2}$"
)


def test_same_seed_builds_the_same_fleet_and_another_seed_does_not() -> None:
    a = build_fleet(12, date(2026, 11, 1), 30, seed=3)
    assert a == build_fleet(12, date(2026, 11, 1), 30, seed=3)
    assert a.patients != build_fleet(12, date(2026, 11, 1), 30, seed=4).patients


def test_registry_rows_have_exactly_the_contract_columns(month_fleet: Fleet) -> None:
    rows = month_fleet.registry_rows()
    assert list(rows) == ["patients", "devices", "assignments", "enrollments", "care-plans"]
    for kind, kind_rows in rows.items():
        assert kind_rows, kind
        for row in kind_rows:
            assert tuple(row) == KINDS[kind].columns
            assert all(isinstance(v, str) for v in row.values())


def test_first_patients_cover_every_profile_and_every_us_zone() -> None:
    fleet = build_fleet(7, date(2026, 11, 1), 10, seed=1)
    assert {p.profile for p in fleet.patients[:5]} == set(PROFILES)
    zones = {p.timezone for p in fleet.patients}
    assert zones == {
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
    }
    for zone in zones:
        ZoneInfo(zone)


def test_patients_look_like_medicare_rpm_patients(month_fleet: Fleet) -> None:
    for p in month_fleet.patients:
        assert re.fullmatch(r"P-\d{6}", p.patient_id)
        assert MBI.match(p.member_id), p.member_id
        assert p.payer_id == "MEDICARE"
        assert "I10" in p.icd10_codes
        assert p.sex in ("M", "F")
        assert 65 <= (month_fleet.start - p.birth_date).days // 365 <= 93
    codes = {c for p in month_fleet.patients for c in p.icd10_codes}
    assert {"I10", "I50.9", "E66.9"} <= codes


def test_every_patient_has_a_cuff_and_scales_show_both_units(small_fleet: Fleet) -> None:
    for p in small_fleet.patients:
        kinds = [d.kind for d in small_fleet.devices_of(p.patient_id)]
        assert "bp_cuff" in kinds
    for d in small_fleet.devices:
        prefix = "BP-" if d.kind == "bp_cuff" else "SC-"
        assert re.fullmatch(prefix + r"\d{6}", d.device_id)
    assert {d.unit for d in small_fleet.devices if d.kind == "scale"} == {"lb", "kg"}


def test_a_few_enrollments_lack_consent_and_npis_are_valid(month_fleet: Fleet) -> None:
    without = [e for e in month_fleet.enrollments if e.consent_date is None]
    assert len(without) == 1  # P-000009 of ten
    for e in month_fleet.enrollments:
        assert npi_is_valid(e.ordering_npi)
        assert e.consent_date is None or e.consent_date <= e.start_date


def test_fleet_rows_import_into_the_registry_idempotently(database_url: str) -> None:
    fleet = build_fleet(10, date(2026, 11, 1), 30, seed=2)
    engine = open_registry(database_url)
    try:
        first = {
            k: import_rows(engine, k, rows, source="simulator")
            for k, rows in fleet.registry_rows().items()
        }
        again = {
            k: import_rows(engine, k, rows, source="simulator")
            for k, rows in fleet.registry_rows().items()
        }
        assert first["patients"].inserted == 10
        assert all(r.unchanged == r.rows and r.inserted == 0 for r in again.values())
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Patient)) == 10
            assert conn.scalar(select(func.count()).select_from(Device)) == len(fleet.devices)
            assert (
                conn.scalar(
                    select(func.count())
                    .select_from(Enrollment)
                    .where(Enrollment.consent_date.is_(None))
                )
                == 1
            )
    finally:
        engine.dispose()

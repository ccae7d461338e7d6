"""The two renderings of one computation agree: the CSV text (``rpmpipe metrics --format csv``)
is byte for byte the CSV of the records (``--format json``)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from engagement_world import ORG_ZONE, World, local
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from rpmpipe.metrics import blocks, csv_bulk
from rpmpipe.metrics.csv_bulk import compute_engagement_csv
from rpmpipe.metrics.engagement import compute_engagement
from rpmpipe.metrics.job import compute, compute_csv
from rpmpipe.metrics.report import CSV_HEADER, write_csv, write_csv_pieces
from rpmpipe.metrics.snapshot import Enrollment
from rpmpipe.settings import RuleSettings, Settings, load_settings

RULES = [
    {},
    {"supply_date_of_service": "last_reading_day"},
    {"supply_period": "calendar_month"},
    {"max_99458_units": 0, "secure_message_interactive": True},
]


def _both(world: World, as_of: date, **rules: object) -> tuple[str, str, dict[str, int]]:
    settings = RuleSettings(**rules)  # type: ignore[arg-type]
    records = compute_engagement(
        world.table(), world.snapshot(), world.activities, as_of, settings, ORG_ZONE
    )
    expected = io.StringIO()
    write_csv(records, expected)
    pieces, counts = compute_engagement_csv(
        world.table(), world.snapshot(), world.activities, as_of, settings, ORG_ZONE
    )
    got = io.BytesIO()
    write_csv_pieces(pieces, got)
    want = {s: sum(r.status == s for r in records) for s in ("billable", "pending", "not_billable")}
    assert counts == want
    return expected.getvalue(), got.getvalue().decode(), want


def _varied_world() -> World:
    w = World()
    # Across the 2025/2026 rule sets, in several zones, with DST changes on the way.
    w.patient(
        "P01", zone="America/Los_Angeles", start=date(2025, 11, 20), consent=date(2025, 11, 20)
    )
    w.daily("P01", date(2025, 11, 21), 70, hour=23)
    w.patient("P02", zone="America/New_York", start=date(2026, 2, 20)).daily(
        "P02", date(2026, 2, 25), 40, hour=0, step=2
    )
    # Few days (not billable / short code), and one day only.
    w.patient("P03", zone="Pacific/Honolulu", start=date(2026, 3, 1)).daily(
        "P03", date(2026, 3, 3), 1
    )
    w.patient("P04", zone=None, start=date(2026, 3, 1)).daily("P04", date(2026, 3, 10), 5, step=6)
    # No consent, no data, consent late, ended enrollment, a second episode.
    w.patient("P05", consent=None).daily("P05", date(2026, 3, 2), 20)
    w.patient("P06")
    w.patient("P07", consent=date(2026, 3, 20)).daily("P07", date(2026, 3, 1), 40)
    w.patient("P08", start=date(2026, 3, 1), end=date(2026, 4, 10)).daily(
        "P08", date(2026, 3, 5), 45
    )
    w.patient("P09", start=date(2026, 1, 1), end=date(2026, 1, 31)).daily(
        "P09", date(2026, 1, 2), 25
    )
    w.enrollments.append(Enrollment("P09", "RPM", date(2026, 3, 1), None, date(2026, 3, 1)))
    w.daily("P09", date(2026, 3, 15), 10)
    w.patient("P10", start=date(2026, 5, 10))  # starts after as-of
    # Quoting: an id with a comma and a quote.
    w.patient('P,"11"').daily('P,"11"', date(2026, 3, 4), 17)
    # Data that starts only in the pending period.
    w.patient("P12").daily("P12", date(2026, 4, 20), 6)
    # Readings set aside (said in the reasons): a device used before its assignment, with one
    # counted day; the same without any counted day; manual and clock-suspect readings; a
    # device back from another patient (its readings then are the other patient's).
    w.patient("P13").assign("BP-R6", "P13", date(2026, 3, 23))
    for day in range(20):
        w.reading("BP-R6", local(date(2026, 3, 3) + timedelta(days=day), 9, 0, "America/Chicago"))
    w.reading("BP-R6", local(date(2026, 3, 23), 9, 0, "America/Chicago"))
    w.patient("P14").assign("BP-R7", "P14", date(2026, 4, 24))
    for day in range(3):
        w.reading("BP-R7", local(date(2026, 3, 10) + timedelta(days=day), 9, 0, "America/Chicago"))
    w.patient("P15").daily("P15", date(2026, 3, 2), 1)
    w.reading("D-P15", local(date(2026, 3, 5), 8, 0, "America/Chicago"), manual=True)
    w.reading("D-P15", local(date(2026, 3, 5), 9, 0, "America/Chicago"), manual=True)
    w.reading("D-P15", local(date(2026, 4, 2), 9, 0, "America/Chicago"), suspect=True)
    w.patient("P16").patient("P17", start=date(2026, 3, 11), consent=date(2026, 3, 11))
    w.assign("D-X", "P16", date(2026, 1, 1), date(2026, 3, 5)).assign(
        "D-X", "P17", date(2026, 3, 11)
    )
    for day in range(16):
        w.reading("D-X", local(date(2026, 3, 5) + timedelta(days=day), 12, 0, "America/Chicago"))
    # Management months: billable, short, without interaction, pending.
    w.activity("P01", datetime(2026, 1, 5, 15, tzinfo=UTC), 45)
    w.activity("P02", local(date(2026, 3, 31), 23, 30, "America/New_York"), "19.5")
    w.activity("P02", datetime(2026, 4, 2, 15, tzinfo=UTC), 12, interactive=False)
    w.activity("P07", datetime(2026, 4, 2, 15, tzinfo=UTC), 30, kind="secure_message")
    w.activity("P08", datetime(2026, 3, 9, 15, tzinfo=UTC), 75)
    w.activity('P,"11"', datetime(2026, 3, 9, 15, tzinfo=UTC), 21)
    # Care time counted once: a duplicate, an overlap, an entry held for review, a voided one,
    # an impossible date; time with no device, without consent, outside any enrollment.
    w.activity("P12", datetime(2026, 3, 9, 15, tzinfo=UTC), 12, aid="D1")
    w.activity("P12", datetime(2026, 3, 9, 15, tzinfo=UTC), 12, aid="D2")
    w.activity("P12", datetime(2026, 3, 9, 15, 5, tzinfo=UTC), 20, aid="D3", staff="S2")
    w.activity("P12", datetime(2026, 3, 10, 15, tzinfo=UTC), 200, aid="D4")
    w.activity("P12", datetime(2026, 3, 11, 15, tzinfo=UTC), 30, aid="D5", voided="wrong patient")
    w.activity("P12", datetime(1, 1, 1, tzinfo=UTC), 30, aid="D6")
    w.zones["P18"] = "America/Chicago"
    w.enrollments.append(Enrollment("P18", "RPM", date(2026, 3, 1), None, date(2026, 3, 1)))
    w.activity("P18", datetime(2026, 3, 9, 15, tzinfo=UTC), 25)
    w.activity("P05", datetime(2026, 3, 9, 15, tzinfo=UTC), 25)
    w.zones["P19"] = "America/Chicago"
    w.activity("P19", datetime(2026, 3, 9, 15, tzinfo=UTC), 25)
    # A second enrollment soon after the first (one episode, another practitioner), and one
    # after a long gap (a new episode).
    w.patient("P20", start=date(2026, 1, 5), end=date(2026, 2, 10), npi="1234567893")
    w.enrollments.append(
        Enrollment("P20", "RPM", date(2026, 2, 20), None, date(2026, 2, 20), "1245319599")
    )
    w.daily("P20", date(2026, 1, 6), 30).daily("P20", date(2026, 2, 20), 30)
    w.patient("P21", start=date(2025, 11, 5), end=date(2025, 12, 10))
    w.enrollments.append(Enrollment("P21", "RPM", date(2026, 3, 1), None, date(2026, 3, 1)))
    w.daily("P21", date(2025, 11, 6), 30).daily("P21", date(2026, 3, 3), 20)
    # RTM: self-reported days count; one open enrollment (the table) and one ended (the
    # episode path); a patient in RPM and RTM at once.
    w.patient("P22", program="RTM", start=date(2026, 2, 1), consent=date(2026, 2, 1))
    w.daily("P22", date(2026, 2, 2), 9, step=2)
    for day in range(9):
        w.reading(
            "D-P22",
            local(date(2026, 2, 3) + timedelta(days=2 * day), 9, 0, "America/Chicago"),
            manual=True,
        )
    w.patient("P23", program="RTM", start=date(2026, 1, 10), end=date(2026, 3, 20))
    w.daily("P23", date(2026, 1, 12), 40)
    w.patient("P24").enrollments.append(
        Enrollment("P24", "RTM", date(2026, 3, 15), None, date(2026, 3, 15))
    )
    w.daily("P24", date(2026, 3, 2), 30)
    return w


@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("as_of", [date(2026, 1, 10), date(2026, 3, 31), date(2026, 4, 25)])
def test_csv_rendering_is_byte_identical_to_the_records_rendering(
    rules: dict[str, object], as_of: date
) -> None:
    expected, got, counts = _both(_varied_world(), as_of, **rules)
    assert got == expected
    # The world is varied enough to exercise every status.
    if as_of == date(2026, 4, 25):
        assert all(counts.values())


def test_bulk_csv_of_an_empty_world_is_the_header() -> None:
    expected, got, _ = _both(World(), date(2026, 4, 1))
    assert got == expected == CSV_HEADER


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    patients=st.lists(
        st.tuples(
            st.sampled_from(["America/Chicago", "America/New_York", "Asia/Kolkata", "UTC"]),
            st.integers(0, 120),  # enrollment start, days after 2025-11-01
            st.lists(st.integers(0, 160), max_size=30),  # reading days after the start
            st.integers(0, 23),
            st.one_of(st.none(), st.integers(0, 100)),  # enrollment length
            st.integers(-10, 40),  # device assignment start, days after the enrollment start
            st.lists(st.integers(0, 160), max_size=5),  # days of manual / clock-suspect readings
            st.integers(0, 20),  # consent, days after the enrollment start
            st.sampled_from(["RPM", "RTM"]),
            st.one_of(st.none(), st.integers(-10, 45)),  # a second enrollment, days after
        ),
        max_size=6,
    ),
    as_of=st.integers(0, 180),
    dos=st.sampled_from(["period_end", "last_reading_day"]),
    mode=st.sampled_from(["rolling_30", "calendar_month"]),
    care=st.lists(
        st.tuples(
            st.integers(0, 6),  # the patient (P6: no enrollment, a zone only)
            st.integers(-40, 200 * 24 * 60),  # start, minutes after the base (or impossible)
            st.sampled_from(["5", "19.5", "20", "35", "40", "61", "121", "200"]),
            st.sampled_from(["plain", "voided", "duplicate", "overlap", "again", "talk", "sm"]),
        ),
        max_size=12,
    ),
)
def test_csv_and_records_renderings_agree_on_random_worlds(
    patients: list[
        tuple[str, int, list[int], int, int | None, int, list[int], int, str, int | None]
    ],
    as_of: int,
    dos: str,
    mode: str,
    care: list[tuple[int, int, str, str]],
) -> None:
    base = date(2025, 11, 1)
    w = World()
    for k, (
        zone,
        start,
        days,
        hour,
        length,
        assigned,
        flagged,
        consent,
        program,
        again,
    ) in enumerate(patients):
        pid = f"P{k}"
        first = base + timedelta(days=start)
        end = None if length is None else first + timedelta(days=length)
        consented = first + timedelta(days=consent)
        w.patient(pid, zone=zone, start=first, consent=consented, end=end, program=program)
        if again is not None:  # the first's end (or start) plus some days, another NPI
            second = max(first, (end or first) + timedelta(days=again))
            w.enrollments.append(Enrollment(pid, program, second, None, second, "1245319599"))
        # A second device, assigned from some day: readings before then are set aside.
        w.assign(f"E-{pid}", pid, first + timedelta(days=assigned))
        for d in days:
            w.daily(pid, first + timedelta(days=d), 1, hour=hour)
            w.reading(f"E-{pid}", local(first + timedelta(days=d + 1), hour, 0, zone))
        for i, d in enumerate(flagged):
            when = local(first + timedelta(days=d), hour, 30, zone)
            w.reading(f"D-{pid}", when, manual=i % 2 == 0, suspect=i % 2 == 1)
    _random_care_time(w, care, base)
    day = base + timedelta(days=as_of)
    expected, got, _ = _both(w, day, supply_date_of_service=dos, supply_period=mode)
    assert got == expected


def _random_care_time(w: World, care: list[tuple[int, int, str, str]], base: date) -> None:
    """RPM management time on a random world: voided, duplicated (another id, or the same id
    again), overlapping, over the one-entry limit, impossible, secure messages, in months
    blocked (no consent, no enrollment, no device) or pending, in the patients' zones."""
    w.zones.setdefault("P6", "Asia/Kolkata")
    t0 = datetime.combine(base, datetime.min.time(), UTC)
    last: dict[int, tuple[datetime, str, str]] = {}
    for n, (who, offset, minutes, how) in enumerate(care):
        pid, aid = f"P{who}", f"C{n:02d}"
        at = datetime(1, 1, 1, tzinfo=UTC) if offset < 0 else t0 + timedelta(minutes=offset)
        before = last.get(who)
        if before is not None and how == "duplicate":
            at, minutes = before[0], before[1]
        elif before is not None and how == "overlap":
            at = before[0] + timedelta(minutes=7)
        elif before is not None and how == "again":
            aid = before[2]
        w.activity(
            pid,
            at,
            minutes,
            interactive=how in ("talk", "sm", "overlap"),
            kind="secure_message" if how == "sm" else "phone_call",
            aid=aid,
            staff="S2" if how == "overlap" else "S1",
            voided="entered twice" if how == "voided" else None,
        )
        last[who] = (at, minutes, aid)


def test_compute_csv_equals_the_csv_of_compute_on_each_registry_database(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    for as_of in (date(2026, 3, 20), date(2026, 4, 5), date(2026, 6, 1)):
        expected = io.StringIO()
        write_csv(compute(settings.metrics, engine, as_of), expected)
        got = io.BytesIO()
        write_csv_pieces(compute_csv(settings.metrics, engine, as_of), got)
        assert got.getvalue().decode() == expected.getvalue()
        assert expected.getvalue().count("\n") > 3


@pytest.mark.parametrize("block", [1, 2, 5])
@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("as_of", [date(2026, 1, 10), date(2026, 3, 31), date(2026, 4, 25)])
def test_csv_rendered_a_few_patients_at_a_time_is_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, block: int, rules: dict[str, object], as_of: date
) -> None:
    """The CSV is made and written a block of patients at a time (each block renders its own
    rows of the table of periods): the bytes and counts are those of the records, whatever
    the block size, with episodes of several enrollments, RPM beside RTM and episodes
    without data falling on either side of a block's edge."""
    monkeypatch.setattr(csv_bulk, "BLOCK_PATIENTS", block)
    expected, got, _ = _both(_varied_world(), as_of, **rules)
    assert got == expected


def test_compute_csv_renders_its_rows_as_they_are_taken(
    monkeypatch: pytest.MonkeyPatch, seeded: tuple[Settings, Engine]
) -> None:
    """``rpmpipe metrics --format csv`` writes each block of patients as it is rendered: the
    pieces come one block at a time (not one text of the whole run), in order."""
    settings, engine = seeded
    as_of = date(2026, 4, 5)
    expected = io.StringIO()
    write_csv(compute(settings.metrics, engine, as_of), expected)
    monkeypatch.setattr(csv_bulk, "BLOCK_PATIENTS", 1)
    pieces = compute_csv(settings.metrics, engine, as_of)
    assert not isinstance(pieces, list)
    got = [bytes(p) for p in pieces]
    body = expected.getvalue().split("\n", 1)[1]
    assert b"".join(got).decode() == body
    patients = {line.split(",", 1)[0] for line in body.splitlines()}
    assert len(patients) > 1 and len([p for p in got if p]) >= len(patients)


def _every_program_registry(tmp_path: Path, database_url: str, seed: int) -> Settings:
    """A random registry of every program (RPM, RTM, CCM, PCM, BHI, APCM): second
    enrollments, care plans, QMB, diagnoses, and care time of every program and performer
    (overlapping, duplicated, voided, over the one-entry limit, 99091 data review), with
    Parquet readings for the supply programs."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import insert

    from rpmpipe.registry.db import open_registry
    from rpmpipe.registry.models import (
        CareActivity,
        CarePlan,
        Device,
        DeviceAssignment,
        Patient,
    )
    from rpmpipe.registry.models import Enrollment as EnrollmentRow

    rng = random.Random(seed)
    base = date(2025, 11, 1)
    t0 = datetime(2025, 11, 1, tzinfo=UTC)
    rows: dict[type, list[dict[str, object]]] = {
        m: [] for m in (Patient, Device, DeviceAssignment, EnrollmentRow, CarePlan, CareActivity)
    }
    readings: list[tuple[str, datetime, bool]] = []
    for i in range(80):
        pid = f"P{i:03d}"
        rows[Patient].append(
            {
                "patient_id": pid,
                "mrn": "M",
                "first_name": "A",
                "last_name": "B",
                "birth_date": date(1950, 1, 1),
                "sex": "F",
                "address1": "1 Main St",
                "city": "Springfield",
                "state": "IL",
                "zip": "62701",
                "payer_id": rng.choice(["MEDICARE", "OTHER"]),
                "payer_name": "MEDICARE PART B",
                "member_id": "1EG4TE5MK73",
                "icd10_codes": rng.choice(["I10", "I10;E11.9", "F32.9;I10", "I50.9", "M54.50"]),
                "timezone": rng.choice(["America/Chicago", "America/New_York", "UTC", ""]),
                "qmb": rng.choice([None, True, False]),
            }
        )
        programs = rng.sample(["RPM", "RTM", "CCM", "PCM", "BHI", "APCM"], rng.randint(1, 3))
        for program in programs:
            for start in {
                base + timedelta(days=rng.randint(0, 120)) for _ in range(rng.choice([1, 2]))
            }:
                rows[EnrollmentRow].append(
                    {
                        "patient_id": pid,
                        "program": program,
                        "start_date": start,
                        "end_date": rng.choice([None, start + timedelta(days=rng.randint(10, 90))]),
                        "consent_date": rng.choice([None, start, start + timedelta(days=7)]),
                        "ordering_npi": rng.choice(["1234567893", "1245319599"]),
                    }
                )
            if program in ("CCM", "PCM"):
                on = base + timedelta(days=rng.randint(0, 150))
                rows[CarePlan].append(
                    {
                        "patient_id": pid,
                        "program": program,
                        "established_on": on,
                        "revised_on": rng.choice([None, on + timedelta(days=40)]),
                        "shared_with_patient_on": rng.choice([None, on]),
                        "version_on": on,
                    }
                )
        rows[Device].append({"device_id": f"D-{i}", "kind": "bp_cuff", "model": "x"})
        # Some devices go on to another patient, far off in the id order (another block of
        # patients when a run is split): lent from day 60, or from day 59 while the first
        # patient keeps it through day 59 (the patients' zones differ, so a reading near
        # midnight falls in both loans: the later one takes it).
        lent = 60 if i % 7 == 3 else 59 if i % 11 == 5 else None
        rows[DeviceAssignment].append(
            {
                "device_id": f"D-{i}",
                "patient_id": pid,
                "start_date": base,
                "end_date": None if lent is None else base + timedelta(days=59),
            }
        )
        if lent is not None:
            # Readings of the hand-over night: 03:00 and 05:00 UTC fall on day 59 or 60 by
            # the patient's zone, so which loan takes each, and on which day, depends on both
            # patients' zones.
            for hour in (3, 5):
                readings.append((f"D-{i}", t0 + timedelta(days=60, hours=hour), False))
            rows[DeviceAssignment].append(
                {
                    "device_id": f"D-{i}",
                    "patient_id": f"P{(i + 40) % 80:03d}",
                    "start_date": base + timedelta(days=lent),
                    "end_date": None,
                }
            )
        for d in rng.sample(range(200), rng.randint(0, 60)):
            readings.append(
                (f"D-{i}", t0 + timedelta(days=d, hours=rng.randint(0, 23)), d % 9 == 0)
            )
        for k in range(rng.randint(0, 10)):
            at = t0 + timedelta(minutes=rng.randint(0, 200 * 24 * 60))
            if k and rng.random() < 0.2:  # overlapping the previous entry
                at = rows[CareActivity][-1]["started_at"] + timedelta(minutes=5)  # type: ignore[operator]
            rows[CareActivity].append(
                {
                    "activity_id": f"A{i}-{k}",
                    "patient_id": pid,
                    "staff_id": rng.choice(["S1", "S2"]),
                    "started_at": at,
                    "minutes": Decimal(rng.choice(["12", "19.9", "20", "35", "40", "61", "150"])),
                    "kind": rng.choice(["phone_call", "video_visit", "data_review"]),
                    "interactive": rng.random() < 0.7,
                    "program": rng.choice([*programs, "RPM"]),
                    "performer": rng.choice(["clinical_staff", "physician"]),
                    "voided_reason": "entered twice" if rng.random() < 0.05 else None,
                }
            )
    engine = open_registry(database_url)
    with engine.begin() as conn:
        for model, values in rows.items():
            if values:
                conn.execute(insert(model), values)
    engine.dispose()
    for day in sorted({at.date() for _, at, _ in readings}):
        mine = [r for r in readings if r[1].date() == day]
        part = tmp_path / "data" / "readings" / f"date={day.isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        n = len(mine)
        pq.write_table(
            pa.table(
                {
                    "device_id": [r[0] for r in mine],
                    "type": ["blood_pressure"] * n,
                    "measured_at": pa.array([r[1] for r in mine], pa.timestamp("us", tz="UTC")),
                    "received_at": pa.array([r[1] for r in mine], pa.timestamp("us", tz="UTC")),
                    "manual_entry": [r[2] for r in mine],
                    "clock_suspect": [False] * n,
                    "systolic_mmhg": [120.0] * n,
                    "diastolic_mmhg": [80.0] * n,
                    "pulse_bpm": [70.0] * n,
                    "source_format": ["native"] * n,
                }
            ),
            part / "part-0.parquet",
        )
    return load_settings(
        None,
        env={},
        overrides={"data_dir": str(tmp_path / "data"), "database_url": database_url},
    )


@pytest.mark.parametrize(("workers", "block_cap"), [(1, None), (3, None), (2, 4)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_renderings_agree_on_every_program_and_the_exclusions_between_them(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    seed: int,
    workers: int,
    block_cap: int | None,
) -> None:
    """The CSV of a run (the care-management table rendered as text, the exclusions between
    programs held in place) is the CSV of its records, on registries of every program; also
    when the run is counted in blocks of patients by worker processes, with devices lent
    across blocks, and in more blocks than workers (a block of at most ``block_cap``
    patients), each worker counting several one after the other."""
    from rpmpipe.registry.db import open_registry

    monkeypatch.setattr(blocks, "MIN_PATIENTS_TO_SPLIT", 1)
    if block_cap is not None:
        monkeypatch.setattr(blocks, "MAX_BLOCK_PATIENTS", block_cap)
    settings = _every_program_registry(tmp_path, database_url, seed)
    engine = open_registry(database_url)
    if block_cap is not None:  # the cap, not the workers, sets how many blocks there are
        assert len(blocks.fleet_blocks(engine, workers)) > workers
    kinds: set[tuple[str, str]] = set()
    for as_of in (date(2026, 1, 15), date(2026, 3, 31), date(2026, 6, 1)):
        records = compute(settings.metrics, engine, as_of)
        expected = io.StringIO()
        write_csv(records, expected)
        got = io.BytesIO()
        write_csv_pieces(compute_csv(settings.metrics, engine, as_of, workers=workers), got)
        assert got.getvalue().decode() == expected.getvalue()
        kinds.update((r.program, r.kind) for r in records)
        kinds.update(("held", r.program) for r in records if r.reason.startswith("held: "))
    engine.dispose()
    assert {("CCM", "treatment_management"), ("APCM", "treatment_management")} <= kinds
    assert any(k[0] == "held" for k in kinds)

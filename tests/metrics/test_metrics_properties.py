"""Properties of day counting (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from engagement_world import World, of_kind
from hypothesis import given, settings
from hypothesis import strategies as st

BASE = datetime(2026, 2, 25, tzinfo=UTC)
AS_OF = date(2026, 6, 1)

offsets = st.integers(min_value=0, max_value=95 * 24 * 60)  # minutes after BASE
zones = st.sampled_from(
    [
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "Pacific/Honolulu",
    ]
)


def _world(zone: str, minutes: list[int]) -> World:
    w = World().patient("P1", zone=zone)
    for m in minutes:
        w.reading("D-P1", BASE + timedelta(minutes=m))
    return w


def _days(w: World) -> set[date]:
    return {d for r in of_kind(w.compute(AS_OF), "device_supply") for d in r.evidence_dates}


@settings(max_examples=60, deadline=None)
@given(zone=zones, minutes=st.lists(offsets, max_size=40), extra=offsets)
def test_adding_a_reading_never_lowers_the_day_count(
    zone: str, minutes: list[int], extra: int
) -> None:
    before = _days(_world(zone, minutes))
    after = _days(_world(zone, [*minutes, extra]))
    assert before <= after
    assert len(after) - len(before) in (0, 1)


@settings(max_examples=60, deadline=None)
@given(
    zone=zones,
    minutes=st.lists(offsets, max_size=60),
    mode=st.sampled_from(["rolling_30", "calendar_month"]),
)
def test_days_never_exceed_the_period_length(zone: str, minutes: list[int], mode: str) -> None:
    w = _world(zone, minutes)
    supply = of_kind(w.compute(AS_OF, supply_period=mode), "device_supply")
    for r in supply:
        length = (r.period_end - r.period_start).days + 1
        assert r.transmission_days == len(r.evidence_dates) <= length
        assert all(r.period_start <= d <= r.period_end for d in r.evidence_dates)
        anchored = not r.reason.startswith("no qualifying readings")
        if mode == "rolling_30" and anchored:
            assert length == 30
    # Periods are back to back and never overlap.
    for a, b in zip(supply, supply[1:], strict=False):
        assert b.period_start == a.period_end + timedelta(days=1)


@settings(max_examples=80, deadline=None)
@given(
    zone=st.sampled_from(
        [
            "America/New_York",
            "America/St_Johns",
            "Asia/Kolkata",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Europe/London",
            "Pacific/Chatham",
            "America/Phoenix",
        ]
    ),
    micros=st.lists(
        st.integers(min_value=0, max_value=400 * 86400 * 10**6), min_size=1, max_size=50
    ),
)
def test_tabulated_local_dates_match_the_tz_database(zone: str, micros: list[int]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from rpmpipe.metrics.day_numbers import ZoneClock
    from rpmpipe.metrics.days import day_number

    first = day_number(date(2025, 10, 1))
    clock = ZoneClock(zone, first, first + 400)
    stamps = np.array([first * 86400 * 10**6 + m for m in micros], np.int64)
    exact = pc.cast(
        pc.cast(pc.local_timestamp(pa.array(stamps, pa.timestamp("us", tz=zone))), pa.date32()),
        pa.int32(),
    ).to_numpy()
    assert clock.local_days(stamps).tolist() == exact.tolist()


ZONE_MIX = ["America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Phoenix"]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(ZONE_MIX) - 1),
            st.integers(min_value=-3 * 86400 * 10**6, max_value=410 * 86400 * 10**6),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_stacked_zone_clocks_match_each_zone_clock(rows: list[tuple[int, int]]) -> None:
    import numpy as np

    from rpmpipe.metrics.day_numbers import ZoneClock, ZoneClocks
    from rpmpipe.metrics.days import day_number

    first = day_number(date(2025, 10, 1))
    clocks = [ZoneClock(z, first, first + 400) for z in ZONE_MIX]
    zone = np.array([z for z, _ in rows], np.int64)
    stamps = np.array([first * 86400 * 10**6 + m for _, m in rows], np.int64)
    expected = [int(clocks[z].local_days(stamps[i : i + 1])[0]) for i, z in enumerate(zone)]
    assert ZoneClocks(clocks).local_days(stamps, zone).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(ZONE_MIX) - 1),
            st.integers(min_value=-800 * 86400 * 10**6, max_value=800 * 86400 * 10**6),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_local_days_of_patients_match_the_tz_database(rows: list[tuple[int, int]]) -> None:
    """The one conversion of instants to patient-local days (care time, RPM's months and
    the readings all use it) gives Arrow's tz database's local date, over any span."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from rpmpipe.metrics.day_numbers import local_days
    from rpmpipe.metrics.days import day_number

    first = day_number(date(2026, 3, 8))
    patient_zones = [*ZONE_MIX, ZONE_MIX[0]]  # two patients in one zone
    patient = np.array([z if z else len(ZONE_MIX) for z, _ in rows], np.int64)
    stamps = np.array([first * 86400 * 10**6 + m for _, m in rows], np.int64)
    exact = [
        pc.cast(
            pc.cast(
                pc.local_timestamp(pa.array([int(s)], pa.timestamp("us", tz=patient_zones[p]))),
                pa.date32(),
            ),
            pa.int32(),
        ).to_pylist()[0]
        for s, p in zip(stamps.tolist(), patient.tolist(), strict=True)
    ]
    assert local_days(stamps, patient, patient_zones).tolist() == exact

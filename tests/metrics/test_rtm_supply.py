"""RTM device supply and setup from days with data, self-reported data included (RPM's never):
98977 / 98985 (musculoskeletal by default) per 30-day period and 98975 once per episode."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from engagement_world import World, codes, local, of_kind

ZONE = "America/Chicago"
START = date(2026, 3, 1)


def _world(program: str, device_days: int, manual_days: int) -> World:
    """Readings on the first ``device_days`` days from the device, then ``manual_days`` days
    entered manually from it."""
    w = World().patient("P1", program=program, start=START, consent=START)
    for i in range(device_days + manual_days):
        when = local(START + timedelta(days=i), 9, 0, ZONE)
        w.reading("D-P1", when, manual=i >= device_days)
    return w


@pytest.mark.parametrize(
    ("device_days", "manual_days", "rtm_code", "rpm_code"),
    [
        (6, 10, "98977", "99445"),  # 16 days with the self-reported ones
        (10, 5, "98985", "99445"),  # 15: the short code
        (0, 16, "98977", None),  # self-reported only
        (1, 0, None, None),
    ],
)
def test_rtm_counts_self_reported_days_and_rpm_does_not(
    device_days: int, manual_days: int, rtm_code: str | None, rpm_code: str | None
) -> None:
    as_of = START + timedelta(days=31)
    for program, code in (("RTM", rtm_code), ("RPM", rpm_code)):
        records = _world(program, device_days, manual_days).compute(as_of)
        assert {r.program for r in records} == {program}
        (supply,) = [r for r in of_kind(records, "device_supply") if r.period_start == START]
        counted = device_days + manual_days if program == "RTM" else device_days
        assert supply.transmission_days == counted
        assert codes(supply) == ([(code, 1)] if code else [])
        setup_code = "98975" if program == "RTM" else "99453"
        setups = [codes(r) for r in of_kind(records, "setup")]
        # An episode without a day with data has its one record and no setup row.
        assert setups == ([[(setup_code, 1)] if code else []] if counted else [])


def test_rtm_reasons_name_the_rtm_codes() -> None:
    records = _world("RTM", 10, 5).compute(START + timedelta(days=31))
    (supply,) = [r for r in of_kind(records, "device_supply") if r.period_start == START]
    assert supply.reason == "15 days with data, 16 needed for 98977 (billed 98985)"
    pending = _world("RTM", 3, 0).compute(START + timedelta(days=10))
    assert "16 needed for 98977" in of_kind(pending, "device_supply")[0].reason


def test_rtm_self_reported_days_are_no_reason_but_clock_errors_are() -> None:
    for program, days, manual_said in (("RTM", 1, False), ("RPM", 0, True)):
        w = _world(program, 0, 1)
        w.reading("D-P1", local(START + timedelta(days=8), 9, 0, ZONE), suspect=True)
        supply = of_kind(w.compute(START + timedelta(days=31)), "device_supply")[0]
        assert supply.transmission_days == days
        assert supply.lines == ()
        assert ("entered manually" in supply.reason) is manual_said
        assert "clock error" in supply.reason


def test_rtm_modality_setting_picks_the_supply_codes() -> None:
    records = _world("RTM", 20, 0).compute(START + timedelta(days=31), rtm_modality="respiratory")
    assert codes(of_kind(records, "device_supply")[0]) == [("98976", 1)]


def test_rtm_in_2025_needs_16_days_for_supply_and_setup() -> None:
    start = date(2025, 10, 1)
    w = World().patient("P1", program="RTM", start=start, consent=start)
    for i in range(15):
        w.reading("D-P1", local(start + timedelta(days=i), 9, 0, ZONE), manual=i % 2 == 0)
    records = w.compute(start + timedelta(days=31))
    (supply,) = [r for r in of_kind(records, "device_supply") if r.period_start == start]
    assert supply.lines == () and supply.reason == "15 days with data, 16 needed for 98977"
    assert of_kind(records, "setup")[0].lines == ()


def test_an_ended_rtm_enrollment_bills_through_its_end() -> None:
    w = World().patient(
        "P1", program="RTM", start=START, consent=START, end=START + timedelta(days=20)
    )
    for i in range(18):
        w.reading("D-P1", local(START + timedelta(days=i), 9, 0, ZONE), manual=True)
    records = w.compute(START + timedelta(days=40))
    (supply,) = of_kind(records, "device_supply")
    assert codes(supply) == [("98977", 1)]
    assert supply.lines[0].date_of_service == START + timedelta(days=20)
    assert codes(of_kind(records, "setup")[0]) == [("98975", 1)]

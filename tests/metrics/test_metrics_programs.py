"""Programs as data: every program's codes by year, at the threshold edges, with exclusions
and eligibility (pure; tables of cases)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from rpmpipe.metrics.care_table import program_months
from rpmpipe.metrics.care_time import TimeEntry, counted_minutes
from rpmpipe.metrics.conflicts import Claim, held_reasons
from rpmpipe.metrics.programs import (
    RULE_SETS,
    CareMinutes,
    CarePlanVersion,
    ProgramRules,
    care_plan_state,
    chronic_conditions,
    has_behavioral_diagnosis,
    interpretation_line,
    monthly_level,
    program_rules_for,
    supply_line_code,
    time_lines,
)
from rpmpipe.metrics.reasons import eligibility_reason, time_reason

D25 = date(2025, 6, 30)
D26 = date(2026, 6, 30)
CAPS = {"max_99458_units": 2, "max_99439_units": 2}


def rules(program: str, day: date) -> ProgramRules:
    rs = program_rules_for(program, day)
    assert rs is not None
    return rs


def billed(lines: tuple[object, ...]) -> list[tuple[str, int]]:
    return [(line.code, line.units) for line in lines]  # type: ignore[attr-defined]


def staff(m: str) -> CareMinutes:
    return CareMinutes(clinical_staff=Decimal(m))


def doctor(m: str) -> CareMinutes:
    return CareMinutes(physician=Decimal(m))


# (program, day, minutes, interactive, care plan changed, expected lines)
TIME_CASES = [
    # CCM, both years: staff track 20 / +20 (cap 2), physician 30 / +30, complex 60 / +30
    *[
        case
        for day in (D25, D26)
        for case in (
            ("CCM", day, staff("19.9"), 0, False, []),
            ("CCM", day, staff("20"), 0, False, [("99490", 1)]),
            ("CCM", day, staff("39.9"), 0, False, [("99490", 1)]),
            ("CCM", day, staff("40"), 0, False, [("99490", 1), ("99439", 1)]),
            ("CCM", day, staff("60"), 0, False, [("99490", 1), ("99439", 2)]),
            ("CCM", day, staff("95"), 0, False, [("99490", 1), ("99439", 2)]),
            ("CCM", day, doctor("29.9"), 0, False, [("99490", 1)]),
            ("CCM", day, doctor("30"), 0, False, [("99491", 1)]),
            ("CCM", day, doctor("59.9"), 0, False, [("99491", 1)]),
            ("CCM", day, doctor("60"), 0, False, [("99491", 1), ("99437", 1)]),
            ("CCM", day, staff("59.9"), 0, True, [("99490", 1), ("99439", 1)]),
            ("CCM", day, staff("60"), 0, True, [("99487", 1)]),
            ("CCM", day, staff("89.9"), 0, True, [("99487", 1)]),
            ("CCM", day, staff("90"), 0, True, [("99487", 1), ("99489", 1)]),
            ("PCM", day, staff("29.9"), 0, False, []),
            ("PCM", day, staff("30"), 0, False, [("99426", 1)]),
            ("PCM", day, staff("60"), 0, False, [("99426", 1), ("99427", 1)]),
            ("PCM", day, doctor("30"), 0, False, [("99424", 1)]),
            ("PCM", day, doctor("60"), 0, False, [("99424", 1), ("99425", 1)]),
            ("BHI", day, staff("19.9"), 0, False, []),
            ("BHI", day, staff("20"), 0, False, [("99484", 1)]),
            ("BHI", day, staff("60"), 0, False, [("99484", 1)]),
            ("RTM", day, staff("40"), 0, False, []),  # no interactive communication
            ("RTM", day, staff("20"), 1, False, [("98980", 1)]),
            ("RTM", day, staff("39.9"), 1, False, [("98980", 1)]),
            ("RTM", day, staff("40"), 1, False, [("98980", 1), ("98981", 1)]),
            ("RPM", day, staff("20"), 1, False, [("99457", 1)]),
            ("RPM", day, staff("40"), 1, False, [("99457", 1), ("99458", 1)]),
            ("RPM", day, staff("60"), 1, False, [("99457", 1), ("99458", 2)]),
            ("RPM", day, staff("100"), 1, False, [("99457", 1), ("99458", 2)]),
        )
    ],
    # 10-19 minute codes exist from 2026 only
    ("RTM", D25, staff("19.9"), 1, False, []),
    ("RTM", D26, staff("9.9"), 1, False, []),
    ("RTM", D26, staff("10"), 1, False, [("98979", 1)]),
    ("RTM", D26, staff("19.9"), 1, False, [("98979", 1)]),
    ("RPM", D25, staff("19.9"), 1, False, []),
    ("RPM", D26, staff("19.9"), 1, False, [("99470", 1)]),
]


@pytest.mark.parametrize(("program", "day", "minutes", "talks", "changed", "expected"), TIME_CASES)
def test_time_codes_by_program_year_and_minutes(
    program: str,
    day: date,
    minutes: CareMinutes,
    talks: int,
    changed: bool,
    expected: list[tuple[str, int]],
) -> None:
    rs = rules(program, day)
    outcome = time_lines(rs, minutes, talks, changed, day, CAPS)
    assert billed(outcome.lines) == expected
    assert outcome.minutes_used <= minutes.total
    assert all(line.date_of_service == day for line in outcome.lines)


def test_99439_cap_is_a_setting() -> None:
    rs = rules("CCM", D26)
    capped = time_lines(rs, staff("100"), 0, False, D26, {"max_99439_units": 3})
    assert billed(capped.lines) == [("99490", 1), ("99439", 3)]
    none = time_lines(rs, staff("100"), 0, False, D26, {"max_99439_units": 0})
    assert billed(none.lines) == [("99490", 1)]


@pytest.mark.parametrize(
    ("day", "modality", "days", "code"),
    [
        (D25, "musculoskeletal", 2, None),
        (D25, "musculoskeletal", 15, None),
        (D25, "musculoskeletal", 16, "98977"),
        (D26, "musculoskeletal", 1, None),
        (D26, "musculoskeletal", 2, "98985"),
        (D26, "musculoskeletal", 15, "98985"),
        (D26, "musculoskeletal", 16, "98977"),
        (D26, "respiratory", 15, "98984"),
        (D26, "respiratory", 16, "98976"),
        (D26, "cognitive_behavioral", 15, "98986"),
        (D26, "cognitive_behavioral", 30, "98978"),
    ],
)
def test_rtm_supply_codes_by_year_modality_and_days(
    day: date, modality: str, days: int, code: str | None
) -> None:
    assert supply_line_code(rules("RTM", day), modality, days) == code


@pytest.mark.parametrize(
    ("day", "days", "code"),
    [(D25, 15, None), (D25, 16, "99454"), (D26, 1, None), (D26, 2, "99445"), (D26, 15, "99445")]
    + [(D26, 16, "99454"), (D26, 30, "99454")],
)
def test_rpm_supply_codes_come_from_the_rpm_rule_sets(
    day: date, days: int, code: str | None
) -> None:
    assert supply_line_code(rules("RPM", day), "physiologic", days) == code


def test_rtm_counts_self_reported_data_and_rpm_does_not() -> None:
    assert rules("RTM", D26).counts_self_reported
    assert not rules("RPM", D26).counts_self_reported


@pytest.mark.parametrize(
    ("minutes", "expected"), [("29.9", []), ("30", [("99091", 1)]), ("75", [("99091", 1)])]
)
def test_99091_needs_30_physician_minutes_per_period(minutes: str, expected: list[object]) -> None:
    outcome = interpretation_line(rules("RPM", D26), Decimal(minutes), D26)
    assert billed(outcome.lines) == expected


@pytest.mark.parametrize(
    ("chronic", "qmb", "code"),
    [(0, None, "G0556"), (1, True, "G0556"), (2, None, "G0557"), (2, False, "G0557")]
    + [(2, True, "G0558"), (5, True, "G0558")],
)
def test_apcm_level_by_chronic_conditions_and_qmb(
    chronic: int, qmb: bool | None, code: str
) -> None:
    for day in (date(2025, 1, 31), D26):
        assert monthly_level(rules("APCM", day), chronic, qmb) == code


def test_apcm_has_no_rule_set_before_2025() -> None:
    assert program_rules_for("APCM", date(2024, 12, 31)) is None
    assert program_rules_for("APCM", date(2025, 1, 1)) is not None


@pytest.mark.parametrize(
    ("program", "day", "name"),
    [(p, date(2025, 12, 31), "CY2025") for p in ("RPM", "RTM", "CCM", "PCM", "BHI", "APCM")]
    + [(p, date(2026, 1, 1), "CY2026") for p in ("RPM", "RTM", "CCM", "PCM", "BHI", "APCM")],
)
def test_rule_set_is_chosen_by_date_of_service(program: str, day: date, name: str) -> None:
    assert rules(program, day).name == name


def test_rule_sets_of_a_program_never_overlap_in_time() -> None:
    by_program: dict[str, list[ProgramRules]] = {}
    for rs in RULE_SETS:
        by_program.setdefault(rs.program, []).append(rs)
    for sets in by_program.values():
        sets.sort(key=lambda r: r.effective_from)
        for a, b in zip(sets, sets[1:], strict=False):
            assert a.effective_to < b.effective_from


def test_chronic_conditions_count_distinct_categories_outside_symptom_and_factor_chapters() -> None:
    codes = ["I10", "E11.9", "E1165", "Z79.4", "R51.9", "S52.5"]
    assert chronic_conditions(codes, "RSTVWXYZ") == 2  # I10 and E11
    assert chronic_conditions(codes, "") == 5


PLAN = CarePlanVersion(date(2026, 3, 10), None, date(2026, 3, 12))


@pytest.mark.parametrize(
    ("program", "icd10", "plans", "month", "why"),
    [
        ("CCM", ["I10", "E11.9"], [PLAN], date(2026, 3, 1), None),
        ("CCM", ["I10"], [PLAN], date(2026, 3, 1), "1 chronic condition(s) on file, CCM needs 2"),
        ("CCM", ["I10", "E11.9"], [], date(2026, 3, 1), "no CCM care plan"),
        ("CCM", ["I10", "E11.9"], [PLAN], date(2026, 2, 1), "no CCM care plan"),
        (
            "CCM",
            ["I10", "E11.9"],
            [CarePlanVersion(date(2026, 3, 10))],
            date(2026, 3, 1),
            "no CCM care plan",  # never shared with the patient
        ),
        ("PCM", ["I50.9"], [PLAN], date(2026, 4, 1), None),
        ("PCM", ["Z79.4"], [PLAN], date(2026, 4, 1), "0 chronic condition(s) on file, PCM needs 1"),
        ("BHI", ["F32.9"], [], date(2026, 4, 1), None),
        ("BHI", ["I10"], [], date(2026, 4, 1), "no behavioral health diagnosis"),
    ],
)
def test_eligibility_by_program(
    program: str, icd10: list[str], plans: list[CarePlanVersion], month: date, why: str | None
) -> None:
    end = date(month.year, month.month, 28)
    state = care_plan_state(plans, month, end)
    reason = eligibility_reason(
        rules(program, month),
        chronic_conditions(icd10, "RSTVWXYZ"),
        has_behavioral_diagnosis(icd10),
        state,
    )
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


def test_care_plan_change_is_the_month_it_was_established_or_revised() -> None:
    revised = [PLAN, CarePlanVersion(date(2026, 3, 10), date(2026, 5, 2), date(2026, 5, 2))]
    assert care_plan_state(revised, date(2026, 3, 1), date(2026, 3, 31)).changed_this_month
    assert not care_plan_state(revised, date(2026, 4, 1), date(2026, 4, 30)).changed_this_month
    assert care_plan_state(revised, date(2026, 5, 1), date(2026, 5, 31)).changed_this_month


def test_reason_says_what_was_billed_or_what_is_missing() -> None:
    rs = rules("CCM", D26)
    none = time_lines(rs, staff("19.9"), 0, False, D26, CAPS)
    text = time_reason(rs, staff("19.9"), 0, none)
    assert text.startswith("19.9 minutes of CCM time, ")
    assert "20 minutes for 99490" in text and "30 physician/QHP minutes for 99491" in text
    some = time_lines(rs, staff("45"), 0, False, D26, CAPS)
    assert time_reason(rs, staff("45"), 0, some) == "45 minutes of CCM time (billed 99490 + 99439)"
    rtm = rules("RTM", D26)
    assert "no interactive communication" in time_reason(
        rtm, staff("30"), 0, time_lines(rtm, staff("30"), 0, False, D26, CAPS)
    )


# --- between programs ----------------------------------------------------------------------


def claim(
    program: str,
    start: str,
    end: str,
    codes: set[str],
    npi: str = "1",
    enrolled: str = "2026-01-01",
) -> Claim:
    return Claim(
        program,
        date.fromisoformat(start),
        date.fromisoformat(end),
        npi,
        date.fromisoformat(enrolled),
        frozenset(codes),
    )


def test_rpm_and_rtm_in_overlapping_periods_hold_the_later_enrollment() -> None:
    rpm = claim("RPM", "2026-03-01", "2026-03-30", {"99454"}, enrolled="2026-03-01")
    rtm = claim("RTM", "2026-03-20", "2026-04-18", {"98977"}, enrolled="2026-03-20")
    held = held_reasons([rpm, rtm], allow_99091_with_99457=False)
    assert list(held) == [1]
    assert "RPM and RTM are never billed for one patient for overlapping periods" in held[1]
    assert "RTM (enrolled 2026-03-20) is held" in held[1]
    later = claim("RTM", "2026-03-31", "2026-04-29", {"98977"}, enrolled="2026-03-20")
    assert held_reasons([rpm, later], allow_99091_with_99457=False) == {}


def test_pcm_and_ccm_by_one_practitioner_in_a_month_hold_the_later_enrollment() -> None:
    ccm = claim("CCM", "2026-03-01", "2026-03-31", {"99490"}, enrolled="2026-01-01")
    pcm = claim("PCM", "2026-03-01", "2026-03-31", {"99426"}, enrolled="2026-02-01")
    assert list(held_reasons([ccm, pcm], False)) == [1]
    other = claim("PCM", "2026-03-01", "2026-03-31", {"99426"}, npi="2", enrolled="2026-02-01")
    assert held_reasons([ccm, other], False) == {}


def test_apcm_bundles_ccm_and_pcm_of_the_same_practitioner() -> None:
    apcm = claim("APCM", "2026-03-01", "2026-03-31", {"G0557"})
    ccm = claim("CCM", "2026-03-01", "2026-03-31", {"99490"})
    pcm = claim("PCM", "2026-03-01", "2026-03-31", {"99426"}, npi="2")
    held = held_reasons([apcm, ccm, pcm], False)
    assert list(held) == [1]
    assert "bundled into APCM G0557" in held[1]
    april = claim("CCM", "2026-04-01", "2026-04-30", {"99490"})
    assert held_reasons([apcm, april], False) == {}


def test_99091_with_99457_is_held_unless_the_payer_allows_it() -> None:
    mgmt = claim("RPM", "2026-03-01", "2026-03-31", {"99457"})
    interp = claim("RPM", "2026-03-10", "2026-04-08", {"99091"})
    assert list(held_reasons([mgmt, interp], allow_99091_with_99457=False)) == [1]
    assert held_reasons([mgmt, interp], allow_99091_with_99457=True) == {}


def test_lines_without_codes_hold_nothing() -> None:
    rpm = claim("RPM", "2026-03-01", "2026-03-30", set(), enrolled="2026-03-01")
    rtm = claim("RTM", "2026-03-20", "2026-04-18", {"98977"}, enrolled="2026-03-20")
    assert held_reasons([rpm, rtm], False) == {}


# --- care time ------------------------------------------------------------------------------


def entry(
    aid: str,
    start: str,
    minutes: str,
    program: str = "CCM",
    performer: str = "clinical_staff",
    kind: str = "phone_call",
) -> TimeEntry:
    return TimeEntry(
        aid, "P1", program, performer, kind, datetime.fromisoformat(start), Decimal(minutes), True
    )


def test_month_is_the_patients_local_month_of_the_start() -> None:
    # 04:30 UTC on Feb 1 is 23:30 on Jan 31 in New York.
    items = [
        entry("A", "2026-02-01T04:30:00+00:00", "20"),
        entry("B", "2026-02-01T05:30:00+00:00", "20"),
    ]
    months = program_months(items, lambda _: "America/New_York")
    assert set(months) == {("P1", "CCM", date(2026, 1, 1)), ("P1", "CCM", date(2026, 2, 1))}


def test_overlapping_time_of_two_programs_counts_once_for_the_earlier_entry() -> None:
    items = [
        entry("RPM-1", "2026-03-02T10:10:00+00:00", "20", program="RPM"),
        entry("CCM-1", "2026-03-02T10:00:00+00:00", "20"),
        entry("CCM-2", "2026-03-02T10:05:00+00:00", "5"),  # inside CCM-1
    ]
    counted = counted_minutes(items)
    assert counted == {"CCM-1": Decimal(20), "CCM-2": Decimal(0), "RPM-1": Decimal(10)}
    months = program_months(items, lambda _: "UTC")
    assert months[("P1", "CCM", date(2026, 3, 1))].minutes.total == 20
    assert months[("P1", "RPM", date(2026, 3, 1))].minutes.total == 10


def test_physician_data_review_of_rpm_is_interpretation_time_not_management_time() -> None:
    items = [
        entry("I-1", "2026-03-02T10:00:00+00:00", "30", "RPM", "physician", "data_review"),
        entry("M-1", "2026-03-03T10:00:00+00:00", "20", "RPM", "clinical_staff", "phone_call"),
    ]
    months = program_months(items, lambda _: "UTC")
    assert months[("P1", "RPM", date(2026, 3, 1))].activity_ids == ["M-1"]

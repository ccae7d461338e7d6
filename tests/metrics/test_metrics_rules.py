"""Routing tables of the CY2025 and CY2026 RPM rule sets."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from rpmpipe.metrics.rules import (
    RPM_CY2025,
    RPM_CY2026,
    check_exclusive,
    management_lines,
    rule_set_for,
    supply_code,
)
from rpmpipe.records import ServiceLine

DOS_2025 = date(2025, 6, 30)
DOS_2026 = date(2026, 6, 30)


@pytest.mark.parametrize(
    ("day", "name"),
    [(date(2025, 12, 31), "CY2025"), (date(2026, 1, 1), "CY2026"), (date(2024, 5, 1), "CY2025")],
)
def test_rule_set_is_chosen_by_date_of_service(day: date, name: str) -> None:
    assert rule_set_for("RPM", day).name == name


def test_unknown_program_has_no_rule_set() -> None:
    with pytest.raises(LookupError):
        rule_set_for("RTM", DOS_2026)


@pytest.mark.parametrize(
    ("days", "cy2026", "cy2025"),
    [
        (0, None, None),
        (1, None, None),
        (2, "99445", None),
        (15, "99445", None),
        (16, "99454", "99454"),
        (30, "99454", "99454"),
    ],
)
def test_supply_code_by_days(days: int, cy2026: str | None, cy2025: str | None) -> None:
    assert supply_code(RPM_CY2026, days) == cy2026
    assert supply_code(RPM_CY2025, days) == cy2025


@pytest.mark.parametrize(
    ("minutes", "cy2026", "cy2025"),
    [
        ("0", [], []),
        ("9", [], []),
        ("9.99", [], []),
        ("10", [("99470", 1)], []),
        ("19", [("99470", 1)], []),
        ("19.99", [("99470", 1)], []),
        ("20", [("99457", 1)], [("99457", 1)]),
        ("39", [("99457", 1)], [("99457", 1)]),
        ("39.99", [("99457", 1)], [("99457", 1)]),
        ("40", [("99457", 1), ("99458", 1)], [("99457", 1), ("99458", 1)]),
        ("59", [("99457", 1), ("99458", 1)], [("99457", 1), ("99458", 1)]),
        ("60", [("99457", 1), ("99458", 2)], [("99457", 1), ("99458", 2)]),
        ("95", [("99457", 1), ("99458", 2)], [("99457", 1), ("99458", 2)]),
    ],
)
def test_management_lines_by_minutes_without_rounding_up(
    minutes: str, cy2026: list[tuple[str, int]], cy2025: list[tuple[str, int]]
) -> None:
    got26 = management_lines(RPM_CY2026, Decimal(minutes), 1, DOS_2026, 2)
    got25 = management_lines(RPM_CY2025, Decimal(minutes), 1, DOS_2025, 2)
    assert [(x.code, x.units) for x in got26] == cy2026
    assert [(x.code, x.units) for x in got25] == cy2025
    assert all(x.date_of_service == DOS_2026 for x in got26)


@pytest.mark.parametrize(("cap", "units"), [(0, 0), (1, 1), (2, 2), (3, 3), (5, 4)])
def test_99458_units_are_capped_by_the_setting(cap: int, units: int) -> None:
    lines = management_lines(RPM_CY2026, Decimal(100), 1, DOS_2026, cap)
    got = {x.code: x.units for x in lines}
    assert got.get("99458", 0) == units
    assert got["99457"] == 1


def test_no_management_code_without_an_interactive_communication() -> None:
    assert management_lines(RPM_CY2026, Decimal(45), 0, DOS_2026, 2) == ()


@pytest.mark.parametrize(
    "codes",
    [("99445", "99454"), ("99470", "99457"), ("99458",)],
)
def test_exclusive_codes_are_refused_together(codes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="never billed together|billed only with"):
        check_exclusive(RPM_CY2026, [ServiceLine(c, 1, DOS_2026) for c in codes])

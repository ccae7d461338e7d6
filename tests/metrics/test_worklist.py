"""The at-risk worklist: rows from the open period's forecast and the open month, in order
of urgency; the terminal, CSV and JSON forms."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.metrics.job import compute
from rpmpipe.metrics.worklist import (
    Urgency,
    build_worklist,
    render_worklist,
    row_to_dict,
    write_worklist_csv,
)
from rpmpipe.records import EngagementRecord
from rpmpipe.settings import Settings

AS_OF = date(2026, 11, 20)


def _period(
    pid: str, start: date, days: int, left: int, at_risk: bool, reach: bool | None = None
) -> EngagementRecord:
    dates = tuple(start + timedelta(days=i) for i in range(days))
    return EngagementRecord(
        patient_id=pid,
        program="RPM",
        kind="device_supply",
        period_start=start,
        period_end=start + timedelta(days=29),
        status="pending",
        reason="open",
        rule_set="CY2026",
        transmission_days=days,
        evidence_dates=dates,
        forecast={
            "days_so_far": days,
            "days_still_possible": left,
            "can_reach_16": days + left >= 16 if reach is None else reach,
            "at_risk": at_risk,
        },
    )


def _month(pid: str, minutes: str, contacts: int) -> EngagementRecord:
    return EngagementRecord(
        patient_id=pid,
        program="RPM",
        kind="treatment_management",
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        status="pending",
        reason="open",
        rule_set="CY2026",
        management_minutes=Decimal(minutes),
        interactive_communications=contacts,
    )


def _no_data(pid: str) -> EngagementRecord:
    return EngagementRecord(
        patient_id=pid,
        program="RPM",
        kind="device_supply",
        period_start=date(2026, 11, 1),
        period_end=AS_OF,
        status="pending",
        reason="no qualifying readings since the enrollment start 2026-11-01",
        rule_set="CY2026",
    )


def test_behind_pace_comes_first_then_no_data_then_short_code_only_then_on_pace() -> None:
    start = date(2026, 11, 1)
    records = [
        _period("on-pace", start, 15, 10, at_risk=False),
        _period("short-only", start, 1, 10, at_risk=True),  # 11 < 16, 2 still reachable
        _no_data("never"),
        _period("behind-2-spare", start, 6, 12, at_risk=True),  # 18 possible: 2 to spare
        _period("behind-0-spare", start, 4, 12, at_risk=True),  # exactly 16 possible
        _period("reached", start, 16, 10, at_risk=False),
    ]
    rows = build_worklist(records, AS_OF)
    assert [r.patient_id for r in rows] == [
        "behind-0-spare",
        "behind-2-spare",
        "never",
        "short-only",
        "on-pace",
        "reached",
    ]
    assert [r.urgency for r in rows][:4] == [
        Urgency.CALL_TODAY,
        Urgency.CALL_TODAY,
        Urgency.NO_DATA,
        Urgency.SHORT_CODE_ONLY,
    ]
    assert [r.at_risk for r in rows] == [True, True, True, True, False, False]
    assert rows[0].slack == 0 and rows[1].slack == 2


def test_row_figures_are_the_open_period_forecast_and_the_open_month() -> None:
    earlier = _period("p1", date(2026, 9, 22), 20, 0, at_risk=False)
    earlier = EngagementRecord(
        **{**{f: getattr(earlier, f) for f in earlier.__slots__}, "status": "billable"}  # type: ignore[attr-defined]
    )
    records = [
        earlier,
        _period("p1", date(2026, 10, 22), 3, 1, at_risk=True),
        _month("p1", "19.5", 1),
    ]
    (row,) = build_worklist(records, AS_OF)
    assert (row.days_so_far, row.days_left, row.can_reach_full, row.can_reach_short) == (
        3,
        1,
        False,
        True,
    )
    assert row.urgency is Urgency.NOTHING_MORE  # 4 days at most: 99445 is earned already
    assert row.last_day_with_data == date(2026, 10, 24)
    assert row.days_since_data == 27
    assert row.minutes_so_far == Decimal("19.5") and row.interactive_contact
    assert row_to_dict(row)["minutes_so_far"] == 19.5


def test_a_patient_with_only_an_open_month_is_listed_with_its_minutes() -> None:
    (row,) = build_worklist([_month("p9", "12", 0)], AS_OF)
    assert row.urgency is Urgency.NO_OPEN_PERIOD
    assert row.minutes_so_far == 12 and not row.interactive_contact
    assert row.period_start is None and row.days_since_data is None


def test_worklist_csv_neutralises_formula_cells_and_says_yes_or_no() -> None:
    records = [_period("=HYPERLINK(1)", date(2026, 11, 1), 4, 12, at_risk=True)]
    out = io.StringIO()
    write_worklist_csv(build_worklist(records, AS_OF), out)
    header, line = out.getvalue().splitlines()
    assert header.startswith("patient_id,program,urgency,at_risk,")
    assert line.startswith("'=HYPERLINK(1),RPM,call today")
    assert ",yes,2026-11-01,2026-11-30,4,12,yes,yes," in line


def test_terminal_table_has_a_row_per_patient_under_the_header() -> None:
    rows = build_worklist([_no_data("p2"), _period("p3", date(2026, 11, 1), 2, 9, True)], AS_OF)
    text = render_worklist(rows).splitlines()
    assert text[0].split()[:4] == ["patient", "period", "days", "left"]
    assert text[1].startswith("p2") and "never" in text[1] and "no readings yet" in text[1]
    assert text[2].startswith("p3")


def test_metrics_at_risk_prints_the_worklist_of_the_records(
    seeded: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = seeded
    as_of = date(2026, 3, 20)  # P1's first period (from 2026-03-01) and March are open
    expected = [
        row_to_dict(r) for r in build_worklist(compute(settings.metrics, engine, as_of), as_of)
    ]
    assert expected, "the seed patients have open periods"
    base = [
        "--data-dir",
        str(settings.data_dir),
        "--database-url",
        settings.effective_database_url,
        "--log-level",
        "ERROR",
        "metrics",
        "--as-of",
        as_of.isoformat(),
        "--at-risk",
    ]
    shown = CliRunner().invoke(app, [*base, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == expected
    table = CliRunner().invoke(app, base)
    assert table.exit_code == 0, table.output
    risky = [r for r in expected if r["at_risk"]]
    assert f"{len(risky)} of {len(expected)} open periods at risk as of 2026-03-20" in table.stdout
    for row in risky:
        assert row["patient_id"] in table.stdout

"""Late data never bills a service twice: 99453 once per episode, whatever moved the periods,
and an exported period that stops existing gets a void correction (issue 10, points 3 and 9)."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from export_registry import (
    AS_OF,
    CLOCK,
    NOV_END,
    NOV_START,
    add_patient,
    export_settings,
    put_record,
)
from sqlalchemy import Engine, delete, insert, select

from rpmpipe.billing_export.export import ExportResult, run_export
from rpmpipe.registry.models import EngagementRow, Enrollment, ExportLedgerEntry
from rpmpipe.settings import Settings


def export(settings: Settings, engine: Engine) -> ExportResult:
    return run_export(settings.export, engine, AS_OF, now=CLOCK)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def billed_codes(engine: Engine, patient_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(
            (r.code, r.line_kind)
            for r in conn.execute(
                select(ExportLedgerEntry.code, ExportLedgerEntry.line_kind).where(
                    ExportLedgerEntry.patient_id == patient_id
                )
            )
        )


def drop_record(engine: Engine, patient_id: str, kind: str, period_start: date) -> None:
    """What metrics does when a period is no longer computed: the stored row goes away."""
    with engine.begin() as conn:
        conn.execute(
            delete(EngagementRow).where(
                EngagementRow.patient_id == patient_id,
                EngagementRow.kind == kind,
                EngagementRow.period_start == period_start,
            )
        )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return export_settings(tmp_path, database_url)


def test_a_setup_exported_without_its_episode_is_not_billed_again_for_review(
    registry: Engine, settings: Settings
) -> None:
    add_patient(registry, "P-01")
    put_record(registry, "P-01", "setup", [("99453", 1, NOV_END)], episode_start=None)
    assert export(settings, registry).lines == 1
    drop_record(registry, "P-01", "setup", NOV_START)
    put_record(
        registry,
        "P-01",
        "setup",
        [("99453", 1, date(2026, 10, 9))],
        period_start=date(2026, 9, 10),
        period_end=date(2026, 10, 9),
    )
    again = export(settings, registry)
    assert (again.claims, again.corrections) == (0, 1)


def test_setup_is_billed_once_even_when_late_readings_move_the_periods_months_back(
    registry: Engine, settings: Settings
) -> None:
    add_patient(registry, "P-01")
    put_record(registry, "P-01", "device_supply", [("99454", 1, NOV_END)], days=20)
    put_record(registry, "P-01", "setup", [("99453", 1, NOV_END)])
    first = export(settings, registry)
    assert first.lines == 2
    # Late readings from September: the series now starts on Sep 10, so the first qualifying
    # period (and the setup record) is Sep 10 - Oct 9, which overlaps nothing exported.
    drop_record(registry, "P-01", "setup", NOV_START)
    put_record(
        registry,
        "P-01",
        "setup",
        [("99453", 1, date(2026, 10, 9))],
        period_start=date(2026, 9, 10),
        period_end=date(2026, 10, 9),
    )
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 0  # no second 99453
    [row] = csv_rows(second.run_dir / "corrections.csv")
    assert (row["action"], row["record_kind"], row["period_start"]) == (
        "review",
        "setup",
        "2026-09-10",
    )
    assert "99453 was already billed for this episode" in row["reason"]
    assert billed_codes(registry, "P-01").count(("99453", "original")) == 1
    assert export(settings, registry).run_dir is None  # reported once


def test_a_new_episode_after_a_long_gap_bills_its_own_setup(
    registry: Engine, settings: Settings
) -> None:
    add_patient(registry, "P-01")
    with registry.begin() as conn:
        conn.execute(
            Enrollment.__table__.update()
            .where(Enrollment.patient_id == "P-01")
            .values(end_date=date(2026, 3, 31))
        )
        conn.execute(
            insert(Enrollment).values(
                patient_id="P-01",
                program="RPM",
                start_date=date(2026, 10, 1),  # six months later: a new episode of care
                end_date=None,
                consent_date=date(2026, 10, 1),
                ordering_npi="1987654328",
            )
        )
    put_record(
        registry,
        "P-01",
        "setup",
        [("99453", 1, date(2026, 3, 30))],
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 30),
    )
    assert export(settings, registry).lines == 1
    put_record(registry, "P-01", "setup", [("99453", 1, NOV_END)], episode_start=date(2026, 10, 1))
    again = export(settings, registry)
    assert (again.lines, again.corrections) == (1, 0)


def test_an_exported_period_that_stops_existing_gets_a_void_correction(
    registry: Engine, settings: Settings
) -> None:
    add_patient(registry, "P-01")
    put_record(registry, "P-01", "device_supply", [("99454", 1, NOV_END)], days=20)
    first = export(settings, registry)
    assert first.run_dir is not None
    claim_id = csv_rows(first.run_dir / "charges.csv")[0]["claim_id"]
    # The device assignment is corrected after the fact: the period is not computed any more.
    drop_record(registry, "P-01", "device_supply", NOV_START)
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 0 and second.corrections == 1
    [row] = csv_rows(second.run_dir / "corrections.csv")
    assert (row["action"], row["original_claim_id"], row["billed_lines"]) == (
        "void",
        claim_id,
        "99454x1@2026-11-30",
    )
    assert row["corrected_lines"] == "" and "no longer exists" in row["reason"]
    assert ("-", "void") in billed_codes(registry, "P-01")
    assert export(settings, registry).run_dir is None  # voided once


def test_a_period_not_yet_over_at_an_earlier_as_of_is_not_voided(
    registry: Engine, settings: Settings
) -> None:
    add_patient(registry, "P-01")
    put_record(registry, "P-01", "device_supply", [("99454", 1, NOV_END)], days=20)
    export(settings, registry)
    # An export for an earlier as-of date sees no final November record: not a vanished one.
    earlier = run_export(settings.export, registry, NOV_END, now=CLOCK)
    assert earlier.run_dir is None and earlier.corrections == 0

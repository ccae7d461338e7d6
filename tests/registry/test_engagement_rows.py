"""Engagement records round-trip through the registry: what metrics persists is what the
export reads back (lines sorted, minutes to the cent), and a row that cannot be read is an
error with a code and the row's ids, not a record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from rpmpipe.billing_export.plan import final_record
from rpmpipe.billing_export.review import final_records
from rpmpipe.errors import RegistryRecordError
from rpmpipe.metrics.job import persist_final
from rpmpipe.records import (
    EngagementRecord,
    FinalRecord,
    Program,
    RecordKind,
    RecordStatus,
    ServiceLine,
)
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.engagement import record_of
from rpmpipe.registry.models import EngagementRow

AS_OF = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 7, tzinfo=UTC)


def _records() -> list[EngagementRecord]:
    month = EngagementRecord(
        patient_id="P-1",
        program=Program.RPM,
        kind=RecordKind.TREATMENT_MANAGEMENT,
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        status=RecordStatus.BILLABLE,
        reason="41.5 minutes with 1 interactive communication: billed 99457 + 99458",
        rule_set="CY2026",
        interactive_minutes=Decimal("20.5"),
        interactive_communications=1,
        # Out of order on purpose: the registry hands them back sorted.
        lines=(
            ServiceLine("99458", 1, date(2026, 11, 30)),
            ServiceLine("99457", 1, date(2026, 11, 30)),
        ),
        evidence_activity_ids=("A-1", "A-2"),
        management_minutes=Decimal("41.5"),
        ordering_npi="1234567893",
        episode_start=date(2026, 10, 2),
        activities_not_counted=(("A-3", "exact duplicate of A-2"),),
    )
    supply = EngagementRecord(
        patient_id="P-2",
        program=Program.RPM,
        kind=RecordKind.DEVICE_SUPPLY,
        period_start=date(2026, 10, 20),
        period_end=date(2026, 11, 18),
        status=RecordStatus.NOT_BILLABLE,
        reason="9 days with data (16 needed)",
        rule_set="CY2026",
        transmission_days=9,
        evidence_dates=(date(2026, 10, 21),),
    )
    return [month, supply]


def test_a_persisted_record_reads_back_as_the_record(database_url: str) -> None:
    engine = open_registry(database_url)
    try:
        records = _records()
        assert persist_final(engine, records, AS_OF, NOW) == 2
        with engine.connect() as conn:
            rows = conn.execute(select(EngagementRow.__table__).order_by(EngagementRow.id)).all()
            back = [record_of(row) for row in rows]
            finals = [record_of(row, FinalRecord, rendering_npi="1234567893") for row in rows]
    finally:
        engine.dispose()
    cent = Decimal("0.01")
    expected = [
        replace(
            r,
            lines=tuple(sorted(r.lines)),
            interactive_minutes=r.interactive_minutes.quantize(cent),
            management_minutes=r.management_minutes.quantize(cent),
            # The evidence stays in evidence_json (the evidence loader reads it).
            evidence_dates=(),
            evidence_activity_ids=(),
            activities_not_counted=(),
        )
        for r in records
    ]
    assert back == expected
    assert [r.lines for r in back] == [
        (ServiceLine("99457", 1, date(2026, 11, 30)), ServiceLine("99458", 1, date(2026, 11, 30))),
        (),
    ]
    # The export's reading is the same record with what the export adds.
    assert finals == [final_record(r, "1234567893") for r in back]
    assert [r.status for r in finals] == ["billable", "not_billable"]


def test_a_row_with_unreadable_lines_is_an_error_naming_the_row(database_url: str) -> None:
    engine = open_registry(database_url)
    try:
        persist_final(engine, _records(), AS_OF, NOW)
        with engine.begin() as conn:
            conn.execute(
                update(EngagementRow)
                .where(EngagementRow.patient_id == "P-1")
                .values(lines_json='[{"code": "99457"}]')
            )
        with engine.connect() as conn:
            row = conn.execute(
                select(EngagementRow.__table__).where(EngagementRow.patient_id == "P-1")
            ).one()
    finally:
        engine.dispose()
    with pytest.raises(RegistryRecordError) as caught:
        record_of(row)
    assert caught.value.code == "bad_engagement_row"
    assert caught.value.fields == {"row_id": row.id, "patient_id": "P-1", "column": "lines_json"}


def test_the_export_preview_reads_computed_records_as_the_export_reads_stored_ones() -> None:
    # The preview's final records carry the episode (a second setup of an episode is then
    # seen as already billed, as the export sees it) and the lines sorted.
    month, supply = _records()
    previewed = final_records([month, supply], AS_OF, {})
    assert [r.episode_start for r in previewed] == [date(2026, 10, 2), None]
    assert previewed[0].lines == tuple(sorted(month.lines))
    assert [r.rendering_npi for r in previewed] == ["1234567893", ""]

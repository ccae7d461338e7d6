"""Loading care activities from the registry (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert

from rpmpipe.metrics.care_sources import load_all_activities
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import CareActivity


def _row(i: int, minutes: str) -> dict[str, object]:
    return {
        "activity_id": f"A{i:05d}",
        "patient_id": f"P{i % 3}",
        "staff_id": "S1",
        "started_at": datetime(2026, 10, 1 + i % 28, 15, i % 60, tzinfo=UTC),
        "minutes": Decimal(minutes),
        "kind": "phone_call",
        "interactive": i % 2 == 0,
        "program": "CCM" if i % 2 else "RPM",
        "performer": "clinical_staff",
        "voided_reason": "entered twice" if i == 7 else None,
    }


def test_activities_read_back_with_their_values_and_repeats_held_once(database_url: str) -> None:
    """Every row comes back as it was stored, over several fetches; a patient, staff member,
    kind, program, performer or number of minutes that repeats is one object for all the
    activities that share it (a fleet's activities repeat them hundreds of thousands of
    times)."""
    engine = open_registry(database_url)
    rows = [_row(i, "7.5" if i % 4 else "20") for i in range(25_000)]
    with engine.begin() as conn:
        conn.execute(insert(CareActivity), rows)
    loaded = sorted(load_all_activities(engine), key=lambda a: a.activity_id)
    engine.dispose()
    assert len(loaded) == len(rows)
    for row, a in zip(rows, loaded, strict=True):
        assert (a.activity_id, a.patient_id, a.staff_id, a.started_at, a.minutes) == (
            row["activity_id"],
            row["patient_id"],
            row["staff_id"],
            row["started_at"],
            row["minutes"],
        )
        assert (a.kind, a.interactive, a.program, a.performer, a.voided_reason) == (
            row["kind"],
            row["interactive"],
            row["program"],
            row["performer"],
            row["voided_reason"],
        )
        assert a.started_at.tzinfo is not None
    assert [str(a.minutes) for a in loaded[:5]] == ["20.00", "7.50", "7.50", "7.50", "20.00"]
    by_patient = {a.patient_id: a.patient_id for a in loaded}
    assert all(a.patient_id is by_patient[a.patient_id] for a in loaded)
    assert len({id(a.staff_id) for a in loaded}) == 1
    assert len({id(a.program) for a in loaded}) == 2
    assert len({id(a.minutes) for a in loaded}) == 2

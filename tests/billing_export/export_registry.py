"""Builders for billing-export tests: a registry with patients, enrollments and final
engagement records inserted directly (no dependency on the metrics stage)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from billing_identity import RENDERING_NPI, identity_overrides
from sqlalchemy import Engine, delete, insert, select

from rpmpipe.registry.models import EngagementRow, Enrollment, Patient
from rpmpipe.settings import Settings, load_settings

CLOCK = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
AS_OF = date(2026, 12, 1)
NOV_START = date(2026, 11, 1)
NOV_END = date(2026, 11, 30)
EPISODE_START = date(2026, 1, 1)  # the enrollment start of add_patient


def export_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": str(tmp_path / "data"),
        "database_url": database_url,
        **identity_overrides(),  # explicit: the tests do not lean on the default payer
        # Records here are inserted without the readings and activities behind them; the
        # documentation audit has its own tests over the whole pipeline (test_audit.py).
        "billing.audit_before_export": False,
    }
    base.update(overrides)
    return load_settings(None, env={}, overrides=base)


def add_patient(
    engine: Engine,
    patient_id: str,
    *,
    first_name: str = "Ada",
    last_name: str = "Lovelace",
    address1: str = "1 Main St",
    city: str = "Springfield",
    icd10: str = "I10;E11.9",
    payer_id: str = "MEDICARE",
    ordering_npi: str = RENDERING_NPI,
    member_id: str = "",
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(Patient).values(
                patient_id=patient_id,
                mrn=f"MRN-{patient_id}",
                first_name=first_name,
                last_name=last_name,
                birth_date=date(1944, 5, 17),
                sex="F",
                address1=address1,
                city=city,
                state="IL",
                zip="62701",
                timezone="America/Chicago",
                payer_id=payer_id,
                payer_name="Medicare Part B",
                member_id=member_id or f"1EG4TE5MK{patient_id[-2:]}",
                icd10_codes=icd10,
            )
        )
        conn.execute(
            insert(Enrollment).values(
                patient_id=patient_id,
                program="RPM",
                start_date=date(2026, 1, 1),
                end_date=None,
                consent_date=date(2026, 1, 1),
                ordering_npi=ordering_npi,
            )
        )


def put_record(
    engine: Engine,
    patient_id: str,
    kind: str,
    lines: Sequence[tuple[str, int, date]],
    *,
    status: str = "billable",
    period_start: date = NOV_START,
    period_end: date = NOV_END,
    days: int = 18,
    minutes: Decimal = Decimal("0"),
    reason: str = "",
    episode_start: date | None = EPISODE_START,
) -> None:
    """Insert or replace one final engagement record (as the metrics stage would)."""
    with engine.begin() as conn:
        conn.execute(
            delete(EngagementRow).where(
                EngagementRow.patient_id == patient_id,
                EngagementRow.program == "RPM",
                EngagementRow.kind == kind,
                EngagementRow.period_start == period_start,
            )
        )
        conn.execute(
            insert(EngagementRow).values(
                patient_id=patient_id,
                program="RPM",
                kind=kind,
                period_start=period_start,
                period_end=period_end,
                status=status,
                reason=reason,
                rule_set="CY2026",
                transmission_days=days,
                interactive_minutes=minutes,
                management_minutes=minutes,
                interactive_communications=1 if minutes else 0,
                lines_json=json.dumps(
                    [{"code": c, "units": u, "date_of_service": d.isoformat()} for c, u, d in lines]
                ),
                evidence_json="{}",
                as_of=AS_OF,
                computed_at=CLOCK,
                episode_start=episode_start,
            )
        )


def engagement_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(EngagementRow.id)).all())

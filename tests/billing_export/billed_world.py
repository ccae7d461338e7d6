"""A small registry billed through the real pipeline (imports, readings backfill, metrics,
export), for the evidence, audit, remittance and appeal tests.

October 2026, patients in Chicago. ``P-01`` has 20 days with data, three interactive calls,
care-plan goal reviews and a PHQ-9; ``P-02`` has 18 days and two interactive calls but no
PRO and no goal review. Readings of 2026-10-15 and later are received late (2026-11-02).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from billing_identity import (
    MEDICARE_PAYER_ID,
    OTHER_ORGANISATION_NPI,
    identity_overrides,
    write_billing_toml,
)
from sqlalchemy import Engine

from rpmpipe.billing_export.export import ExportResult, run_export
from rpmpipe.ingest.backfill import backfill_file
from rpmpipe.metrics.job import compute_and_persist
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.settings import Settings, load_settings

ZONE = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)
AS_OF = date(2026, 11, 5)
ON_TIME = datetime(2026, 10, 15, 6, tzinfo=UTC)
LATE = datetime(2026, 11, 2, 6, tzinfo=UTC)
ORDERING_NPI = "1234567893"  # the billing provider: no rendering provider needed
DAYS = {"P-01": 20, "P-02": 18}


def world_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    base: dict[str, object] = {
        "data_dir": str(tmp_path / "data"),
        "database_url": database_url,
        "organization_timezone": "America/Chicago",
        # The enrollments' ordering NPI is a practitioner of the clinic, who renders the claims.
        **identity_overrides(OTHER_ORGANISATION_NPI, ORDERING_NPI),
    }
    base.update(overrides)
    return load_settings(None, env={}, overrides=base)


def cli_config(tmp_path: Path, payer_extra: str = "") -> Path:
    """A settings file with the billing identity, for the commands (``--config``)."""
    path = write_billing_toml(
        tmp_path / "rpmpipe.toml", provider_npi=OTHER_ORGANISATION_NPI, rendering_npi=ORDERING_NPI
    )
    if payer_extra:
        text = path.read_text().replace(
            f'payer_id = "{MEDICARE_PAYER_ID}"\n',
            f'payer_id = "{MEDICARE_PAYER_ID}"\n{payer_extra}\n',
        )
        path.write_text(text)
    return path


def _patient(pid: str, first: str, last: str) -> dict[str, str]:
    return {
        "patient_id": pid,
        "mrn": f"MRN-{pid}",
        "first_name": first,
        "last_name": last,
        "birth_date": "1946-02-11",
        "sex": "F",
        "address1": "12 Elm St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "timezone": "America/Chicago",
        "payer_id": "MEDICARE",
        "payer_name": "Medicare Part B",
        "member_id": f"1EG4TE5MK{pid[-2:]}",
        "icd10_codes": "I10;E11.9",
    }


def _at(day: int, hour: int, minute: int = 0) -> str:
    return datetime.combine(date(2026, 10, day), time(hour, minute), ZONE).isoformat()


def activity(
    aid: str,
    pid: str,
    day: int,
    minutes: str,
    kind: str,
    interactive: bool,
    *,
    staff: str = "RN-7",
    goals: str = "",
    pro: tuple[str, str] | None = None,
    note: str = "",
) -> dict[str, str]:
    return {
        "activity_id": aid,
        "patient_id": pid,
        "staff_id": staff,
        "started_at": _at(day, 10),
        "minutes": minutes,
        "kind": kind,
        "interactive": "true" if interactive else "false",
        "goals_reviewed": goals,
        "pro_instrument": pro[0] if pro else "",
        "pro_score": pro[1] if pro else "",
        "note_ref": note,
    }


ACTIVITIES = [
    activity("A-01-1", "P-01", 6, "12", "phone_call", True, goals="G-BP;G-DIET", note="N-1001"),
    activity("A-01-2", "P-01", 13, "9", "video_visit", True, staff="RN-8"),
    activity("A-01-3", "P-01", 20, "8", "phone_call", True, goals="G-BP"),
    activity("A-01-4", "P-01", 21, "0", "questionnaire", False, pro=("PHQ-9", "7")),
    activity("A-02-1", "P-02", 8, "15", "phone_call", True),
    activity("A-02-2", "P-02", 22, "11", "video_visit", True),
]


def _readings(pid: str, days: range) -> list[str]:
    out = []
    for d in days:
        out.append(
            json.dumps(
                {
                    "device_id": f"BP-{pid[-2:]}",
                    "reading_id": f"R-{pid}-{d:02d}",
                    "measured_at": _at(d, 7, 30),
                    "type": "blood_pressure",
                    "systolic_mmhg": 128,
                    "diastolic_mmhg": 81,
                    "pulse_bpm": 70,
                }
            )
        )
    return out


def build_world(settings: Settings, *, activities: list[dict[str, str]] | None = None) -> Engine:
    """Register the patients, backfill their readings (some late) and their activities."""
    engine = open_registry(settings.effective_database_url)
    import_rows(
        engine,
        "patients",
        [_patient("P-01", "Ada", "Lovelace"), _patient("P-02", "Grace", "Hopper")],
        source="world",
    )
    import_rows(
        engine,
        "devices",
        [{"device_id": f"BP-{p[-2:]}", "kind": "bp_cuff", "model": "UA-651"} for p in DAYS],
        source="world",
    )
    import_rows(
        engine,
        "assignments",
        [
            {
                "device_id": f"BP-{p[-2:]}",
                "patient_id": p,
                "start_date": "2026-09-25",
                "end_date": "",
            }
            for p in DAYS
        ],
        source="world",
    )
    import_rows(
        engine,
        "enrollments",
        [
            {
                "patient_id": p,
                "program": "RPM",
                "start_date": "2026-09-25",
                "end_date": "",
                "consent_date": "2026-09-25",
                "ordering_npi": ORDERING_NPI,
            }
            for p in DAYS
        ],
        source="world",
    )
    import_rows(engine, "activities", activities or ACTIVITIES, source="world", now=NOW)
    folder = settings.data_dir / "backfill"
    folder.mkdir(parents=True, exist_ok=True)
    early = [r for p, n in DAYS.items() for r in _readings(p, range(1, min(n, 14) + 1))]
    late = [r for p, n in DAYS.items() for r in _readings(p, range(15, n + 1))]
    for name, lines, received in (("early", early, ON_TIME), ("late", late, LATE)):
        path = folder / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        summary = backfill_file(settings.ingest, engine, path, received)
        assert summary.stored == len(lines), summary
    return engine


def bill(settings: Settings, engine: Engine, now: datetime = NOW) -> ExportResult:
    as_of = now.astimezone(settings.org_zone).date()
    compute_and_persist(settings.metrics, engine, as_of, now)
    return run_export(settings.export, engine, as_of, now=now)


def day(d: int) -> date:
    return date(2026, 10, d)


def first_days(n: int) -> list[date]:
    return [day(1) + timedelta(days=i) for i in range(n)]

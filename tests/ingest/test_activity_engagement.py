"""Care activities beyond minutes: goals reviewed, a PRO, the EHR note, the new kinds, and a
FHIR QuestionnaireResponse on the activities topic read as a ``questionnaire`` activity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from rpmpipe.errors import DecodeError, RegistryImportError
from rpmpipe.ingest.activities import activity_items, store_activities
from rpmpipe.ingest.questionnaire import questionnaire_row
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_csv, import_rows
from rpmpipe.registry.models import CareActivity

CLOCK = datetime(2026, 12, 1, 12, tzinfo=UTC)
PATIENT = {
    "patient_id": "P-1",
    "mrn": "M1",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "birth_date": "1946-02-11",
    "sex": "F",
    "address1": "1 Main St",
    "city": "Springfield",
    "state": "IL",
    "zip": "62701",
    "timezone": "America/Chicago",
    "payer_id": "MEDICARE",
    "payer_name": "Medicare",
    "member_id": "1EG4TE5MK72",
    "icd10_codes": "I10",
}
CALL = {
    "activity_id": "A-1",
    "patient_id": "P-1",
    "staff_id": "RN-1",
    "started_at": "2026-10-06T10:00:00-05:00",
    "minutes": 12,
    "kind": "portal_message",
    "interactive": False,
    "goals_reviewed": ["G-BP", "G-DIET"],
    "pro": {"instrument": "PHQ-9", "score": 7},
    "note_ref": "NOTE-881",
}
PHQ9 = {
    "resourceType": "QuestionnaireResponse",
    "id": "QR-17",
    "status": "completed",
    "questionnaire": "http://loinc.org/q/44249-1",
    "subject": {"reference": "Patient/P-1"},
    "author": {"reference": "Practitioner/RN-2"},
    "authored": "2026-10-21T09:30:00-05:00",
    "item": [
        {"linkId": "1", "answer": [{"valueInteger": 2}]},
        {"linkId": "9", "answer": [{"valueInteger": 1}]},
        {
            "linkId": "score",
            "code": [{"system": "http://loinc.org", "code": "44261-6"}],
            "answer": [{"valueInteger": 12}],
        },
    ],
}


def _stored(database_url: str) -> dict[str, CareActivity]:
    engine = open_registry(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(CareActivity.__table__)).all()
    engine.dispose()
    return {r.activity_id: r for r in rows}  # type: ignore[misc]


def test_activity_payload_keeps_goals_pro_and_note(database_url: str) -> None:
    engine = open_registry(database_url)
    import_rows(engine, "patients", [PATIENT], source="t")
    items, rejects = activity_items(orjson.dumps([CALL, PHQ9]))
    assert rejects == []
    committed, failed = store_activities(engine, [[i.row] for i in items], "mqtt", now=CLOCK)
    engine.dispose()
    assert (committed, failed) == (2, [])
    rows = _stored(database_url)
    call = rows["A-1"]
    assert (call.kind, call.goals_reviewed, call.pro_instrument, call.note_ref) == (
        "portal_message",
        "G-BP;G-DIET",
        "PHQ-9",
        "NOTE-881",
    )
    assert Decimal(call.pro_score) == 7
    qr = rows["QR-17"]
    assert (qr.kind, qr.staff_id, qr.patient_id, qr.interactive) == (
        "questionnaire",
        "RN-2",
        "P-1",
        False,
    )
    assert (qr.pro_instrument, Decimal(qr.pro_score), Decimal(qr.minutes)) == ("PHQ-9", 12, 0)


def test_csv_import_takes_the_optional_columns_or_leaves_them_out(
    tmp_path: Path, database_url: str
) -> None:
    engine = open_registry(database_url)
    import_rows(engine, "patients", [PATIENT], source="t")
    with_fields = tmp_path / "a.csv"
    with_fields.write_text(
        "activity_id,patient_id,staff_id,started_at,minutes,kind,interactive,goals_reviewed,pro_instrument,pro_score,note_ref\n"
        "A-2,P-1,RN-1,2026-10-07T10:00:00Z,20,phone_call,true,G-1;G-2,GAD-7,4,N-2\n"
    )
    plain = tmp_path / "b.csv"
    plain.write_text(
        "activity_id,patient_id,staff_id,started_at,minutes,kind,interactive\n"
        "A-3,P-1,RN-1,2026-10-08T10:00:00Z,20,phone_call,true\n"
    )
    assert import_csv(engine, "activities", with_fields, now=CLOCK).inserted == 1
    assert import_csv(engine, "activities", plain, now=CLOCK).inserted == 1
    assert import_csv(engine, "activities", with_fields, now=CLOCK).unchanged == 1  # idempotent
    engine.dispose()
    rows = _stored(database_url)
    assert (rows["A-2"].goals_reviewed, rows["A-2"].pro_instrument, rows["A-2"].note_ref) == (
        "G-1;G-2",
        "GAD-7",
        "N-2",
    )
    assert (rows["A-3"].goals_reviewed, rows["A-3"].pro_instrument, rows["A-3"].pro_score) == (
        "",
        "",
        None,
    )


def test_a_pro_without_its_score_or_a_timeless_call_is_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    engine = open_registry(f"sqlite:///{tmp_path / 'r.db'}")
    import_rows(engine, "patients", [PATIENT], source="t")
    row = {k: str(v) for k, v in CALL.items() if k not in ("goals_reviewed", "pro")} | {
        "interactive": "false",
        "pro_instrument": "PHQ-9",
    }
    with pytest.raises(RegistryImportError, match="field 'pro_score'") as err:
        import_rows(engine, "activities", [row], source="f.csv", now=CLOCK)
    assert "Lovelace" not in str(err.value)
    with pytest.raises(RegistryImportError, match="field 'minutes'"):
        import_rows(
            engine,
            "activities",
            [{**row, "pro_score": "3", "minutes": "0"}],
            source="f.csv",
            now=CLOCK,
        )
    # A questionnaire may carry no staff time: 0 minutes is a PRO on file, not billable time.
    import_rows(
        engine,
        "activities",
        [{**row, "pro_score": "3", "minutes": "0", "kind": "questionnaire"}],
        source="f.csv",
        now=CLOCK,
    )
    engine.dispose()


def test_questionnaire_response_reads_instrument_score_staff_and_time() -> None:
    row = questionnaire_row(PHQ9)
    assert row["pro_instrument"] == "PHQ-9" and row["pro_score"] == "12"
    assert row["started_at"] == "2026-10-21T09:30:00-05:00" and row["minutes"] == "0"
    timed = PHQ9 | {
        "extension": [{"url": "https://example.org/fhir/care-minutes", "valueDecimal": 6.5}]
    }
    assert questionnaire_row(timed)["minutes"] == "6.5"
    other = PHQ9 | {"questionnaire": "https://forms.example.org/Questionnaire/KCCQ-12|2.0"}
    assert questionnaire_row(other)["pro_instrument"] == "KCCQ-12"


@pytest.mark.parametrize(
    ("change", "code", "detail"),
    [
        ({"subject": None}, "missing_field", "subject must reference Patient/<id>"),
        ({"author": {"reference": "Device/X"}}, "missing_field", "author must reference"),
        ({"status": "in-progress"}, "bad_status", "completed or amended"),
        (
            {"item": [{"linkId": "1", "answer": [{"valueInteger": 2}]}]},
            "missing_field",
            "total-score",
        ),
    ],
)
def test_a_bad_questionnaire_response_is_rejected_with_a_reason(
    change: dict[str, object], code: str, detail: str
) -> None:
    payload = json.dumps(PHQ9 | change).encode()
    items, rejects = activity_items(payload)
    assert items == []
    [reject] = rejects
    assert reject.code == code and detail in reject.reason
    with pytest.raises(DecodeError):
        questionnaire_row(PHQ9 | change)

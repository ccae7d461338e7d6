"""The columns of each registry CSV import (``rpmpipe import KIND FILE``), without the parsers.

The command line names them in its help without importing the registry's database layer;
:mod:`rpmpipe.registry.imports` builds its import kinds from these.
"""

from __future__ import annotations

from typing import NamedTuple


class Columns(NamedTuple):
    required: tuple[str, ...]  # in the header
    optional: tuple[str, ...]  # may be left out of the header (then their default)


COLUMNS: dict[str, Columns] = {
    "patients": Columns(
        (
            "patient_id",
            "mrn",
            "first_name",
            "last_name",
            "birth_date",
            "sex",
            "address1",
            "city",
            "state",
            "zip",
            "timezone",
            "payer_id",
            "payer_name",
            "member_id",
            "icd10_codes",
        ),
        ("qmb",),
    ),
    "devices": Columns(
        ("device_id", "kind", "model"),
        ("serial_number",),
    ),
    "assignments": Columns(
        ("device_id", "patient_id", "start_date", "end_date"),
        (),
    ),
    "enrollments": Columns(
        ("patient_id", "program", "start_date", "end_date", "consent_date", "ordering_npi"),
        (),
    ),
    "activities": Columns(
        (
            "activity_id",
            "patient_id",
            "staff_id",
            "started_at",
            "minutes",
            "kind",
            "interactive",
        ),
        (
            "program",
            "performer",
            "voided_reason",
            "goals_reviewed",
            "pro_instrument",
            "pro_score",
            "note_ref",
        ),
    ),
    "care-plans": Columns(
        ("patient_id", "program", "established_on", "revised_on", "shared_with_patient_on"),
        (),
    ),
}

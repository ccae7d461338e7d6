"""FHIR R4 QuestionnaireResponse to a ``questionnaire`` care activity row (pure).

A patient-reported outcome (PHQ-9, GAD-7, ...) answered in the care-management app reaches the
activities topic as a QuestionnaireResponse. It becomes an activity of kind ``questionnaire``:
``subject`` is the patient (``Patient/ID``), ``author`` (or ``source``) the staff member who
collected it (``Practitioner/ID`` or ``PractitionerRole/ID``), ``authored`` the time, the
instrument comes from ``questionnaire`` (a known LOINC panel, else the canonical's last path
segment) and the score from the item whose linkId is ``total-score`` / ``score`` or whose code
is a known total-score LOINC. Minutes come from an extension ``.../care-minutes`` when the
staff time was recorded, else 0 (a PRO on file is documentation, never billable time).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from rpmpipe.errors import DecodeError

RESOURCE = "QuestionnaireResponse"
# LOINC panel -> instrument, and the LOINC of each instrument's total score.
INSTRUMENTS = {"44249-1": "PHQ-9", "55757-9": "PHQ-2", "69737-5": "GAD-7"}
TOTAL_SCORE_CODES = {"44261-6", "55758-7", "70274-6"}
SCORE_LINK_IDS = {"total-score", "total_score", "score", "totalscore"}
_ACCEPTED_STATUS = ("completed", "amended")
MINUTES_EXTENSION_SUFFIX = "/care-minutes"


def is_questionnaire_response(item: object) -> bool:
    return isinstance(item, dict) and item.get("resourceType") == RESOURCE


def _reference_id(value: object, prefixes: tuple[str, ...], what: str) -> str:
    ref = value.get("reference") if isinstance(value, dict) else None
    if isinstance(ref, str):
        for prefix in prefixes:
            if ref.startswith(prefix):
                return ref.removeprefix(prefix)
    allowed = " or ".join(f"{p}<id>" for p in prefixes)
    raise DecodeError("missing_field", f"QuestionnaireResponse.{what} must reference {allowed}")


def _instrument(canonical: object) -> str:
    if not isinstance(canonical, str) or not canonical.strip():
        raise DecodeError("missing_field", "QuestionnaireResponse has no questionnaire")
    tail = canonical.rstrip("/").rsplit("/", 1)[-1].split("|", 1)[0]
    return INSTRUMENTS.get(tail, tail)[:32]


def _codes(item: dict[str, Any]) -> set[str]:
    codes = item.get("code")
    if not isinstance(codes, list):
        return set()
    return {c["code"] for c in codes if isinstance(c, dict) and isinstance(c.get("code"), str)}


def _answer_number(item: dict[str, Any]) -> Decimal:
    for answer in item.get("answer") or []:
        if not isinstance(answer, dict):
            continue
        for key in ("valueInteger", "valueDecimal"):
            value = answer.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        coding = answer.get("valueCoding")
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            try:
                return Decimal(coding["code"])
            except InvalidOperation:
                continue
    raise DecodeError(
        "bad_value", "the total-score item of the QuestionnaireResponse has no number"
    )


def _score(items: object) -> Decimal:
    stack = list(items) if isinstance(items, list) else []
    while stack:
        item = stack.pop(0)
        if not isinstance(item, dict):
            continue
        link = str(item.get("linkId", "")).lower()
        if link in SCORE_LINK_IDS or _codes(item) & TOTAL_SCORE_CODES:
            return _answer_number(item)
        stack.extend(item.get("item") or [])
    raise DecodeError("missing_field", "the QuestionnaireResponse has no total-score item")


def _minutes(resource: dict[str, Any]) -> str:
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and str(ext.get("url", "")).endswith(MINUTES_EXTENSION_SUFFIX):
            value = ext.get("valueDecimal", ext.get("valueInteger"))
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(Decimal(repr(value)) if isinstance(value, float) else value)
            raise DecodeError("bad_value", "the care-minutes extension has no number")
    return "0"


def questionnaire_row(resource: dict[str, Any]) -> dict[str, str]:
    """The activity row (registry import columns) of a QuestionnaireResponse."""
    if resource.get("status") not in _ACCEPTED_STATUS:
        raise DecodeError("bad_status", "QuestionnaireResponse.status must be completed or amended")
    activity_id = resource.get("id")
    if not isinstance(activity_id, str) or not activity_id:
        raise DecodeError("missing_field", "the QuestionnaireResponse has no id")
    authored = resource.get("authored")
    if not isinstance(authored, str):
        raise DecodeError("missing_field", "the QuestionnaireResponse has no authored time")
    staff = resource.get("author") or resource.get("source")
    return {
        "activity_id": activity_id,
        "patient_id": _reference_id(resource.get("subject"), ("Patient/",), "subject"),
        "staff_id": _reference_id(staff, ("Practitioner/", "PractitionerRole/"), "author"),
        "started_at": authored,
        "minutes": _minutes(resource),
        "kind": "questionnaire",
        "interactive": "false",
        "goals_reviewed": "",
        "pro_instrument": _instrument(resource.get("questionnaire")),
        "pro_score": str(_score(resource.get("item"))),
        "note_ref": "",
    }

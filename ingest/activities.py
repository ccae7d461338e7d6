"""Care-team activity payloads to registry rows, and their idempotent commit.

The payload is one activity object (or an array of them) with the fields of the contract.
Validation and the upsert by ``activity_id`` are the registry import's (``import_rows``), so
an activity arriving over MQTT and one imported from CSV are checked the same way. A bad
activity of an array is quarantined on its own; the good ones are committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine

from rpmpipe.errors import DecodeError, RegistryImportError
from rpmpipe.ingest.decoders import MAX_PAYLOAD_BYTES, Reject, item_bytes, load_json
from rpmpipe.ingest.questionnaire import is_questionnaire_response, questionnaire_row
from rpmpipe.registry.imports import KINDS, import_rows

ACTIVITY_COLUMNS = KINDS["activities"].columns
# Optional plain fields (program, performer, voided_reason); goals_reviewed, pro and note_ref
# have their own shapes on the topic and are read by _engagement_cells.
ENGAGEMENT_COLUMNS = ("goals_reviewed", "pro_instrument", "pro_score", "note_ref")
OPTIONAL_COLUMNS = tuple(c for c in KINDS["activities"].optional if c not in ENGAGEMENT_COLUMNS)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    if isinstance(value, str | int):
        return str(value)
    raise DecodeError("bad_activity", "activity fields must be strings, numbers or booleans")


@dataclass(frozen=True, slots=True)
class ActivityItem:
    """One activity of a payload: its registry row, where it sat, and its own bytes."""

    row: dict[str, str]
    where: str  # "" for a single-activity payload, else "item 2 of 5"
    item: bytes  # the whole payload, or the item re-serialised on its own


def activity_items(payload: bytes) -> tuple[list[ActivityItem], list[Reject]]:
    """The activities of a payload and the rejects among its items (pure).

    A payload-wide problem (too large, bad JSON, empty) raises DecodeError; a bad item of an
    array is rejected on its own so the good ones are kept, as for batched readings.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("too_large", f"the payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    doc = load_json(payload, "the payload is not valid UTF-8 JSON")
    single = not isinstance(doc, list)
    items: list[object] = [doc] if single else doc
    if not items:
        raise DecodeError("empty_batch", "the payload holds no activities")
    good: list[ActivityItem] = []
    rejects: list[Reject] = []
    for index, item in enumerate(items):
        where = "" if single else f"item {index + 1} of {len(items)}"
        raw = payload if single else item_bytes(item)
        try:
            good.append(ActivityItem(_row(item), where, raw))
        except DecodeError as exc:
            rejects.append(Reject(exc.code, f"{where}: {exc.detail}" if where else exc.detail, raw))
    return good, rejects


def _row(item: object) -> dict[str, str]:
    if not isinstance(item, dict):
        raise DecodeError("bad_activity", "an activity is not a JSON object")
    if is_questionnaire_response(item):
        return questionnaire_row(item)
    missing = [c for c in ACTIVITY_COLUMNS if item.get(c) is None]
    if missing:
        raise DecodeError("missing_field", f"the activity has no {missing[0]}")
    row = {c: _cell(item[c]) for c in ACTIVITY_COLUMNS}
    row.update({c: _cell(item[c]) for c in OPTIONAL_COLUMNS if item.get(c) is not None})
    return row | _engagement_cells(item)


def _engagement_cells(item: dict[str, object]) -> dict[str, str]:
    """The optional ``goals_reviewed`` (array of ids), ``pro`` ({instrument, score}) and
    ``note_ref`` of an activity payload, as registry import cells."""
    cells: dict[str, str] = {}
    goals = item.get("goals_reviewed")
    if goals is not None:
        if not isinstance(goals, list) or not all(isinstance(g, str | int) for g in goals):
            raise DecodeError("bad_activity", "goals_reviewed must be an array of goal ids")
        cells["goals_reviewed"] = ";".join(str(g) for g in goals)
    pro = item.get("pro")
    if pro is not None:
        if not isinstance(pro, dict) or "instrument" not in pro or "score" not in pro:
            raise DecodeError("bad_activity", "pro must be an object with instrument and score")
        cells["pro_instrument"] = _cell(pro["instrument"])
        cells["pro_score"] = _cell(pro["score"])
    if item.get("note_ref") is not None:
        cells["note_ref"] = _cell(item["note_ref"])
    return cells


def _code(exc: RegistryImportError) -> str:
    if exc.field == "patient_id" and exc.code == "unknown_reference":
        return "unknown_patient"
    if exc.field == "started_at" and exc.code == "out_of_range":
        return "bad_time"
    return "bad_activity"


def store_activities(
    engine: Engine,
    batches: Sequence[Sequence[dict[str, str]]],
    source: str,
    *,
    now: datetime,
) -> tuple[int, list[tuple[int, str, str]]]:
    """Commit every batch's rows; returns (rows committed, [(batch index, code, reason)]).

    All batches go in one transaction when they are all valid; otherwise each is retried on
    its own so one bad batch does not hold back the others (the pipeline passes one activity
    per batch, so that is one bad activity). ``now`` is the clock activity dates are checked
    against (the receipt time). Database outages propagate.
    """
    flat = [row for rows in batches for row in rows]
    if not flat:
        return 0, []
    try:
        return import_rows(engine, "activities", flat, source=source, now=now).rows, []
    except RegistryImportError:
        pass
    committed = 0
    failed: list[tuple[int, str, str]] = []
    for index, rows in enumerate(batches):
        try:
            committed += import_rows(engine, "activities", rows, source=source, now=now).rows
        except RegistryImportError as exc:
            failed.append((index, _code(exc), f"{exc.field or 'activity'}: {exc.detail}"))
    return committed, failed

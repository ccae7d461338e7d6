"""Care-team activity payloads to registry rows, and their idempotent commit.

The payload is one activity object (or an array of them) with the fields of the contract.
Validation and the upsert by ``activity_id`` are the registry import's (``import_rows``), so
an activity arriving over MQTT and one imported from CSV are checked the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import orjson
from sqlalchemy import Engine

from ingest.decoders import MAX_PAYLOAD_BYTES
from rpmpipe.errors import DecodeError, RegistryImportError
from rpmpipe.registry.imports import KINDS, import_rows

ACTIVITY_COLUMNS = KINDS["activities"].columns


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    if isinstance(value, str | int):
        return str(value)
    raise DecodeError("bad_activity", "activity fields must be strings, numbers or booleans")


def activity_rows(payload: bytes) -> list[dict[str, str]]:
    """The CSV-like rows of an activity payload (pure); structural problems raise DecodeError."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("too_large", f"the payload exceeds {MAX_PAYLOAD_BYTES} bytes")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise DecodeError("bad_json", "the payload is not valid UTF-8 JSON") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise DecodeError("empty_batch", "the payload holds no activities")
    rows = []
    for item in items:
        if not isinstance(item, dict):
            raise DecodeError("bad_activity", "an activity is not a JSON object")
        missing = [c for c in ACTIVITY_COLUMNS if item.get(c) is None]
        if missing:
            raise DecodeError("missing_field", f"the activity has no {missing[0]}")
        rows.append({c: _cell(item[c]) for c in ACTIVITY_COLUMNS})
    return rows


def _code(exc: RegistryImportError) -> str:
    if exc.field == "patient_id" and "not in the registry" in exc.detail:
        return "unknown_patient"
    return "bad_activity"


def store_activities(
    engine: Engine, batches: Sequence[Sequence[dict[str, str]]], source: str
) -> tuple[int, list[tuple[int, str, str]]]:
    """Commit every batch's rows; returns (rows committed, [(batch index, code, reason)]).

    All batches go in one transaction when they are all valid; otherwise each is retried on
    its own so one bad activity does not hold back the others. Database outages propagate.
    """
    flat = [row for rows in batches for row in rows]
    if not flat:
        return 0, []
    try:
        return import_rows(engine, "activities", flat, source=source).rows, []
    except RegistryImportError:
        pass
    committed = 0
    failed: list[tuple[int, str, str]] = []
    for index, rows in enumerate(batches):
        try:
            committed += import_rows(engine, "activities", rows, source=source).rows
        except RegistryImportError as exc:
            failed.append((index, _code(exc), f"{exc.field or 'activity'}: {exc.detail}"))
    return committed, failed

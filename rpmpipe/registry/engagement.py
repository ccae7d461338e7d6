"""Engagement records in the registry (table ``engagement_records``): the one mapping between
an :class:`~rpmpipe.records.EngagementRecord` and its row, both ways.

Metrics persists the final records through :func:`engagement_row`; the export, its preview
and the audit read them back through :func:`record_of` (a row read back is the record that
was written, its service lines sorted and its minutes to the cent, as the registry keeps
them; the evidence stays in ``evidence_json``, read where it is needed).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

import orjson

from rpmpipe.errors import RegistryRecordError
from rpmpipe.records import EngagementRecord, ServiceLine

# A record's identity, the table's unique key.
KEY_COLUMNS = ("patient_id", "program", "kind", "period_start")
# What a rerun compares: a row whose content is unchanged is left untouched.
CONTENT_COLUMNS = (
    "period_end",
    "status",
    "reason",
    "rule_set",
    "transmission_days",
    "interactive_minutes",
    "interactive_communications",
    "management_minutes",
    "ordering_npi",
    "episode_start",
    "lines_json",
    "evidence_json",
)
CENT = Decimal("0.01")

R = TypeVar("R", bound=EngagementRecord)


def engagement_row(record: EngagementRecord, as_of: date, now: datetime) -> dict[str, Any]:
    """The row that stores ``record``, computed as of ``as_of`` at ``now``."""
    return {
        "patient_id": record.patient_id,
        "program": record.program,
        "kind": record.kind,
        "period_start": record.period_start,
        "period_end": record.period_end,
        "status": record.status,
        "reason": record.reason,
        "rule_set": record.rule_set,
        "transmission_days": record.transmission_days,
        "interactive_minutes": record.interactive_minutes,
        "interactive_communications": record.interactive_communications,
        "management_minutes": record.management_minutes,
        "ordering_npi": record.ordering_npi,
        "episode_start": record.episode_start,
        "lines_json": orjson.dumps([line.to_json() for line in record.lines]).decode(),
        "evidence_json": orjson.dumps(record.evidence_json()).decode(),
        "as_of": as_of,
        "computed_at": now,
    }


def record_of(row: Any, cls: type[R] = EngagementRecord, **extra: Any) -> R:  # type: ignore[assignment]
    """The record an ``engagement_records`` row stores, as ``cls`` (a record type, given
    ``extra`` fields beside the record's own).

    Raises :class:`RegistryRecordError` (code ``bad_engagement_row``, fields ``row_id``,
    ``patient_id`` and ``column``: ``lines_json``, or "" for a status or kind it does not
    know) when the row cannot be read.
    """
    try:
        lines = _lines(row.lines_json or "[]")
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable(row, "lines_json", exc) from None
    try:
        return cls(
            patient_id=row.patient_id,
            program=row.program,
            kind=row.kind,
            period_start=row.period_start,
            period_end=row.period_end,
            status=row.status,
            reason=row.reason or "",
            rule_set=row.rule_set,
            transmission_days=row.transmission_days or 0,
            interactive_minutes=Decimal(row.interactive_minutes or 0).quantize(CENT),
            interactive_communications=row.interactive_communications or 0,
            management_minutes=Decimal(row.management_minutes or 0).quantize(CENT),
            ordering_npi=row.ordering_npi or "",
            episode_start=row.episode_start,
            lines=lines,
            **extra,
        )
    except ValueError as exc:  # a status or kind the records do not know
        raise _unreadable(row, "", exc) from None


@lru_cache(maxsize=4096)
def _lines(lines_json: str) -> tuple[ServiceLine, ...]:
    """The sorted lines of a ``lines_json`` text: read once per text, as most records of a
    month share theirs with many others (the lines are immutable tuples)."""
    return tuple(sorted(map(ServiceLine.from_json, orjson.loads(lines_json))))


def _unreadable(row: Any, column: str, exc: Exception) -> RegistryRecordError:
    return RegistryRecordError(
        f"engagement record {row.id} (patient {row.patient_id}): "
        f"unreadable {column or 'row'} ({exc})",
        code="bad_engagement_row",
        row_id=row.id,
        patient_id=row.patient_id,
        column=column,
    )

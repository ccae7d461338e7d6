"""Care activities in the registry: voiding a mistaken time entry (kept, no longer counted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update

from rpmpipe.errors import RpmpipeError
from rpmpipe.logs import get_logger
from rpmpipe.registry.imports import MAX_VOID_REASON
from rpmpipe.registry.models import CareActivity

log = get_logger("registry.activities")

MAX_REASON = MAX_VOID_REASON


class UnknownActivityError(RpmpipeError):
    """No care activity has the id given."""


@dataclass(frozen=True, slots=True)
class VoidOutcome:
    """The void on record for an activity; ``new`` is False when it was voided before."""

    activity_id: str
    voided_at: datetime
    voided_by: str
    voided_reason: str
    new: bool


def void_activity(
    engine: Engine, activity_id: str, reason: str, by: str, at: datetime
) -> VoidOutcome:
    """Mark a time entry voided (who, when, why). It stays in the registry and stops counting;
    a second void of the same entry keeps the first one."""
    reason = reason.strip()
    if not reason:
        raise RpmpipeError("--reason: say why the entry is voided")
    if len(reason) > MAX_REASON:
        raise RpmpipeError(f"--reason: at most {MAX_REASON} characters")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    with engine.begin() as conn:
        row = conn.execute(
            select(
                CareActivity.voided_at, CareActivity.voided_by, CareActivity.voided_reason
            ).where(CareActivity.activity_id == activity_id)
        ).first()
        if row is None:
            raise UnknownActivityError(f"no care activity {activity_id!r} in the registry")
        if row.voided_reason is not None:
            return VoidOutcome(
                activity_id, row.voided_at or at, row.voided_by or "", row.voided_reason, False
            )
        conn.execute(
            update(CareActivity)
            .where(CareActivity.activity_id == activity_id)
            .values(voided_at=at, voided_by=by, voided_reason=reason)
        )
    log.info("activity_voided", activity_id=activity_id)
    return VoidOutcome(activity_id, at, by, reason, True)

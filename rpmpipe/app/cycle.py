"""One billing cycle: compute engagement, persist the final records, export, say how it went.

``rpmpipe export``, the nightly job (``rpmpipe.app.schedule``) and ``rpmpipe demo`` all run
this function, so the order (as-of check, metrics, export) and what counts as "held" are
decided once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine

from rpmpipe.asof import check_as_of
from rpmpipe.billing_export.export import ExportResult, run_export
from rpmpipe.billing_export.holds import group_held
from rpmpipe.errors import EXIT_HELD, EXIT_OK
from rpmpipe.progress import SILENT, Progress
from rpmpipe.records import EngagementRecord, RecordStatus
from rpmpipe.settings import Settings


class CycleStatus(StrEnum):
    """How a billing cycle (and the nightly job's run of it) ended; also the job's states."""

    SUCCEEDED = "succeeded"
    HELD = "held"  # done, with lines held back (money not yet claimed: alert someone)
    RUNNING = "running"  # a nightly run started and not finished
    FAILED = "failed"  # a nightly run that raised (its message says what)


@dataclass(frozen=True)
class CycleOutcome:
    """What one billing cycle did: the records it computed and what the export wrote."""

    as_of: date
    records: tuple[EngagementRecord, ...]
    computed: bool  # False when the persisted records were exported as they were
    export: ExportResult

    @property
    def billable_lines(self) -> int:
        return sum(len(r.lines) for r in self.records if r.status == RecordStatus.BILLABLE)

    @property
    def status(self) -> CycleStatus:
        return CycleStatus.HELD if self.export.held else CycleStatus.SUCCEEDED

    @property
    def exit_code(self) -> int:
        """0 done; 3 done with lines held back (the command line's rule, for every caller)."""
        return EXIT_HELD if self.status is CycleStatus.HELD else EXIT_OK

    @property
    def held_message(self) -> str:
        """One line: how many lines were held and why (ids and codes only, never PHI)."""
        if not self.export.held:
            return ""
        return f"held back {self.export.held} lines: " + "; ".join(
            f"{g.cause.text} ({g.lines})" for g in group_held(self.export.held_back)
        )


def run_billing_cycle(
    settings: Settings,
    engine: Engine,
    as_of: date,
    now: datetime,
    *,
    out_dir: Path | None = None,
    compute: bool = True,
    progress: Progress = SILENT,
) -> CycleOutcome:
    """Compute and persist engagement as of ``as_of`` (unless ``compute`` is False), then
    export every final, billable line not yet exported.

    The as-of check comes first: metrics would otherwise persist periods that have not ended
    as final. Idempotent: a rerun upserts the same records and the ledger bills nothing twice.
    ``progress`` hears each step of both stages (a terminal's progress bars).
    """
    check_as_of(as_of, settings.org_zone, now)
    records: Sequence[EngagementRecord] = ()
    if compute:
        # Imported here: the metrics stage is heavy, and an export of the persisted records
        # (compute=False) does not need it.
        from rpmpipe.metrics.job import compute_and_persist

        records = compute_and_persist(settings.metrics, engine, as_of, now, progress)
    result = run_export(settings.export, engine, as_of, out_dir=out_dir, now=now, progress=progress)
    return CycleOutcome(as_of, tuple(records), compute, result)

"""One report as of a date: compute (or take) the engagement records, gather, write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Engine

from rpmpipe.app.report.charts import start_vega_bundle
from rpmpipe.app.report.inputs import gather
from rpmpipe.app.report.site import SiteResult, write_site
from rpmpipe.logs import get_logger
from rpmpipe.records import EngagementRecord
from rpmpipe.settings import Settings

log = get_logger("app.report")


def build_report(
    settings: Settings,
    engine: Engine,
    as_of: date,
    out: Path,
    *,
    now: datetime,
    records: Sequence[EngagementRecord] | None = None,
) -> SiteResult:
    """Write the report as of ``as_of`` to ``out``; ``records`` when the caller has them
    (the nightly job just computed them), else they are computed here."""
    from rpmpipe.collector import gc_paused
    from rpmpipe.metrics.job import compute

    start_vega_bundle()  # in a thread, while the figures are gathered
    if records is None:
        records = compute(settings.metrics, engine, as_of)
    with gc_paused():  # hundreds of thousands of small acyclic values, as in metrics
        inputs = gather(settings, engine, as_of, records, now.astimezone(settings.org_zone))
        result = write_site(inputs, out)
    log.info(
        "report_written",
        as_of=as_of.isoformat(),
        patients=result.patients,
        worklist_rows=result.worklist_rows,
        files=result.files,
    )
    return result

"""Progress of ``export``: the stage reports each step with the records checked, lines
audited, files written and ledger lines recorded out of their totals; on a terminal the
command draws them (tests/metrics/test_progress_bars.py)."""

from __future__ import annotations

from pathlib import Path

from export_registry import AS_OF, CLOCK, export_settings
from progress_recorder import Recorder
from sqlalchemy import Engine
from test_export_run import ledger_rows, seed

from rpmpipe.billing_export.export import run_export


def test_export_reports_each_step_and_what_it_did_out_of_the_total(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    seed(registry)  # 2 patients, 4 records, 4 lines
    progress = Recorder()
    result = run_export(
        export_settings(tmp_path, database_url).export,
        registry,
        AS_OF,
        now=CLOCK,
        progress=progress,
    )
    assert result.run_dir is not None and result.lines == 4
    assert progress.labels == [
        "loading the final records and the ledger",
        "checking the records against the ledger",
        "building the claims",
        "collecting the evidence of each line",
        "writing the run's files",
        "recording the lines in the ledger",
    ]
    checked = progress.named("checking the records against the ledger")
    assert (checked.total, checked.done) == (4, 4)
    files = progress.named("writing the run's files")
    written = sorted(p.name for p in result.run_dir.iterdir())
    assert (files.total, files.done) == (len(written), len(written)), written
    recorded = progress.named("recording the lines in the ledger")
    rows = len(ledger_rows(registry))
    assert (recorded.total, recorded.done) == (rows, rows) and rows == 4


def test_the_audit_step_counts_every_line_audited(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    seed(registry)
    settings = export_settings(tmp_path, database_url, **{"billing.audit_before_export": True})
    progress = Recorder()
    run_export(settings.export, registry, AS_OF, now=CLOCK, progress=progress)
    audited = progress.named("auditing the documentation of each line")
    assert (audited.total, audited.done) == (4, 4)

"""A rerun with nothing new is decided by one indexed query over the registry, and that
query never says "nothing new" when the full comparison of records and ledger would find
something (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from export_registry import (
    AS_OF,
    CLOCK,
    NOV_END,
    NOV_START,
    add_patient,
    export_settings,
    put_record,
)
from sqlalchemy import Engine, delete, event, update

from rpmpipe.billing_export.export import run_export
from rpmpipe.billing_export.ledger import nothing_to_export
from rpmpipe.registry.models import EngagementRow, ExportLedgerEntry
from rpmpipe.settings import Settings

DEC_START = NOV_END.replace(month=12, day=1)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return export_settings(tmp_path, database_url)


def seed(engine: Engine) -> None:
    add_patient(engine, "P-01")
    add_patient(engine, "P-02")
    put_record(engine, "P-01", "device_supply", [("99454", 1, NOV_END)], days=20)
    put_record(
        engine,
        "P-01",
        "treatment_management",
        [("99457", 1, NOV_END), ("99458", 1, NOV_END)],
        minutes=Decimal(45),
    )
    put_record(engine, "P-02", "device_supply", [("99445", 1, NOV_END)], days=9)
    put_record(
        engine, "P-02", "treatment_management", [], status="not_billable", reason="12 minutes"
    )


def quick(engine: Engine) -> bool:
    with engine.connect() as conn:
        return nothing_to_export(conn, AS_OF)


def exported(settings: Settings, engine: Engine) -> int:
    result = run_export(settings.export, engine, AS_OF, now=CLOCK)
    return result.lines + result.corrections + result.held


def test_nothing_new_after_an_export_and_after_its_corrections(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    assert not quick(registry)  # billable records not in the ledger
    assert exported(settings, registry) == 4
    assert quick(registry)
    # A change is found, reported once, and then there is nothing new again.
    put_record(registry, "P-02", "device_supply", [("99454", 1, NOV_END)], days=17)
    assert not quick(registry)
    assert exported(settings, registry) == 1
    assert quick(registry)
    # No longer billable: a void, then nothing new (the "-" revision matches any such record).
    put_record(registry, "P-01", "device_supply", [], status="not_billable", reason="no data")
    assert not quick(registry)
    assert exported(settings, registry) == 1
    assert quick(registry)
    put_record(registry, "P-01", "device_supply", [], status="pending", reason="waiting")
    assert quick(registry)


@pytest.mark.parametrize(
    "change",
    [
        "new_billable_record",
        "lines_changed",
        "no_longer_billable",
        "same_lines_other_text",
        "record_vanished",
        "ledger_rows_from_before",
        "ledger_rolled_back",
    ],
)
def test_quick_check_never_misses_what_the_full_comparison_finds(
    registry: Engine, settings: Settings, change: str
) -> None:
    seed(registry)
    exported(settings, registry)
    key = (
        (EngagementRow.patient_id == "P-01")
        & (EngagementRow.kind == "treatment_management")
        & (EngagementRow.period_start == NOV_START)
    )
    if change == "new_billable_record":
        put_record(registry, "P-02", "setup", [("99453", 1, NOV_END)])
    with registry.begin() as conn:
        if change == "lines_changed":
            conn.execute(
                update(EngagementRow)
                .where(key)
                .values(
                    lines_json=json.dumps(
                        [{"code": "99457", "units": 1, "date_of_service": NOV_END.isoformat()}]
                    )
                )
            )
        elif change == "no_longer_billable":
            conn.execute(update(EngagementRow).where(key).values(status="not_billable"))
        elif change == "same_lines_other_text":
            # The same two lines in the other order: the quick check cannot tell, so it
            # leaves the decision to the full comparison, which finds nothing.
            conn.execute(
                update(EngagementRow)
                .where(key)
                .values(
                    lines_json=json.dumps(
                        [
                            {"code": c, "units": 1, "date_of_service": NOV_END.isoformat()}
                            for c in ("99458", "99457")
                        ]
                    )
                )
            )
        elif change == "record_vanished":
            conn.execute(delete(EngagementRow).where(key))
        elif change == "ledger_rows_from_before":
            conn.execute(update(ExportLedgerEntry).values(record_lines=None))
        elif change == "ledger_rolled_back":
            conn.execute(delete(ExportLedgerEntry).where(ExportLedgerEntry.patient_id == "P-01"))
    said_nothing_new = quick(registry)
    found = exported(settings, registry)
    assert not said_nothing_new
    # The records whose text changed but not their lines, and ledger rows written before the
    # stored lines were kept, are found unchanged by the full comparison.
    assert (found == 0) == (change in ("same_lines_other_text", "ledger_rows_from_before"))
    assert exported(settings, registry) == 0


def test_quick_check_ignores_records_whose_period_is_not_over(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    exported(settings, registry)
    put_record(
        registry,
        "P-01",
        "device_supply",
        [("99454", 1, DEC_START.replace(day=31))],
        period_start=DEC_START,
        period_end=DEC_START.replace(day=31),
    )
    assert quick(registry)
    assert exported(settings, registry) == 0


def test_rerun_with_nothing_new_reads_no_record_and_no_patient(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    exported(settings, registry)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(registry, "before_cursor_execute", seen)
    try:
        result = run_export(settings.export, registry, AS_OF, now=CLOCK)
    finally:
        event.remove(registry, "before_cursor_execute", seen)
    assert result.run_dir is None and result.lines == 0
    touching = [s for s in statements if "engagement_records" in s or "patients" in s]
    assert len(touching) == 1, touching
    assert "EXISTS" in touching[0] and "FROM patients" not in touching[0]
    assert not any("evidence_json" in s or "first_name" in s for s in statements)


# The export command's path (its CLI module and the billing cycle without metrics) in a
# fresh process: a rerun with nothing new, then which heavy libraries it imported.
RERUN_PROBE = """
import sys
from pathlib import Path
sys.path[:0] = sys.argv[3:]
from export_registry import AS_OF, CLOCK, export_settings
import rpmpipe.app.cli.export_cmds
from rpmpipe.app.cycle import run_billing_cycle
from rpmpipe.registry.db import open_registry
settings = export_settings(Path(sys.argv[1]), sys.argv[2])
engine = open_registry(settings.effective_database_url)
outcome = run_billing_cycle(settings, engine, AS_OF, CLOCK, compute=False)
engine.dispose()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pyarrow", "numpy", "pandas", "duckdb"})
print("PROBE", outcome.export.run_dir, outcome.export.lines, heavy)
"""


def test_rerun_with_nothing_new_decides_before_importing_pyarrow_and_numpy(
    registry: Engine, settings: Settings, tmp_path: Path, database_url: str
) -> None:
    seed(registry)
    tests = Path(__file__).resolve().parents[1]
    probe = [sys.executable, "-c", RERUN_PROBE, str(tmp_path), database_url]
    probe += [str(tests), str(tests / "billing_export")]

    def run() -> str:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    first = run()  # something to export: the audit and the evidence need pyarrow
    assert not first.startswith("PROBE None") and "pyarrow" in first, first
    assert run() == "PROBE None 0 []"

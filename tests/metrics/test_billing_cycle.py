"""One billing cycle (compute, persist, export, outcome) shared by export, schedule and demo."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, select, update

from rpmpipe import __version__
from rpmpipe.app.cycle import CycleStatus, run_billing_cycle
from rpmpipe.errors import EXIT_HELD, EXIT_OK
from rpmpipe.registry.models import EngagementRow, Patient
from rpmpipe.settings import Settings

NOW = datetime(2026, 4, 6, 7, 0, tzinfo=UTC)
AS_OF = date(2026, 4, 5)


def test_a_cycle_computes_persists_exports_and_says_how_it_went(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    first = run_billing_cycle(settings, engine, AS_OF, NOW)
    assert first.computed and first.records
    assert first.billable_lines == first.export.lines == 4
    assert (first.status, first.exit_code, first.held_message) == (
        CycleStatus.SUCCEEDED,
        EXIT_OK,
        "",
    )
    assert first.export.run_dir is not None
    manifest = json.loads((first.export.run_dir / "manifest.json").read_text())
    assert manifest["rpmpipe_version"] == __version__
    with engine.connect() as conn:
        assert conn.execute(select(EngagementRow.__table__)).all()

    again = run_billing_cycle(settings, engine, AS_OF, NOW)
    assert again.export.run_dir is None and again.export.lines == 0  # nothing billed twice


def test_a_cycle_without_computing_exports_what_is_persisted(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    nothing = run_billing_cycle(settings, engine, AS_OF, NOW, compute=False)
    assert (nothing.computed, nothing.records, nothing.export.lines) == (False, (), 0)


def test_held_lines_make_the_cycle_held_with_exit_3_and_the_reasons(
    seeded: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = seeded
    with engine.begin() as conn:
        conn.execute(update(Patient).values(payer_id="AETNA"))
    held = run_billing_cycle(settings, engine, AS_OF, NOW, out_dir=tmp_path / "out")
    assert (held.status, held.exit_code) == (CycleStatus.HELD, EXIT_HELD)
    assert held.held_message == (
        "held back 4 lines: payer AETNA is not configured in billing.payers (4)"
    )


def test_export_schedule_and_demo_run_the_one_cycle_function() -> None:
    # Nobody else in the application runs the export (or composes it with metrics) by hand;
    # `metrics --save` persists records without exporting, which is not a cycle.
    app_dir = Path(__file__).resolve().parents[2] / "rpmpipe" / "app"
    composing = sorted(
        str(p.relative_to(app_dir))
        for p in app_dir.rglob("*.py")
        if p.name != "cycle.py" and "run_export(" in p.read_text()
    )
    assert composing == []
    for module in ("cli/export_cmds.py", "schedule.py", "demo.py"):
        assert "run_billing_cycle(" in (app_dir / module).read_text(), module

"""`rpmpipe export`: a short summary, "nothing new to export" with exit 0 on a rerun, held-back
lines explained on stdout (exit 3 when nothing went out), and no as-of date in the future.

The CLI reads the real clock, so these tests bill October 2026 (over before they were written).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

from billing_identity import write_billing_toml
from export_registry import add_patient, put_record
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner, Result
from x12_validation import assert_valid_837

from rpmpipe.app.cli import app
from rpmpipe.app.cli.export_cmds import held_summary
from rpmpipe.billing_export.holds import Held, HoldReason
from rpmpipe.errors import EXIT_HELD
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import ExportLedgerEntry

OCT_START = date(2026, 10, 1)
OCT_SUPPLY_END = date(2026, 10, 30)
OCT_END = date(2026, 10, 31)
UNNAMED_NPI = "1456789019"  # valid check digit, not in billing.rendering_providers


def october(engine: Engine, patient_id: str, **patient: str) -> None:
    add_patient(engine, patient_id, **patient)
    put_record(
        engine,
        patient_id,
        "device_supply",
        [("99454", 1, OCT_SUPPLY_END)],
        period_start=OCT_START,
        period_end=OCT_SUPPLY_END,
    )
    put_record(
        engine,
        patient_id,
        "treatment_management",
        [("99457", 1, OCT_END)],
        period_start=OCT_START,
        period_end=OCT_END,
        minutes=Decimal(25),
    )


def invoke(tmp_path: Path, *extra: str, as_of: str = "2026-11-01", settings: str = "") -> Result:
    config = write_billing_toml(tmp_path / "rpmpipe.toml", settings)
    args = [
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        f"sqlite:///{tmp_path / 'registry.db'}",
        "export",
        "--as-of",
        as_of,
        "--out",
        str(tmp_path / "exports"),
        *extra,
    ]
    # The records are inserted without the readings and activities behind them (see
    # export_registry.export_settings): the documentation audit is tested in test_audit.py.
    env = {"RPMPIPE_CONFIG": "", "RPMPIPE_BILLING_AUDIT_BEFORE_EXPORT": "false"}
    return CliRunner().invoke(app, args, env=env)


def registry(tmp_path: Path) -> Engine:
    return open_registry(f"sqlite:///{tmp_path / 'registry.db'}")


def ledger_count(tmp_path: Path) -> int:
    engine = registry(tmp_path)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(ExportLedgerEntry)).scalar_one()
    engine.dispose()
    return int(count)


def test_export_command_prints_summary_then_nothing_new(tmp_path: Path) -> None:
    engine = registry(tmp_path)
    october(engine, "P-01")
    engine.dispose()
    first = invoke(tmp_path, "--skip-metrics")
    assert first.exit_code == 0, first.output
    assert "claims:       2" in first.output and "lines:        2" in first.output
    assert "total charge: 99.00" in first.output
    assert "held back" not in first.output
    [run_dir] = [p for p in (tmp_path / "exports").iterdir() if p.is_dir()]
    assert f"run dir:      {run_dir}" in first.output
    assert_valid_837(run_dir / "claims.837")
    second = invoke(tmp_path, "--skip-metrics")
    assert second.exit_code == 0, second.output
    assert "nothing new to export" in second.output


def test_held_lines_only_print_reasons_and_the_setting_to_add_and_exit_3(tmp_path: Path) -> None:
    engine = registry(tmp_path)
    october(engine, "P-01", ordering_npi=UNNAMED_NPI, last_name="Secretname")
    engine.dispose()
    result = invoke(tmp_path, "--skip-metrics")
    assert result.exit_code == EXIT_HELD == 3, result.output
    assert (
        f"held back 2 lines: ordering NPI {UNNAMED_NPI} has no name in "
        "billing.rendering_providers (2)"
    ) in result.stdout
    assert f'[billing.rendering_providers]\n  "{UNNAMED_NPI}" = "<LAST>, <FIRST>"' in result.stdout
    assert "nothing new to export" in result.stdout
    # Ids and NPIs only: no name, member id or birth date reaches the terminal.
    for phi in ("Secretname", "SECRETNAME", "Ada", "1EG4TE5MK01", "1944"):
        assert phi not in result.output
    assert ledger_count(tmp_path) == 0


def test_something_exported_with_some_lines_held_exits_3_and_lists_them(tmp_path: Path) -> None:
    engine = registry(tmp_path)
    october(engine, "P-01")
    october(engine, "P-02", payer_id="AETNA")
    october(engine, "P-03", icd10="")
    engine.dispose()
    result = invoke(tmp_path, "--skip-metrics")
    # Done, with lines held back: the same code as the nightly job's "held" run.
    assert result.exit_code == EXIT_HELD, result.output
    assert "lines:        2" in result.stdout
    assert "held back 4 lines:\n" in result.stdout
    assert "  no ICD-10 code on file (2); patients P-03\n" in result.stdout
    assert "  payer AETNA is not configured in billing.payers (2)\n" in result.stdout
    assert "[billing.payers.AETNA]" in result.stdout
    assert "rpmpipe import patients" in result.stdout
    assert ledger_count(tmp_path) == 2


def test_as_of_in_the_future_is_refused_before_metrics_or_export(tmp_path: Path) -> None:
    engine = registry(tmp_path)
    october(engine, "P-01")
    engine.dispose()
    result = invoke(tmp_path, as_of="2999-01-31")
    assert result.exit_code == 2  # a usage error: the date given cannot be billed yet
    assert "as-of date 2999-01-31 is after today" in result.output
    assert not (tmp_path / "exports").exists()
    assert ledger_count(tmp_path) == 0


def test_held_summary_merges_settings_by_table_and_caps_patient_ids() -> None:
    npi = HoldReason(
        "ordering NPI 1456789019 has no name in billing.rendering_providers",
        "billing.rendering_providers",
        '"1456789019" = "<LAST>, <FIRST>"',
    )
    other_npi = HoldReason(
        "ordering NPI 1987654328 has no name in billing.rendering_providers",
        "billing.rendering_providers",
        '"1987654328" = "<LAST>, <FIRST>"',
    )
    incomplete = HoldReason("patient record incomplete: zip")
    held = [Held(f"P-{n:02d}", "device_supply", OCT_START, incomplete, 1) for n in range(12)] + [
        Held("P-90", "device_supply", OCT_START, npi, 3),
        Held("P-91", "setup", OCT_START, other_npi, 1),
    ]
    text = held_summary(held)
    lines = text.splitlines()
    assert lines[:4] == [
        "held back 16 lines:",
        "  patient record incomplete: zip (12); patients P-00, P-01, P-02, P-03, P-04, P-05, "
        "P-06, P-07, P-08, P-09, +2 more",
        "  ordering NPI 1456789019 has no name in billing.rendering_providers (3)",
        "  ordering NPI 1987654328 has no name in billing.rendering_providers (1)",
    ]
    assert text.count("[billing.rendering_providers]") == 1
    assert '  "1456789019" = "<LAST>, <FIRST>"\n  "1987654328" = "<LAST>, <FIRST>"' in text


def test_export_help_explains_the_command_and_its_exit_codes() -> None:
    result = CliRunner().invoke(app, ["export", "--help"])
    assert result.exit_code == 0
    assert "837P" in result.output and "--as-of" in result.output
    assert "3 when lines were held back (whether or not others went out)" in " ".join(
        result.output.split()
    )


def test_export_command_rejects_a_bad_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path), "export", "--as-of", "12/01/2026"],
        env={"RPMPIPE_CONFIG": ""},
    )
    assert result.exit_code == 2
    assert "--as-of" in result.output


def test_export_summary_says_test_or_production(tmp_path: Path) -> None:
    engine = registry(tmp_path)
    october(engine, "P-01")
    engine.dispose()
    test = invoke(tmp_path, "--skip-metrics")
    assert test.exit_code == 0, test.output
    assert "usage:        test (ISA15 T)" in test.stdout
    second = registry(tmp_path)
    october(second, "P-02")
    second.dispose()
    real = CliRunner().invoke(
        app,
        [
            "--config",
            str(write_billing_toml(tmp_path / "p.toml")),
            "--data-dir",
            str(tmp_path / "data"),
            "--database-url",
            f"sqlite:///{tmp_path / 'registry.db'}",
            "export",
            "--as-of",
            "2026-11-01",
            "--out",
            str(tmp_path / "exports"),
            "--skip-metrics",
        ],
        env={
            "RPMPIPE_CONFIG": "",
            "RPMPIPE_BILLING_USAGE": "P",
            "RPMPIPE_BILLING_AUDIT_BEFORE_EXPORT": "false",  # records without evidence
        },
    )
    assert real.exit_code == 0, real.output
    assert "usage:        production (ISA15 P)" in real.stdout


def test_export_without_a_billing_identity_refuses_naming_each_missing_key(
    tmp_path: Path,
) -> None:
    engine = registry(tmp_path)
    october(engine, "P-01")
    engine.dispose()
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "data"),
            "--database-url",
            f"sqlite:///{tmp_path / 'registry.db'}",
            "export",
            "--as-of",
            "2026-11-01",
            "--skip-metrics",
        ],
        env={"RPMPIPE_CONFIG": ""},
    )
    assert result.exit_code != 0
    for key in ("billing.provider_name", "billing.provider_npi", "billing.receiver_id"):
        assert key in result.output
    assert ledger_count(tmp_path) == 0

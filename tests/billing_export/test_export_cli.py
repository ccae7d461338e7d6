"""`rpmpipe export`: a short summary, and "nothing new to export" with exit 0 on a rerun."""

from __future__ import annotations

from pathlib import Path

from export_registry import NOV_END, add_patient, put_record
from typer.testing import CliRunner
from x12_validation import assert_valid_837

from rpmpipe.cli import app
from rpmpipe.registry.db import open_registry


def test_export_command_prints_summary_then_nothing_new(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = open_registry(url)
    add_patient(engine, "P-01")
    put_record(engine, "P-01", "device_supply", [("99454", 1, NOV_END)])
    put_record(engine, "P-01", "treatment_management", [("99457", 1, NOV_END)])
    engine.dispose()
    out = tmp_path / "exports"
    args = [
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        url,
        "export",
        "--as-of",
        "2026-12-01",
        "--out",
        str(out),
        "--skip-metrics",
    ]
    runner = CliRunner()
    first = runner.invoke(app, args, env={"RPMPIPE_CONFIG": ""})
    assert first.exit_code == 0, first.output
    assert "claims:       1" in first.output and "lines:        2" in first.output
    assert "total charge: 99.00" in first.output
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    assert f"run dir:      {run_dir}" in first.output
    assert_valid_837(run_dir / "claims.837")
    second = runner.invoke(app, args, env={"RPMPIPE_CONFIG": ""})
    assert second.exit_code == 0, second.output
    assert "nothing new to export" in second.output


def test_export_command_rejects_a_bad_date(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path), "export", "--as-of", "12/01/2026"],
        env={"RPMPIPE_CONFIG": ""},
    )
    assert result.exit_code == 2
    assert "--as-of" in result.output


def test_export_help_explains_the_command() -> None:
    result = CliRunner().invoke(app, ["export", "--help"])
    assert result.exit_code == 0
    assert "837P" in result.output and "--as-of" in result.output

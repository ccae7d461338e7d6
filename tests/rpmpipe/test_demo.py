"""`rpmpipe demo` end to end: broker, fleet, ingest, metrics, export, on embedded defaults."""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner
from x12_validation import assert_valid_837

from rpmpipe.app.cli import app
from rpmpipe.app.demo import MARKER, run_demo
from rpmpipe.errors import RpmpipeError
from rpmpipe.settings import load_settings


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    messages: list[str] = []
    summary = run_demo(
        load_settings(None, env={}),
        out,
        patients=10,
        days=35,
        seed=3,
        now=datetime(2026, 11, 20, 12, tzinfo=UTC),
        progress=messages.append,
    )

    readings = ds.dataset(
        out / "data" / "readings", format="parquet", partitioning="hive"
    ).to_table()
    assert readings.num_rows == summary.readings_stored > 0
    assert len(set(readings.column("dedup_key").to_pylist())) == readings.num_rows
    assert (
        sum(summary.quarantined.values()) > 0
    )  # the fleet injects faults; they are kept, not lost
    assert any((out / "data" / "quarantine").rglob("*.parquet"))

    assert summary.export_dir is not None
    with (summary.export_dir / "charges.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary.exported_lines > 0
    assert {r["cpt"] for r in rows} >= {"99453", "99454"}
    assert_valid_837(summary.export_dir / "claims.837")
    # both billable and not-billable patients, so the table means something
    statuses = {p.status for p in summary.per_patient}
    assert statuses == {"billable", "not billable"}
    # The codes column words the lines as the reasons do: "99457 + 2x 99458".
    periods = [q for p in summary.per_patient for q in (p.supply, p.month) if q is not None]
    billed = [(q.codes, m[1]) for q in periods if (m := re.search(r"\(billed ([^)]+)\)", q.reason))]
    assert billed and all(codes == in_reason for codes, in_reason in billed)
    assert any(" + " in codes for codes, _ in billed)
    assert any("ingest subscribed" in m for m in messages)
    # One appeal packet for a demo claim, private, beside the export.
    assert summary.appeal_packet is not None and summary.appeal_packet.suffix == ".pdf"
    assert summary.appeal_packet.read_bytes()[:5] == b"%PDF-"
    assert summary.appeal_packet.stat().st_mode & 0o777 == 0o600
    assert (summary.export_dir / "evidence.parquet").is_file()


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(RpmpipeError, match="not made by rpmpipe demo"):
        run_demo(
            load_settings(None, env={}),
            tmp_path,
            patients=2,
            days=31,
            seed=1,
            now=datetime.now(UTC),
            progress=lambda _m: None,
        )
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_cli_prints_the_summary_and_reruns_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["demo", "--out", str(out), "--patients", "5", "--days", "31"])
        assert result.exit_code == 0, result.output
        assert "billable units per code" in result.stdout
        assert (out / MARKER).exists()
    runs = [p for p in (out / "exports").iterdir() if p.is_dir()]
    assert len(runs) == 1  # the rerun replaced the old output


def test_demo_settings_show_every_billing_key_with_a_comment(tmp_path: Path) -> None:
    import dataclasses

    from rpmpipe.app.demo_settings import DEMO_BILLING_TOML, demo_billing, write_demo_settings
    from rpmpipe.settings import BillingSettings, PayerSettings

    lines = DEMO_BILLING_TOML.splitlines()
    tables = {"charges", "modifiers", "payers", "rendering_providers", "rendering_taxonomies"}
    for f in dataclasses.fields(BillingSettings):
        if f.name in tables - {"rendering_providers", "rendering_taxonomies", "payers"}:
            continue  # the charge master and modifiers keep their defaults
        shown = [
            ln for ln in lines if ln.lstrip("# ").startswith((f"{f.name} ", f"[billing.{f.name}"))
        ]
        assert shown, f"demo settings lack billing.{f.name}"
        assert "#" in shown[0], f"billing.{f.name} has no comment"
    for f in dataclasses.fields(PayerSettings):
        assert any(ln.lstrip("# ").startswith(f"{f.name} ") for ln in lines), f.name
    billing = demo_billing(write_demo_settings(tmp_path))
    assert billing.missing_identity() == [] and billing.usage == "T"

"""``rpmpipe report`` files: private, no PHI in names, escaped, replaced whole; the nightly
job and the demo write one; ``--serve`` listens on localhost only."""

from __future__ import annotations

import dataclasses
import shutil
import stat
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from rpmpipe.app.demo import DemoSummary, run_demo
from rpmpipe.app.demo_report import render_summary
from rpmpipe.app.demo_settings import DEMO_SETTINGS_NAME
from rpmpipe.app.report.build import build_report
from rpmpipe.app.report.inputs import gather
from rpmpipe.app.report.serve import make_server
from rpmpipe.app.report.site import ReportError, write_site
from rpmpipe.app.schedule import report_dir, run_job
from rpmpipe.metrics.job import compute
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import CareActivity, ExportLedgerEntry, Patient
from rpmpipe.settings import Settings, load_settings
from rpmpipe.simulators.fleet import ORDERING_PROVIDERS

NOW = datetime(2026, 11, 20, 17, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSummary, Settings]:
    out = tmp_path_factory.mktemp("site") / "demo"
    summary = run_demo(
        load_settings(None, env={}), out, patients=8, days=40, seed=11, now=NOW, progress=print
    )
    # The demo's own billing identity (a test clinic) and named practitioners.
    settings = load_settings(
        out / DEMO_SETTINGS_NAME, env={}, overrides={"data_dir": str(out / "data")}
    )
    billing = dataclasses.replace(settings.billing, rendering_providers=dict(ORDERING_PROVIDERS))
    return summary, settings.replace(billing=billing)


def test_report_files_are_private_and_their_names_hold_no_phi(
    demo: tuple[DemoSummary, Settings],
) -> None:
    summary, settings = demo
    site = summary.out / "report"
    assert summary.report_index == site / "index.html"
    engine = open_registry(settings.effective_database_url)
    with engine.connect() as conn:
        people = conn.execute(
            select(Patient.patient_id, Patient.first_name, Patient.last_name, Patient.mrn)
        ).all()
    phi = {v.lower() for row in people for v in row if v}
    paths = [site, *site.rglob("*")]
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
        assert not any(word in path.name.lower() for word in phi), path.name
    pages = list(site.rglob("*.html"))
    assert {p.name for p in pages} == {"index.html", "totals.html", "patient.html"}
    shard = (site / "patients" / "shard-0001.js").read_text()
    assert len(people) == 8 and all(f'"id":"{row[0]}"' in shard for row in people)
    for page in pages:
        assert 'class="phi-banner"' in page.read_text()
    # The demo's summary names the index page.
    assert str(site / "index.html") in render_summary(summary)


def test_registry_text_is_escaped_in_the_pages(
    demo: tuple[DemoSummary, Settings], tmp_path: Path
) -> None:
    summary, settings = demo
    engine = open_registry(settings.effective_database_url)
    records = compute(settings.metrics, engine, summary.as_of)
    inputs = gather(settings, engine, summary.as_of, records, NOW)
    pid = sorted(inputs.patients)[0]
    hostile = dataclasses.replace(inputs.patients[pid], name="<script>alert(1)</script>")
    inputs = dataclasses.replace(inputs, patients={**inputs.patients, pid: hostile})
    write_site(inputs, tmp_path / "site")
    for name in ("patients/shard-0001.js", "worklist-data.js", "index.html"):
        text = (tmp_path / "site" / name).read_text()
        assert "<script>alert" not in text, name
        assert "\\u003cscript\\u003e" in text or "&lt;script&gt;" in text, name


def test_report_replaces_its_previous_self_and_refuses_other_directories(
    demo: tuple[DemoSummary, Settings], tmp_path: Path
) -> None:
    summary, settings = demo
    engine = open_registry(settings.effective_database_url)
    out = tmp_path / "site"
    build_report(settings, engine, summary.as_of, out, now=NOW)
    (out / "stale.html").write_text("from an older report")
    build_report(settings, engine, summary.as_of, out, now=NOW)
    assert not (out / "stale.html").exists() and (out / "index.html").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["site"]  # no temp or old directory left

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not an rpmpipe report"):
        build_report(settings, engine, summary.as_of, precious, now=NOW)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_an_existing_parent_directory_keeps_its_mode(
    demo: tuple[DemoSummary, Settings], tmp_path: Path
) -> None:
    summary, settings = demo
    engine = open_registry(settings.effective_database_url)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    build_report(settings, engine, summary.as_of, shared / "site", now=NOW)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "site").stat().st_mode) == 0o700


def test_nightly_job_writes_the_days_report_next_to_the_export(
    demo: tuple[DemoSummary, Settings], tmp_path: Path
) -> None:
    _, settings = demo
    engine = open_registry(settings.effective_database_url)
    outcome = run_job(settings, engine, lambda: NOW + timedelta(days=1))
    assert outcome.report == report_dir(settings, outcome.as_of) / "index.html"
    assert outcome.report.exists()
    assert outcome.report.parent.parent == settings.exports_dir
    # Beside the export runs, and rerunning the day replaces it.
    again = run_job(settings, engine, lambda: NOW + timedelta(days=1, minutes=5))
    assert again.report == outcome.report and again.report.exists()


def test_serve_listens_on_localhost_only(demo: tuple[DemoSummary, Settings]) -> None:
    summary, _ = demo
    server = make_server(summary.out / "report")
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html") as resp:  # noqa: S310
            body = resp.read().decode()
            assert resp.headers["Cache-Control"] == "no-store"
        assert "At-risk worklist" in body
    finally:
        server.shutdown()
        server.server_close()


def test_an_exported_month_that_changed_waits_for_review_in_the_report(
    demo: tuple[DemoSummary, Settings], tmp_path: Path
) -> None:
    summary, _ = demo
    world = tmp_path / "demo"
    shutil.copytree(summary.out, world)
    settings = demo[1].replace(data_dir=world / "data")
    engine = open_registry(settings.effective_database_url)
    with engine.connect() as conn:
        pid, month = conn.execute(
            select(ExportLedgerEntry.patient_id, ExportLedgerEntry.period_start).where(
                ExportLedgerEntry.code == "99470"
            )
        ).first()  # type: ignore[misc]
    # A late time entry for a month exported as 99470 (10-19 minutes): 45 more minutes make
    # it 99457 + 99458, a change the billing team must review.
    late = datetime(month.year, month.month, 15, 18, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(CareActivity).values(
                activity_id="A-LATE-1",
                patient_id=pid,
                staff_id="S-9",
                started_at=late,
                minutes=Decimal(45),
                kind="phone_call",
                interactive=True,
                program="RPM",
            )
        )
    out = tmp_path / "site"
    build_report(settings, engine, summary.as_of, out, now=NOW)
    reviews = (out / "reviews.csv").read_text().splitlines()
    mine = [r for r in reviews if r.startswith(f"{pid},treatment_management,{month.isoformat()}")]
    assert len(mine) == 1, reviews
    assert "minutes" in mine[0] and "the next export reports it" in mine[0]
    assert "Corrections waiting for review (1)" in (out / "totals.html").read_text()

"""The report in a real browser: headless Chromium opens the pages from disk, draws the
charts without a console error, and shows the same figures as ``metrics --format json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from report_browser import Console, browser
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.app.demo import run_demo
from rpmpipe.settings import load_settings

NOW = datetime(2026, 11, 20, 17, tzinfo=UTC)


@dataclass(frozen=True)
class Site:
    data_dir: Path
    as_of: date
    out: Path
    shots: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The demo's whole pipeline (broker, ingest, metrics, export), then ``rpmpipe report``."""
    root = tmp_path_factory.mktemp("report")
    summary = run_demo(
        load_settings(None, env={}),
        root / "demo",
        patients=14,
        days=45,
        seed=5,
        now=NOW,
        progress=lambda _m: None,
    )
    out = root / "site"
    data_dir = root / "demo" / "data"
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(data_dir),
            "report",
            "--as-of",
            summary.as_of.isoformat(),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output
    shots = root / "screenshots"
    shots.mkdir()
    return Site(data_dir, summary.as_of, out, shots)


def _metrics_json(site: Site) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(site.data_dir),
            "--log-level",
            "ERROR",
            "metrics",
            "--as-of",
            site.as_of.isoformat(),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


def _expected_rows(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, str]]:
    """The worklist's figures, derived here from the contract's JSON records."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    supply = [r for r in records if r["kind"] == "device_supply" and r["status"] == "pending"]
    months = [
        r for r in records if r["kind"] == "treatment_management" and r["status"] == "pending"
    ]
    for r in supply:
        f = r["forecast"]
        row = out.setdefault((r["patient_id"], r["program"]), _empty())
        if f is None:
            row.update(days_so_far=str(r["transmission_days"]), days_left="")
            continue
        row.update(
            days_so_far=str(f["days_so_far"]),
            days_left=str(f["days_still_possible"]),
            can_reach_16="yes" if f["can_reach_16"] else "no",
            can_reach_2="yes" if f["days_so_far"] + f["days_still_possible"] >= 2 else "no",
        )
    for r in months:
        row = out.setdefault((r["patient_id"], r["program"]), _empty())
        row.update(
            minutes_so_far=_minutes_text(r["management_minutes"]),
            interactive_contact="yes" if r["interactive_communications"] > 0 else "no",
        )
    return out


def _minutes_text(value: float) -> str:
    minutes = Decimal(str(value))
    return str(int(minutes)) if minutes == int(minutes) else str(minutes.normalize())


def _empty() -> dict[str, str]:
    return {
        "days_so_far": "0",
        "days_left": "",
        "can_reach_16": "yes",
        "can_reach_2": "yes",
        "minutes_so_far": "0",
        "interactive_contact": "no",
    }


COLS = ("days_so_far", "days_left", "can_reach_16", "can_reach_2", "minutes_so_far")
COLS += ("interactive_contact",)


def _dom_rows(page: Any) -> dict[tuple[str, str], dict[str, str]]:
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        "#worklist-body tr",
        """trs => trs.map(tr => {
            const row = {patient_id: tr.dataset.patient, program: tr.dataset.program};
            tr.querySelectorAll('td[data-col]').forEach(td => { row[td.dataset.col] = td.textContent; });
            return row;
        })""",
    )
    return {(r["patient_id"], r["program"]): {c: r[c] for c in COLS} for r in rows}


def _wait_for_charts(page: Any) -> int:
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=20_000)
    charts = page.locator(".chart[data-chart]").count()
    if charts:
        page.wait_for_function(
            "document.querySelectorAll('.chart[data-drawn=\"true\"] svg').length === "
            "document.querySelectorAll('.chart[data-chart]').length",
            timeout=20_000,
        )
    return int(charts)


def test_worklist_page_shows_the_figures_of_metrics_json_without_console_errors(
    site: Site,
) -> None:
    expected = _expected_rows(_metrics_json(site))
    assert expected, "the demo fleet has open periods"
    with browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        console = Console(page)
        page.goto((site.out / "index.html").as_uri())
        assert _wait_for_charts(page) >= 1
        page.select_option("#wl-size", "1000")  # every row of this fleet on one page
        shown = _dom_rows(page)
        page.screenshot(path=str(site.shots / "worklist.png"), full_page=True)
        assert console.errors == []
        assert page.locator(".phi-banner").is_visible()
        # Filtering in the page: at risk only leaves the rows marked at risk.
        page.check("#wl-at-risk")
        at_risk = page.locator("#worklist-body tr").count()
        assert at_risk == page.locator("#worklist-body tr.risk").count()
    assert shown == expected
    assert (site.shots / "worklist.png").stat().st_size > 10_000


def test_patient_page_draws_its_charts_and_matches_metrics_json(site: Site) -> None:
    records = _metrics_json(site)
    expected = _expected_rows(records)
    with browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        console = Console(page)
        page.goto((site.out / "index.html").as_uri())
        # The most urgent patient, reached the way a care manager does: by the link.
        first = page.locator("#worklist-body tr").first
        pid = first.get_attribute("data-patient")
        program = first.get_attribute("data-program")
        first.locator("a").click()
        page.wait_for_load_state()
        assert "patient.html#" in page.url and pid not in page.url
        assert _wait_for_charts(page) == 2  # days with data, minutes per month
        now = {c: page.locator(f'#now td[data-col="{c}"]').text_content() or "" for c in COLS}
        page.screenshot(path=str(site.shots / "patient.png"), full_page=True)
        assert console.errors == []
        assert page.get_by_role("heading", name="Claims").is_visible()
    assert pid is not None and program is not None
    assert now == expected[(pid, program)]
    assert (site.shots / "patient.png").stat().st_size > 10_000

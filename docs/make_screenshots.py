"""Regenerate docs/worklist.png and docs/patient.png: the demo fleet's report in Chromium.

.venv/bin/python docs/make_screenshots.py
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import sync_playwright

from rpmpipe.app.demo import run_demo
from rpmpipe.settings import load_settings

DOCS = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARGS += ["--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_demo(
            load_settings(None, env={}),
            Path(tmp) / "demo",
            patients=25,
            days=45,
            seed=7,
            now=datetime(2026, 11, 20, 17, tzinfo=UTC),
            progress=lambda _m: None,
        )
        assert summary.report_index is not None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(summary.report_index.as_uri())
            page.wait_for_selector(".chart[data-drawn] svg")
            page.screenshot(path=str(DOCS / "worklist.png"))
            page.locator("#worklist-body tr a").first.click()
            page.wait_for_function(
                "document.querySelectorAll('.chart[data-drawn] svg').length === 2"
            )
            page.screenshot(path=str(DOCS / "patient.png"), full_page=True)
            browser.close()


if __name__ == "__main__":
    main()

"""The as-of rule lives in one module: today and the last full day in a zone, and one error."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rpmpipe.asof import check_as_of, is_future, last_full_day, parse_day, today_in
from rpmpipe.errors import EXIT_USAGE, AsOfError, UsageError

NY = ZoneInfo("America/New_York")
# 02:00 UTC on Apr 6 is still Apr 5 in New York, already Apr 6 in Tokyo.
LATE_EVENING_NY = datetime(2026, 4, 6, 2, 0, tzinfo=UTC)


def test_today_and_the_last_full_day_are_dates_in_the_zone_not_utc() -> None:
    assert today_in(NY, LATE_EVENING_NY) == date(2026, 4, 5)
    assert today_in("Asia/Tokyo", LATE_EVENING_NY) == date(2026, 4, 6)
    assert last_full_day(NY, LATE_EVENING_NY) == date(2026, 4, 4)
    assert last_full_day("UTC", LATE_EVENING_NY) == date(2026, 4, 5)


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        today_in(NY, datetime(2026, 4, 6, 2, 0))  # noqa: DTZ001 - the point of the test


def test_an_as_of_after_today_is_one_error_with_code_and_fields() -> None:
    check_as_of(date(2026, 4, 5), NY, LATE_EVENING_NY)  # today itself is fine
    assert not is_future(date(2026, 4, 5), NY, LATE_EVENING_NY)
    with pytest.raises(AsOfError) as caught:
        check_as_of(date(2026, 4, 6), NY, LATE_EVENING_NY)
    err = caught.value
    assert isinstance(err, UsageError) and err.exit_code == EXIT_USAGE
    assert err.code == "as_of_future"
    assert err.fields == {
        "as_of": date(2026, 4, 6),
        "today": date(2026, 4, 5),
        "zone": "America/New_York",
    }
    assert str(err).startswith(
        "as-of date 2026-04-06 is after today (2026-04-05 in America/New_York)"
    )


def test_a_bad_date_names_the_option() -> None:
    assert parse_day("2026-04-05") == date(2026, 4, 5)
    with pytest.raises(UsageError, match=r"--before: expected a date YYYY-MM-DD, got 'April'") as e:
        parse_day("April", "--before")
    assert e.value.code == "bad_date"


def test_metrics_and_export_raise_the_same_as_of_error(tmp_path: Path) -> None:
    from rpmpipe.billing_export.export import run_export
    from rpmpipe.metrics.job import compute_and_persist
    from rpmpipe.registry.db import open_registry
    from rpmpipe.settings import load_settings

    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path)})
    engine = open_registry(settings.effective_database_url)
    for run in (compute_and_persist, lambda s, e, d, n: run_export(s.export, e, d, now=n)):
        with pytest.raises(AsOfError, match="as-of date 2026-04-06 is after today"):
            run(settings, engine, date(2026, 4, 6), LATE_EVENING_NY)


def test_no_other_module_computes_today_or_checks_the_as_of_itself() -> None:
    # One home for the rule: nobody else defines these helpers or raises its own as-of error.
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("rpmpipe", "metrics", "billing_export", "ingest"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "asof.py":
                continue
            text = path.read_text(encoding="utf-8")
            for needle in ("def check_as_of", "def today_in", "def yesterday", "FutureAsOfError"):
                if needle in text:
                    offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []

"""A run interrupted between the ledger and publishing is finished wherever it was written,
and the ledger is on disk before any run directory is published."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from export_registry import AS_OF, CLOCK, NOV_END, add_patient, export_settings, put_record
from sqlalchemy import Engine, func, select, text

from rpmpipe.billing_export import export as export_module
from rpmpipe.billing_export.export import PARTIAL_PREFIX, ExportResult, run_export
from rpmpipe.errors import ExportError
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import ExportLedgerEntry, ExportRun
from rpmpipe.settings import Settings


class Crash(Exception):
    """Stands for the process dying at a chosen point of the run."""


def crash(_run_dir: Path) -> None:
    raise Crash


def seed(engine: Engine) -> None:
    for pid in ("P-01", "P-02"):
        add_patient(engine, pid)
        put_record(engine, pid, "device_supply", [("99454", 1, NOV_END)], days=20)


def export(
    settings: Settings, engine: Engine, out: Path | None = None, **kw: object
) -> ExportResult:
    return run_export(settings.export, engine, AS_OF, out_dir=out, now=CLOCK, **kw)  # type: ignore[arg-type]


def ledger_lines(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ExportLedgerEntry)).scalar_one())


def runs(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(ExportRun.run_id, ExportRun.status)).all())


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return export_settings(tmp_path, database_url)


def test_a_run_killed_after_the_ledger_is_published_by_an_export_to_another_out(
    registry: Engine, settings: Settings, tmp_path: Path
) -> None:
    seed(registry)
    first_out = tmp_path / "monday"
    with pytest.raises(Crash):
        export(settings, registry, first_out, _after_ledger=crash)
    [partial] = [p for p in first_out.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    run_id = partial.name.removeprefix(PARTIAL_PREFIX)
    assert runs(registry) == {run_id: "recorded"}
    # The next night's export writes elsewhere: it must still find and finish Monday's run.
    result = export(settings, registry, tmp_path / "tuesday")
    assert result.recovered == (run_id,)
    assert result.run_dir is None  # nothing new: the lines are billed in the recovered run
    assert (first_out / run_id / "claims.837").is_file() and not partial.exists()
    assert runs(registry) == {run_id: "published"}
    assert ledger_lines(registry) == 2


def test_a_recorded_run_whose_files_are_gone_is_rolled_back_and_exported_again(
    registry: Engine, settings: Settings, tmp_path: Path
) -> None:
    seed(registry)
    with pytest.raises(Crash):
        export(settings, registry, tmp_path / "monday", _after_ledger=crash)
    [partial] = [p for p in (tmp_path / "monday").iterdir() if p.name.startswith(PARTIAL_PREFIX)]
    lost = partial.name.removeprefix(PARTIAL_PREFIX)
    shutil.rmtree(partial)  # the files never reached the disk (or someone removed them)
    result = export(settings, registry, tmp_path / "tuesday")
    assert lost in result.recovered
    assert result.run_dir is not None and result.lines == 2  # billed once, in this run
    assert runs(registry)[lost] == "rolled_back"
    assert ledger_lines(registry) == 2


def test_a_recorded_run_in_a_directory_that_cannot_be_found_stops_the_export(
    registry: Engine, settings: Settings, tmp_path: Path
) -> None:
    seed(registry)
    with pytest.raises(Crash):
        export(settings, registry, tmp_path / "mounted" / "exports", _after_ledger=crash)
    shutil.rmtree(tmp_path / "mounted")  # e.g. a share that is not mounted on this machine
    with pytest.raises(ExportError, match="cannot be found"):
        export(settings, registry, tmp_path / "tuesday")
    assert ledger_lines(registry) == 2  # nothing rolled back, nothing billed again


def test_registry_commits_are_durable_sqlite_synchronous_full(tmp_path: Path) -> None:
    engine = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    engine.dispose()


def test_the_ledger_is_committed_before_the_run_directory_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    engine = open_registry(url)
    seed(engine)
    settings = export_settings(tmp_path, url)
    seen: list[tuple[str, int, str | None]] = []
    real_replace = os.replace

    def watching_replace(src: object, dst: object) -> None:
        if Path(str(src)).name.startswith(PARTIAL_PREFIX):
            # What another process (or the disk after a power cut) sees at the rename.
            with sqlite3.connect(db) as other:
                lines = other.execute("SELECT count(*) FROM export_ledger").fetchone()[0]
                status = other.execute("SELECT status FROM export_runs").fetchone()
                sync = other.execute("PRAGMA synchronous").fetchone()[0]
            seen.append((Path(str(dst)).name, lines, status[0] if status else None))
            assert sync in (1, 2)  # a fresh raw connection; the registry's own is checked above
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(export_module.os, "replace", watching_replace)
    result = export(settings, engine)
    assert result.run_id is not None
    assert seen == [(result.run_id, 2, "recorded")]  # ledger and run row first, then the rename
    assert runs(engine) == {result.run_id: "published"}
    engine.dispose()

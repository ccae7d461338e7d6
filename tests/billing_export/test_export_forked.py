"""The claim files of a run are written by a forked child while the run builds its evidence:
the same bytes as one process writes, and a child's failure fails the run with nothing billed."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from export_registry import AS_OF, CLOCK, export_settings
from sqlalchemy import Engine, func, select
from test_export_run import seed

import rpmpipe.billing_export.export as export_module
from rpmpipe import forked as forked_module
from rpmpipe.billing_export.export import ExportResult, run_export
from rpmpipe.errors import ExportError
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import ExportLedgerEntry


def _ledger_lines(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ExportLedgerEntry)).scalar_one())


def _writer_pids(monkeypatch: pytest.MonkeyPatch, record: Path) -> None:
    """Note the pid of the process that writes the claim files (a fork inherits the patch)."""
    real = export_module._write_claim_files

    def noting(*args: Any) -> dict[str, str]:
        with record.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args)

    monkeypatch.setattr(export_module, "_write_claim_files", noting)


def test_a_forked_and_a_one_process_export_write_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = {}
    for fork in (True, False):
        name = "forked" if fork else "one"
        monkeypatch.setattr(forked_module, "can_fork", lambda fork=fork: fork)
        pids = tmp_path / f"{name}.pids"
        _writer_pids(monkeypatch, pids)
        url = f"sqlite:///{tmp_path / name}.db"
        engine = open_registry(url)
        seed(engine)
        result = run_export(export_settings(tmp_path / name, url).export, engine, AS_OF, now=CLOCK)
        assert result.run_dir is not None and result.lines == 4
        assert _ledger_lines(engine) == 4
        engine.dispose()
        outputs[name] = {p.name: p.read_bytes() for p in result.run_dir.iterdir()}
        writers = [int(p) for p in pids.read_text().split()]
        assert len(writers) == 1 and (writers[0] != os.getpid()) is fork
        monkeypatch.undo()
    assert sorted(outputs["forked"]) == [
        "charges.csv",
        "claims.837",
        "evidence.csv",
        "evidence.parquet",
        "manifest.json",
    ]
    assert outputs["forked"] == outputs["one"]


def _exported(engine: Engine, settings: Any) -> ExportResult:
    return run_export(settings.export, engine, AS_OF, now=CLOCK)


def test_a_child_that_cannot_write_a_claim_file_fails_the_run_and_nothing_is_billed(
    registry: Engine, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = export_settings(tmp_path, database_url)
    seed(registry)

    def disk_full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(forked_module, "can_fork", lambda: True)
    monkeypatch.setattr(export_module, "write_837p", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        _exported(registry, settings)
    assert _ledger_lines(registry) == 0
    assert not [p for p in settings.exports_dir.iterdir() if not p.name.startswith(".")]
    monkeypatch.undo()
    result = _exported(registry, settings)  # the next run discards the partial dir, bills once
    assert result.lines == 4 and len(result.recovered) == 1 and _ledger_lines(registry) == 4


def test_a_child_killed_while_writing_is_an_export_error_and_nothing_is_billed(
    registry: Engine, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = export_settings(tmp_path, database_url)
    seed(registry)

    def killed(*_args: object) -> dict[str, str]:
        os._exit(137)

    monkeypatch.setattr(forked_module, "can_fork", lambda: True)
    monkeypatch.setattr(export_module, "_write_claim_files", killed)
    with pytest.raises(ExportError, match="exit code 137.*nothing of the run was recorded"):
        _exported(registry, settings)
    assert _ledger_lines(registry) == 0
    monkeypatch.undo()
    assert _exported(registry, settings).lines == 4 and _ledger_lines(registry) == 4

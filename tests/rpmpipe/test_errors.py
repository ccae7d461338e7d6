"""Errors carry a code and fields that callers branch on, never their message text."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpmpipe.errors import (
    EXIT_DATA,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ConfigError,
    RegistryImportError,
    RpmpipeError,
    ServiceUnavailable,
)
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.settings import load_settings


def test_every_error_has_a_code_fields_and_an_exit_code_by_kind() -> None:
    assert (RpmpipeError("x").code, RpmpipeError("x").exit_code) == ("error", EXIT_DATA)
    bad = ConfigError("setting 'log_level': nope", setting="log_level")
    assert (bad.code, bad.fields, bad.exit_code) == (
        "bad_setting",
        {"setting": "log_level"},
        EXIT_USAGE,
    )
    away = ServiceUnavailable("down", service="database", where="db.example:5432/x")
    assert (away.exit_code, away.fields["service"]) == (EXIT_UNAVAILABLE, "database")


def test_a_bad_setting_names_its_source_through_the_setting_field() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"RPMPIPE_RULES_SUPPLY_PERIOD": "weekly"})
    assert caught.value.fields["setting"] == "rules.supply_period"
    assert "(from RPMPIPE_RULES_SUPPLY_PERIOD)" in str(caught.value)


def test_an_import_row_naming_an_unknown_patient_has_the_unknown_reference_code(
    tmp_path: Path,
) -> None:
    engine = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    row = {"device_id": "BP-1", "kind": "bp_cuff", "model": "X"}
    import_rows(engine, "devices", [row], source="t")
    assignment = {"device_id": "BP-1", "patient_id": "P-404", "start_date": "2026-01-01"}
    with pytest.raises(RegistryImportError) as caught:
        import_rows(engine, "assignments", [{**assignment, "end_date": ""}], source="t")
    assert (caught.value.code, caught.value.field) == ("unknown_reference", "patient_id")
    assert caught.value.fields["row"] == 1

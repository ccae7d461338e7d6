"""Misspelt settings are refused everywhere: environment variables name the closest real one,
and an unknown key or section in the file names the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.errors import EXIT_USAGE, ConfigError
from rpmpipe.settings import environment_names, load_settings


def test_a_misspelt_variable_is_an_error_naming_the_closest_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"RPMPIPE_RULES_SUPLY_PERIOD": "calendar_month"})
    assert str(caught.value) == (
        "environment variable RPMPIPE_RULES_SUPLY_PERIOD names no setting; "
        "did you mean RPMPIPE_RULES_SUPPLY_PERIOD?"
    )
    assert (caught.value.code, caught.value.fields) == (
        "unknown_setting",
        {"variable": "RPMPIPE_RULES_SUPLY_PERIOD"},
    )


def test_a_variable_far_from_any_setting_is_refused_without_a_guess() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable RPMPIPE_ZZZ names no setting$"):
        load_settings(None, env={"RPMPIPE_ZZZ": "1"})


def test_billing_tables_cannot_come_from_the_environment() -> None:
    with pytest.raises(
        ConfigError, match="billing.charges is a table; set it in the settings file"
    ):
        load_settings(None, env={"RPMPIPE_BILLING_CHARGES": "99454=50"})


def test_every_real_variable_and_the_test_suites_own_are_accepted() -> None:
    names = environment_names()
    assert names["RPMPIPE_RULES_SUPPLY_PERIOD"] == "rules.supply_period"
    assert names["RPMPIPE_BILLING_PROVIDER_NPI"] == "billing.provider_npi"
    allowed = {
        "RPMPIPE_CONFIG": "",
        "RPMPIPE_TEST_DATABASE_URL": "sqlite://",
        "RPMPIPE_REQUIRE_SERVICES": "1",
        "RPMPIPE_UPDATE_GOLDEN": "1",
        "RPMPIPE_LOG_FORMAT": "text",
        "OTHER_TOOL_SETTING": "x",
    }
    assert load_settings(None, env=allowed).log_format == "text"


def test_an_unknown_section_in_the_file_names_the_file_and_the_closest_section(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rpmpipe.toml"
    path.write_text('[rule]\nsupply_period = "calendar_month"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == f"unknown setting 'rule' in {path}; did you mean rules?"


def test_an_unknown_key_in_a_section_names_the_file_and_the_closest_key(tmp_path: Path) -> None:
    path = tmp_path / "rpmpipe.toml"
    path.write_text('[rules]\nsuply_period = "calendar_month"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert str(caught.value) == (
        f"unknown setting 'rules.suply_period' in {path}; did you mean rules.supply_period?"
    )


def test_the_command_line_stops_with_exit_2_on_a_misspelt_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path), "quarantine", "list"],
        env={"RPMPIPE_CONFIG": "", "RPMPIPE_BROKER_URLL": "mqtt://127.0.0.1:1883"},
    )
    assert result.exit_code == EXIT_USAGE
    assert "did you mean RPMPIPE_BROKER_URL?" in result.stderr

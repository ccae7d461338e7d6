"""Settings: file < environment < flags; a bad value names the setting and its source."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from rpmpipe.errors import ConfigError
from rpmpipe.settings import (
    BillingSettings,
    BrokerSettings,
    RuleSettings,
    ScheduleSettings,
    Settings,
    load_settings,
    npi_is_valid,
    redact_url,
)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rpmpipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file_or_environment() -> None:
    s = load_settings(None, env={})
    assert s.broker.url == "mqtt://127.0.0.1:1883"
    assert s.effective_database_url.endswith("rpmpipe-data/registry.db")
    assert s.billing.charges["99454"] == Decimal("47.00")


def test_environment_overrides_file_and_flags_override_both(tmp_path: Path) -> None:
    cfg = write_toml(
        tmp_path, 'data_dir = "/from/file"\n[broker]\nurl = "mqtt://file:1883"\nbatch_size = 10\n'
    )
    s = load_settings(
        cfg, env={"RPMPIPE_BROKER_URL": "mqtt://env:1883", "RPMPIPE_DATA_DIR": "/from/env"}
    )
    assert (s.broker.url, str(s.data_dir), s.broker.batch_size) == (
        "mqtt://env:1883",
        "/from/env",
        10,
    )
    s = load_settings(
        cfg,
        env={"RPMPIPE_BROKER_URL": "mqtt://env:1883"},
        overrides={"broker.url": "mqtt://flag:1"},
    )
    assert s.broker.url == "mqtt://flag:1"


def test_config_path_from_environment(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path, 'organization_timezone = "America/Denver"\n')
    assert (
        load_settings(None, env={"RPMPIPE_CONFIG": str(cfg)}).organization_timezone
        == "America/Denver"
    )


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RPMPIPE_BROKER_BATCH_SIZE": "many"}, ["broker.batch_size", "RPMPIPE_BROKER_BATCH_SIZE"]),
        ({"RPMPIPE_ORGANIZATION_TIMEZONE": "Mars/Base"}, ["organization_timezone"]),
        ({"RPMPIPE_BROKER_URL": "http://x"}, ["broker.url"]),
        ({"RPMPIPE_RULES_SUPPLY_PERIOD": "weekly"}, ["rules.supply_period"]),
        ({"RPMPIPE_LOG_LEVEL": "LOUD"}, ["log_level"]),
    ],
)
def test_bad_value_names_the_setting(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env=env)
    for name in names:
        assert name in str(err.value)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path, "[broker]\nurll = 'mqtt://x'\n")
    with pytest.raises(ConfigError, match="broker.urll"):
        load_settings(cfg, env={})


def test_bad_billing_npi_fails_at_load(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path, '[billing]\nprovider_npi = "1234567890"\n')
    with pytest.raises(ConfigError, match="billing.provider_npi"):
        load_settings(cfg, env={})


def test_billing_tables_from_file(tmp_path: Path) -> None:
    cfg = write_toml(
        tmp_path,
        '[billing]\nusage = "P"\n[billing.charges]\n99454 = "50.25"\n'
        '[billing.modifiers]\n99457 = ["95"]\n[billing.payers.AETNA]\nname = "Aetna"\nclaim_filing_indicator = "CI"\n',
    )
    s = load_settings(cfg, env={})
    assert s.billing.charges["99454"] == Decimal("50.25")
    assert s.billing.charges["99453"] == Decimal("22.00")
    assert s.billing.modifiers["99457"] == ("95",)
    assert s.billing.payers["AETNA"].claim_filing_indicator == "CI"


@pytest.mark.parametrize(
    ("npi", "ok"), [("1234567893", True), ("1234567890", False), ("123456789", False)]
)
def test_npi_check_digit(npi: str, ok: bool) -> None:
    assert npi_is_valid(npi) is ok


def test_redact_url_hides_password() -> None:
    assert (
        redact_url("postgresql+psycopg://app:s3cret@db:5432/rpm")
        == "postgresql+psycopg://app:***@db:5432/rpm"
    )
    assert "s3cret" not in redact_url("mqtts://ingest:s3cret@broker:8883")
    assert redact_url("mqtt://127.0.0.1:1883") == "mqtt://127.0.0.1:1883"


def test_billing_scalars_come_from_the_environment_too() -> None:
    s = load_settings(
        None, env={"RPMPIPE_BILLING_USAGE": "P", "RPMPIPE_BILLING_PROVIDER_NAME": "X CLINIC"}
    )
    assert (s.billing.usage, s.billing.provider_name) == ("P", "X CLINIC")
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"RPMPIPE_BILLING_PROVIDER_NPI": "1234567890"})
    assert "billing.provider_npi" in str(err.value)
    assert "RPMPIPE_BILLING_PROVIDER_NPI" in str(err.value)


def test_a_rule_error_names_its_source(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path, '[rules]\nsupply_period = "weekly"\n')
    with pytest.raises(ConfigError, match=r"rules.supply_period.*from .*rpmpipe.toml"):
        load_settings(cfg, env={})


def test_charge_with_more_than_two_decimals_is_refused(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path, '[billing.charges]\n99454 = "47.001"\n')
    with pytest.raises(ConfigError, match="billing.charges.99454.*two decimal places"):
        load_settings(cfg, env={})


def test_medicare_is_a_default_payer_and_file_payers_add_to_it(tmp_path: Path) -> None:
    assert load_settings(None, env={}).billing.payers["MEDICARE"].claim_filing_indicator == "MB"
    cfg = write_toml(
        tmp_path, '[billing.payers.AETNA]\nname = "Aetna"\nclaim_filing_indicator = "CI"\n'
    )
    payers = load_settings(cfg, env={}).billing.payers
    assert set(payers) == {"MEDICARE", "AETNA"}


def test_a_payer_without_a_claim_filing_indicator_is_refused(tmp_path: Path) -> None:
    cfg = write_toml(tmp_path, '[billing.payers.AETNA]\nname = "Aetna"\n')
    with pytest.raises(
        ConfigError, match="billing.payers.AETNA.claim_filing_indicator' is required"
    ):
        load_settings(cfg, env={})


def test_rendering_provider_placeholder_or_blank_name_is_refused(tmp_path: Path) -> None:
    for name in ("<LAST>, <FIRST>", "", "RIVERA"):
        cfg = write_toml(tmp_path, f'[billing.rendering_providers]\n"1045678905" = "{name}"\n')
        with pytest.raises(ConfigError, match="billing.rendering_providers.1045678905"):
            load_settings(cfg, env={})
    cfg = write_toml(tmp_path, '[billing.rendering_providers]\n"1045678905" = "RIVERA, ANA"\n')
    assert load_settings(cfg, env={}).billing.rendering_providers == {"1045678905": "RIVERA, ANA"}


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: BrokerSettings(protocol="4"), "broker.protocol"),
        (lambda: BrokerSettings(url="http://broker:1883"), "broker.url"),
        (lambda: RuleSettings(supply_period="weekly"), "rules.supply_period"),
        (lambda: RuleSettings(episode_gap_days=-1), "rules.episode_gap_days"),
        (lambda: ScheduleSettings(hour=24), "schedule.hour"),
        (lambda: ScheduleSettings(timezone="Mars/Olympus"), "schedule.timezone"),
        (lambda: BillingSettings(usage="X"), "billing.usage"),
        (lambda: BillingSettings(provider_npi="1234567890"), "billing.provider_npi"),
        (lambda: Settings(log_format="xml"), "log_format"),
        (lambda: Settings(organization_timezone="Mars/Olympus"), "organization_timezone"),
    ],
)
def test_each_settings_section_checks_its_own_values_when_built(
    build: Callable[[], object], setting: str
) -> None:
    # A section handed to a stage is valid wherever it was built, not only through
    # load_settings.
    with pytest.raises(ConfigError) as caught:
        build()
    assert caught.value.fields["setting"] == setting
    assert caught.value.code == "bad_setting"


@pytest.mark.parametrize(
    ("toml", "setting"),
    [
        (
            '[billing.payers.AETNA]\nclaim_filing_indicator = "CI"\npayer_id = "60*54"\n',
            "billing.payers.AETNA.payer_id",
        ),
        ('[billing.payers.AETNA]\nname = "Aetna"\n', "billing.payers.AETNA.claim_filing_indicator"),
        (
            '[billing.payers.AETNA]\nclaim_filing_indicator = "QQ"\n',
            "billing.payers.AETNA.claim_filing_indicator",
        ),
        ('[billing.charges]\n99454 = "-1"\n', "billing.charges.99454"),
        ('[billing.charges]\n99454 = "47.001"\n', "billing.charges.99454"),
        ('[billing.modifiers]\n99457 = ["959"]\n', "billing.modifiers.99457"),
        (
            '[billing.rendering_providers]\n"1045678905" = "RIVERA"\n',
            "billing.rendering_providers.1045678905",
        ),
    ],
)
def test_a_bad_billing_table_entry_is_named_by_the_errors_setting_field(
    tmp_path: Path, toml: str, setting: str
) -> None:
    # Callers read which setting is wrong from the error's fields, never from its text.
    with pytest.raises(ConfigError) as caught:
        load_settings(write_toml(tmp_path, toml), env={})
    assert caught.value.code == "bad_setting"
    assert caught.value.fields["setting"] == setting
    assert f"'{setting}" in str(caught.value) or f"{setting}:" in str(caught.value)


def test_the_store_is_built_once_and_anew_for_replaced_settings(tmp_path: Path) -> None:
    s = load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "a")})
    assert s.store is s.store
    assert s.readings_dir == s.store.readings_dir == tmp_path / "a" / "readings"
    assert s.ingest.store is s.metrics.store is s.export.store is s.store
    moved = s.replace(data_dir=tmp_path / "b")
    assert moved.readings_dir == tmp_path / "b" / "readings"
    assert moved.effective_database_url == f"sqlite:///{(tmp_path / 'b' / 'registry.db').resolve()}"
    assert moved.store.database_url == moved.effective_database_url
    assert s.readings_dir == tmp_path / "a" / "readings"
    assert s == load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "a")})

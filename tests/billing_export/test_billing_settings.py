"""Billing settings added for the export are checked when settings load."""

from __future__ import annotations

import pytest

from rpmpipe.errors import ConfigError
from rpmpipe.settings import load_settings


def test_rendering_provider_npi_with_a_bad_check_digit_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="rendering_providers.*1987654321"):
        load_settings(
            None, env={}, overrides={"billing.rendering_providers": {"1987654321": "Hopper, Grace"}}
        )


def test_a_valid_rendering_provider_loads() -> None:
    s = load_settings(
        None, env={}, overrides={"billing.rendering_providers": {"1987654328": "Hopper, Grace"}}
    )
    assert s.billing.rendering_providers == {"1987654328": "Hopper, Grace"}


def test_unknown_claim_filing_indicator_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="billing.payers.ACME.claim_filing_indicator"):
        load_settings(
            None, env={}, overrides={"billing.payers": {"ACME": {"claim_filing_indicator": "XX"}}}
        )


def test_bad_billing_provider_npi_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="billing.provider_npi"):
        load_settings(None, env={}, overrides={"billing.provider_npi": "1234567890"})

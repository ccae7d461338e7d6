"""A billing identity for tests: there is no built-in one, and `export` refuses to run
without it. The values are made up but well-formed (valid NPI check digits, ZIP+4)."""

from __future__ import annotations

from pathlib import Path

from rpmpipe.settings import Settings, load_settings

RENDERING_NPI = "1987654328"  # a person: every claim of an organisation names one
RENDERING_NAME = "HOPPER, GRACE"
MEDICARE_PAYER_ID = "06102"  # a MAC's contractor number (2010BB NM109)

IDENTITY: dict[str, str] = {
    "provider_name": "SPRINGFIELD RPM CLINIC",
    "provider_npi": "1234567893",
    "provider_tin": "123456789",
    "provider_taxonomy": "207R00000X",
    "provider_address1": "100 MAIN ST",
    "provider_city": "SPRINGFIELD",
    "provider_state": "IL",
    "provider_zip": "627010001",
    "contact_name": "BILLING OFFICE",
    "contact_phone": "2175550100",
    "submitter_id": "SPRINGFIELDRPM",
    "submitter_name": "SPRINGFIELD RPM CLINIC",
    "receiver_id": "CLEARINGHOUSE",
    "receiver_name": "EXAMPLE CLEARINGHOUSE",
}
MEDICARE = {
    "MEDICARE": {
        "name": "MEDICARE PART B",
        "claim_filing_indicator": "MB",
        "payer_id": MEDICARE_PAYER_ID,
    }
}


# For registries whose enrollments were ordered under 1234567893: the clinic then has another
# NPI and 1234567893 is a practitioner (under an organisation every claim names a person).
OTHER_ORGANISATION_NPI = "1122334455"


def identity_overrides(
    provider_npi: str = IDENTITY["provider_npi"], rendering_npi: str = RENDERING_NPI
) -> dict[str, object]:
    """``load_settings`` overrides for the identity, Medicare and the rendering provider."""
    return {
        **{f"billing.{k}": v for k, v in IDENTITY.items()},
        "billing.provider_npi": provider_npi,
        "billing.payers": MEDICARE,
        "billing.rendering_providers": {rendering_npi: RENDERING_NAME},
    }


def write_billing_toml(
    path: Path,
    extra: str = "",
    provider_npi: str = IDENTITY["provider_npi"],
    rendering_npi: str = RENDERING_NPI,
) -> Path:
    """A settings file with the identity (for commands run through the CLI)."""
    identity = {**IDENTITY, "provider_npi": provider_npi}
    lines = ["[billing]", *(f'{k} = "{v}"' for k, v in identity.items())]
    lines += [
        "",
        "[billing.payers.MEDICARE]",
        'name = "MEDICARE PART B"',
        'claim_filing_indicator = "MB"',
        f'payer_id = "{MEDICARE_PAYER_ID}"',
        "",
        "[billing.rendering_providers]",
        f'"{rendering_npi}" = "{RENDERING_NAME}"',
        "",
        extra,
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_identity(
    settings: Settings,
    provider_npi: str = IDENTITY["provider_npi"],
    rendering_npi: str = RENDERING_NPI,
) -> Settings:
    """``settings`` with the test billing identity (for fixtures that build their own)."""
    billing = load_settings(
        None, env={}, overrides=identity_overrides(provider_npi, rendering_npi)
    ).billing
    return settings.replace(billing=billing)

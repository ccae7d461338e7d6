"""The 837P writer: valid under pyx12, byte-stable, delimiter-proof, totals that add up."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from claim_samples import CLOCK, NASTY, PLAIN, line, sample_claims, sample_settings
from hypothesis import given
from hypothesis import strategies as st
from x12_validation import assert_valid_837, validate_837

from rpmpipe.billing_export.claims import Claim, draft_claims, price_claims
from rpmpipe.billing_export.x12 import ControlNumbers, clean, write_837p

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RPMPIPE_UPDATE_GOLDEN") == "1"
CONTROL = ControlNumbers(interchange=7, group=3, transaction=11)


def write(path: Path, claims: list[Claim], usage: str = "T", per_transaction: int = 5000) -> str:
    settings = sample_settings(**{"billing.usage": usage})
    with path.open("w", encoding="ascii", newline="") as out:
        write_837p(out, claims, settings.billing, CONTROL, CLOCK, per_transaction)
    return path.read_text(encoding="ascii")


def segments(text: str, tag: str) -> list[list[str]]:
    return [s.strip().split("*") for s in text.split("~") if s.strip().startswith(tag + "*")]


def test_golden_837p_is_byte_identical_and_valid(tmp_path: Path) -> None:
    out = tmp_path / "claims.837"
    write(out, sample_claims(sample_settings()))
    golden = GOLDEN / "claims.837"
    if UPDATE:
        golden.write_bytes(out.read_bytes())
    assert out.read_bytes() == golden.read_bytes()
    assert_valid_837(out)


def test_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    good = (GOLDEN / "claims.837").read_text(encoding="ascii")
    broken = {
        "wrong_se_count": good.replace("SE*", "SE*1", 1),
        "missing_subscriber_name": "\n".join(
            s for s in good.split("\n") if not s.startswith("NM1*IL*")
        ),
        "bad_amount": good.replace("*140***", "*14X***", 1),
        "delimiter_in_a_name": good.replace("O'BRIEN SMITH", "O*BRIEN SMITH", 1),
        "not_x12": "this is not an interchange",
    }
    for name, text in broken.items():
        path = tmp_path / f"{name}.broken"
        path.write_text(text, encoding="ascii")
        report = validate_837(path)
        assert good != text and not report.ok and report.errors, name


def test_delimiters_quotes_accents_and_line_breaks_never_reach_the_file(tmp_path: Path) -> None:
    text = write(tmp_path / "nasty.837", sample_claims(sample_settings()))
    body = text.replace("~\n", "")
    assert "\r" not in body and "\n" not in body
    assert body.isascii()
    subscriber = [s for s in segments(text, "NM1") if s[1] == "IL"][1]
    assert subscriber[3:5] == ["O'BRIEN SMITH", 'ZOE "ZO"']
    assert 'N3*12 ELM ST APT 4, "REAR"' in text
    assert "N4*SAINT-ETIENNE VILLE*IL*627011234" in text
    assert_valid_837(tmp_path / "nasty.837")


@given(st.text(max_size=80))
def test_clean_returns_upper_ascii_without_delimiters(value: str) -> None:
    cleaned = clean(value, 35)
    assert cleaned.isascii() and len(cleaned) <= 35
    assert not set(cleaned) & set("*:~^\r\n")
    assert cleaned == cleaned.upper() == cleaned.strip()


def test_claim_totals_equal_the_sum_of_their_lines(tmp_path: Path) -> None:
    text = write(tmp_path / "c.837", sample_claims(sample_settings()))
    claims = text.split("CLM*")[1:]
    assert len(claims) == 2
    for claim in claims:
        total = Decimal(claim.split("*")[1])
        lines = [Decimal(s.split("*")[2]) for s in claim.split("~") if s.strip().startswith("SV1*")]
        assert lines and total == sum(lines)


def test_one_claim_per_patient_and_date_of_service_with_payer_filing_indicator(
    tmp_path: Path,
) -> None:
    text = write(tmp_path / "c.837", sample_claims(sample_settings()))
    sbr = segments(text, "SBR")
    # BCBSIL is configured as Blue Cross (BL); MEDICARE falls back to Part B (MB).
    assert [s[9] for s in sbr] == ["BL", "MB"]
    assert [s[1] for s in segments(text, "CLM")] == ["RP0000000007", "RP0000000008"]
    hi = segments(text, "HI")
    assert hi[1][1:] == ["ABK:I10", "ABF:E119", "ABF:I5022", "ABF:N1830", "ABF:E785"]
    assert "SV1*HC:99457:95*52*UN*1***1~" in text  # modifier from settings
    # Under an organisation every claim names its rendering provider (2310B), with PRV*PE
    # when a taxonomy is configured for that NPI.
    assert "NM1*82*1*CURIE*MARIE****XX*1456789019~" in text
    assert "NM1*82*1*HOPPER*GRACE****XX*1987654328~PRV*PE*PXC*207RC0000X~" in text.replace("\n", "")
    assert text.count("NM1*82*") == 2
    assert segments(text, "DTP")[-1] == ["DTP", "472", "D8", "20261115"]


@pytest.mark.parametrize("usage", ["T", "P"])
def test_isa15_comes_from_billing_usage(tmp_path: Path, usage: str) -> None:
    text = write(tmp_path / "c.837", sample_claims(sample_settings()), usage=usage)
    assert segments(text, "ISA")[0][15] == usage
    assert_valid_837(tmp_path / "c.837")


def test_replacement_claim_carries_the_payers_claim_number_not_ours(tmp_path: Path) -> None:
    original = sample_claims(sample_settings())[0]
    replacement = replace(
        original,
        frequency="7",
        original_claim_id="RP0000000003",
        payer_claim_control_number="22126300012345",
    )
    text = write(tmp_path / "r.837", [replacement])
    clm = segments(text, "CLM")[0]
    assert clm[5] == "11:B:7"
    assert "REF*F8*22126300012345~" in text and "RP0000000003" not in text
    assert_valid_837(tmp_path / "r.837")
    without = replace(replacement, payer_claim_control_number="")
    with (
        (tmp_path / "r.broken").open("w", encoding="ascii") as out,
        pytest.raises(ValueError, match="needs REF\\*F8"),
    ):
        write_837p(out, [without], sample_settings().billing, CONTROL, CLOCK)


def test_thousand_claims_split_over_transactions_stay_valid(tmp_path: Path) -> None:
    settings = sample_settings()
    lines = []
    patients = {}
    for n in range(1000):
        pid = f"P-{n:05d}"
        patient = NASTY if n % 2 else PLAIN
        patients[pid] = replace(patient, patient_id=pid)
        dos = date(2026, 11, 30) - timedelta(days=n % 3)
        lines.append(line(pid, "99454", dos=dos))
        lines.append(line(pid, "99458", 2, kind="treatment_management", dos=dos))
    claims = price_claims(draft_claims(lines), patients, settings.billing, 9)
    assert len(claims) == 1000
    text = write(tmp_path / "big.837", claims, per_transaction=400)
    assert len(segments(text, "ST")) == 3
    assert [s[2] for s in segments(text, "ST")] == ["0011", "0012", "0013"]
    assert segments(text, "GE")[0][1] == "3"
    assert_valid_837(tmp_path / "big.837")


def test_a_payer_missing_from_settings_is_never_written_as_medicare(tmp_path: Path) -> None:
    unknown = replace(PLAIN, payer_id="AETNA")
    settings = sample_settings()
    claims = price_claims(
        draft_claims([line("P-0001", "99454")]), {"P-0001": unknown}, settings.billing, 1
    )
    with (
        (tmp_path / "unknown.broken").open("w", encoding="ascii") as out,
        pytest.raises(ValueError, match="payer AETNA is not configured in billing.payers"),
    ):
        write_837p(out, claims, settings.billing, CONTROL, CLOCK)


# --- a second validator and rpmpipe's own semantic checks ---------------------------------

SEMANTIC_BREAKS = {
    "total_not_sum_of_lines": ("CLM*RP0000000007*140*", "CLM*RP0000000007*150*", "not the sum"),
    "pointer_out_of_range": ("SV1*HC:99454*47*UN*1***1~", "SV1*HC:99454*47*UN*1***2~", "pointer"),
    "npi_check_digit": ("XX*1987654328~", "XX*1987654321~", "check digit"),
    "not_an_mbi_for_mb": ("MI*1EG4TE5MK73~", "MI*123456789A~", "not an MBI"),
    "five_digit_billing_zip": ("N4*SPRINGFIELD*IL*627010001~", "N4*SPRINGFIELD*IL*62701~", "ZIP+4"),
    "po_box_billing_address": ("N3*100 MAIN ST~", "N3*PO BOX 12~", "PO box"),
    "long_claim_id": ("CLM*RP0000000008*", "CLM*P0002-20261115-7-2XYZ*", "CLM01 is 21"),
    "duplicate_claim_id": ("CLM*RP0000000008*", "CLM*RP0000000007*", "not unique"),
    "repeated_line_control": ("REF*6R*RP0000000008-2~", "REF*6R*RP0000000008-1~", "repeat"),
    "no_rendering_person": ("NM1*82*1*CURIE*MARIE****XX*1456789019~\n", "", "rendering provider"),
}


@pytest.mark.parametrize("name", sorted(SEMANTIC_BREAKS))
def test_semantic_checks_reject_what_a_payer_would(name: str, tmp_path: Path) -> None:
    from rpmpipe.billing_export.claim_checks import check_837p

    good = (GOLDEN / "claims.837").read_text(encoding="ascii")
    assert check_837p(good) == []
    old, new, expected = SEMANTIC_BREAKS[name]
    assert old in good
    broken = good.replace(old, new, 1)
    problems = check_837p(broken)
    assert any(expected in p for p in problems), problems
    path = tmp_path / f"{name}.broken"
    path.write_text(broken, encoding="ascii")
    assert not validate_837(path).ok


def test_claim_ids_must_be_unique_across_the_files_checked_together() -> None:
    from rpmpipe.billing_export.claim_checks import check_837p

    good = (GOLDEN / "claims.837").read_text(encoding="ascii")
    seen: set[str] = set()
    assert check_837p(good, seen) == []
    assert any("not unique" in p for p in check_837p(good, seen))


def test_x12sdk_reads_the_golden_file_and_rejects_a_total_that_disagrees(tmp_path: Path) -> None:
    from x12_validation import x12sdk_errors

    assert x12sdk_errors(GOLDEN / "claims.837") == []
    path = tmp_path / "total.broken"
    path.write_text(
        (GOLDEN / "claims.837")
        .read_text()
        .replace("CLM*RP0000000007*140*", "CLM*RP0000000007*141*")
    )
    assert x12sdk_errors(path)

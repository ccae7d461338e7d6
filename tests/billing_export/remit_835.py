"""Build X12 835 remittance files from the 837P files rpmpipe writes (test fixtures).

A payer's answer to each claim of an 837 is given per claim id: paid in full by default, or
denied / adjusted with a group code, CARC and RARCs. The 835 carries the claim id back in
CLP01 and each line's line control number in REF*6R, as payers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """What the payer did with a claim: ``paid``, ``denied`` or ``adjusted`` (partly paid)."""

    status: str = "paid"
    group: str = "CO"
    carc: str = "45"
    rarcs: tuple[str, ...] = ()
    paid_ratio: Decimal = Decimal("0.80")  # for "adjusted"
    only_codes: tuple[str, ...] = ()  # deny/adjust only these CPT lines ("" = every line)


@dataclass
class _Line:
    code: str
    charge: Decimal
    units: str
    date_of_service: str
    line_control_number: str = ""


@dataclass
class _Claim:
    claim_id: str
    charge: Decimal
    last: str
    first: str
    member_id: str
    lines: list[_Line] = field(default_factory=list)


def claims_of_837(text: str) -> list[_Claim]:
    claims: list[_Claim] = []
    subscriber = ("", "", "")
    for raw in text.replace("\n", "").split("~"):
        el = raw.split("*")
        if el[0] == "NM1" and el[1] == "IL":
            subscriber = (el[3], el[4], el[9])
        elif el[0] == "CLM":
            claims.append(_Claim(el[1], Decimal(el[2]), *subscriber))
        elif el[0] == "SV1":
            claims[-1].lines.append(_Line(el[1].split(":")[1], Decimal(el[2]), el[4], ""))
        elif el[0] == "DTP" and el[1] == "472":
            claims[-1].lines[-1].date_of_service = el[3]
        elif el[0] == "REF" and el[1] == "6R":
            claims[-1].lines[-1].line_control_number = el[2]
    return claims


def _amount(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.01')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def build_835(
    text_837: str,
    outcomes: dict[str, Outcome] | None = None,
    *,
    extra_claims: tuple[tuple[str, Decimal], ...] = (),
    paid_on: date = date(2026, 12, 15),
    control: int = 101,
    trace: str = "EFT0001",
) -> str:
    """An 835 answering every claim of ``text_837`` (plus ``extra_claims`` rpmpipe never sent)."""
    outcomes = outcomes or {}
    claims = claims_of_837(text_837)
    for claim_id, charge in extra_claims:
        claims.append(
            _Claim(
                claim_id, charge, "DOE", "JANE", "9ZZ9ZZ9ZZ99", [_Line("99454", charge, "1", "")]
            )
        )
    body: list[str] = []
    total = Decimal("0")
    for n, claim in enumerate(claims, start=1):
        outcome = outcomes.get(claim.claim_id, Outcome())
        services: list[str] = []
        claim_paid = Decimal("0")
        for line in claim.lines:
            hit = not outcome.only_codes or line.code in outcome.only_codes
            status = outcome.status if hit else "paid"
            if status == "denied":
                paid = Decimal("0")
            elif status == "adjusted":
                paid = (line.charge * outcome.paid_ratio).quantize(Decimal("0.01"))
            else:
                paid = line.charge
            claim_paid += paid
            services.append(
                f"SVC*HC:{line.code}*{_amount(line.charge)}*{_amount(paid)}**{line.units}"
            )
            if line.date_of_service:
                services.append(f"DTM*472*{line.date_of_service}")
            if paid != line.charge:
                group, carc = (outcome.group, outcome.carc) if status != "paid" else ("CO", "45")
                services.append(f"CAS*{group}*{carc}*{_amount(line.charge - paid)}")
            if line.line_control_number:
                services.append(f"REF*6R*{line.line_control_number}")
            services.append(f"AMT*B6*{_amount(paid)}")
            if status != "paid" and outcome.rarcs:
                services.extend(f"LQ*HE*{r}" for r in outcome.rarcs)
        total += claim_paid
        clp02 = "4" if claim_paid == 0 else "1"
        body.append(
            f"CLP*{claim.claim_id}*{clp02}*{_amount(claim.charge)}*{_amount(claim_paid)}**MB*"
            f"ICN{control:04d}{n:05d}*11*1"
        )
        body.append(f"NM1*QC*1*{claim.last}*{claim.first}****MI*{claim.member_id}")
        body.extend(services)
    d8 = f"{paid_on:%Y%m%d}"
    if total > 0:
        bpr = (
            f"BPR*I*{_amount(total)}*C*ACH*CCP*01*011000015*DA*123456789*1512345678**01*"
            f"011000028*DA*987654321*{d8}"
        )
    else:
        bpr = f"BPR*H*0*C*NON************{d8}"
    transaction = [
        "ST*835*0001",
        bpr,
        f"TRN*1*{trace}*1512345678",
        f"DTM*405*{d8}",
        "N1*PR*MEDICARE PART B",
        "N3*PO BOX 1000",
        "N4*SPRINGFIELD*IL*62701",
        "PER*BL*EDI HELP DESK*TE*8005551212",
        "N1*PE*RPMPIPE DEMO CLINIC*XX*1234567893",
        "N3*100 MAIN ST",
        "N4*SPRINGFIELD*IL*627010001",
        "REF*TJ*123456789",
        "LX*1",
        *body,
    ]
    transaction.append(f"SE*{len(transaction) + 1}*0001")
    segments = [
        f"ISA*00*          *00*          *ZZ*{'MEDICARE':<15}*ZZ*{'RPMPIPE':<15}*"
        f"{paid_on:%y%m%d}*1200*^*00501*{control:09d}*0*T*:",
        f"GS*HP*MEDICARE*RPMPIPE*{d8}*1200*{control}*X*005010X221A1",
        *transaction,
        f"GE*1*{control}",
        f"IEA*1*{control:09d}",
    ]
    return "".join(s + "~\n" for s in segments)


def write_835(
    path: Path, text_837: str, outcomes: dict[str, Outcome] | None = None, **kw: object
) -> Path:
    path.write_text(build_835(text_837, outcomes, **kw), encoding="ascii")  # type: ignore[arg-type]
    return path

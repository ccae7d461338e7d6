"""Checks of an 837P that X12 validators do not make (pure: text in, problems out).

A validator checks the file's grammar against the implementation guide; a clearinghouse or a
Medicare contractor also rejects claims whose values disagree with each other. These are the
checks rpmpipe applies to the files it writes:

- the claim total (CLM02) is the sum of its lines (SV102);
- diagnosis pointers (SV107) point at codes the claim's HI segment holds;
- every NPI (NM108 ``XX``) has a valid check digit;
- a Medicare Part B subscriber (SBR09 ``MB``) carries an MBI;
- the billing provider (2010AA) has a street address (no PO box) with a 9-digit ZIP+4;
- CLM01 is at most 20 characters and unique in the file (and in the files checked together);
- every service line has a line item control number (REF*6R), unique within its claim and at
  most 30 characters;
- under an organisation (2010AA NM102 ``2``), every claim names a person as rendering
  provider (2310B ``NM1*82*1``);
- a replacement or void claim (CLM05-3 ``7``/``8``) carries the payer's claim number (REF*F8).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from rpmpipe.identifiers import is_mbi
from rpmpipe.settings import is_po_box, npi_is_valid

CLAIM_ID_MAX = 20
LINE_CONTROL_MAX = 30


@dataclass
class _Claim:
    claim_id: str
    total: str
    frequency: str
    organisation: bool
    diagnoses: int = 0
    line_charges: list[str] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)
    line_controls: list[str] = field(default_factory=list)
    lines: int = 0
    rendering_person: bool = False
    has_f8: bool = False


def segments_of(text: str) -> list[list[str]]:
    """The segments of an X12 text with ``~`` terminators and ``*`` separators."""
    out = []
    for raw in text.split("~"):
        seg = raw.strip("\r\n ")
        if seg:
            out.append(seg.split("*"))
    return out


def check_837p(text: str, seen_claim_ids: set[str] | None = None) -> list[str]:
    """Every problem found in one 837P interchange (empty when it passes).

    ``seen_claim_ids`` carries CLM01s across files, to check uniqueness over several runs.
    """
    problems: list[str] = []
    seen = seen_claim_ids if seen_claim_ids is not None else set()
    claims: list[_Claim] = []
    claim: _Claim | None = None
    loop = ""  # the current NM1 loop, by entity code
    organisation = False
    filing = ""
    for seg in segments_of(text):
        tag = seg[0]
        el = seg + [""] * 12
        if tag == "HL":
            loop = "HL" + el[3]
            claim = None if el[3] in ("20", "22", "23") else claim
        elif tag == "SBR":
            filing = el[9]
        elif tag == "NM1":
            loop = el[1]
            if el[8] == "XX" and not npi_is_valid(el[9]):
                problems.append(f"NM1*{el[1]}: NPI {el[9]!r} fails the check digit")
            if el[1] == "85":
                organisation = el[2] == "2"
            elif el[1] == "IL" and filing == "MB" and not is_mbi(el[9]):
                problems.append("NM1*IL: a Medicare Part B (MB) subscriber's id is not an MBI")
            elif el[1] == "82" and claim is not None and el[2] == "1":
                claim.rendering_person = True
        elif tag == "N3" and loop == "85":
            if is_po_box(" ".join(seg[1:])):
                problems.append("2010AA N3: the billing provider's address is a PO box")
        elif tag == "N4" and loop == "85":
            if not (el[3].isdigit() and len(el[3]) == 9):
                problems.append(f"2010AA N4: billing provider ZIP {el[3]!r} is not a ZIP+4")
        elif tag == "CLM":
            claim = _Claim(el[1], el[2], el[5].split(":")[-1], organisation)
            claims.append(claim)
        elif tag == "REF" and claim is not None:
            if el[1] == "F8":
                claim.has_f8 = bool(el[2])
            elif el[1] == "6R":
                claim.line_controls.append(el[2])
        elif tag == "HI" and claim is not None:
            claim.diagnoses = len(seg) - 1
        elif tag == "SV1" and claim is not None:
            claim.lines += 1
            claim.line_charges.append(el[2])
            claim.pointers.append(el[7])
    for c in claims:
        problems.extend(_claim_problems(c, seen))
    return problems


def _claim_problems(c: _Claim, seen: set[str]) -> Iterable[str]:
    where = f"claim {c.claim_id}"
    if not c.claim_id or len(c.claim_id) > CLAIM_ID_MAX:
        yield f"{where}: CLM01 is {len(c.claim_id)} characters (1 to {CLAIM_ID_MAX} allowed)"
    if c.claim_id in seen:
        yield f"{where}: CLM01 is not unique"
    seen.add(c.claim_id)
    try:
        total = Decimal(c.total)
        lines = sum((Decimal(v) for v in c.line_charges), Decimal(0))
        if total != lines:
            yield f"{where}: total {total} is not the sum of its lines ({lines})"
    except InvalidOperation:
        yield f"{where}: an amount is not a number"
    for n, pointers in enumerate(c.pointers, start=1):
        for p in pointers.split(":"):
            if not (p.isdigit() and 1 <= int(p) <= c.diagnoses):
                yield f"{where}, line {n}: diagnosis pointer {p!r} is not one of 1..{c.diagnoses}"
    if len(c.line_controls) != c.lines:
        yield f"{where}: {c.lines} lines but {len(c.line_controls)} REF*6R line control numbers"
    if len(set(c.line_controls)) != len(c.line_controls):
        yield f"{where}: REF*6R line control numbers repeat within the claim"
    for value in c.line_controls:
        if not value or len(value) > LINE_CONTROL_MAX:
            yield f"{where}: REF*6R {value!r} is not 1 to {LINE_CONTROL_MAX} characters"
    if c.organisation and not c.rendering_person:
        yield f"{where}: billed by an organisation without a person as rendering provider"
    if c.frequency in ("7", "8") and not c.has_f8:
        yield f"{where}: frequency {c.frequency} without the payer's claim number (REF*F8)"

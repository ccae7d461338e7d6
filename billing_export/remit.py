"""X12 835 (005010X221A1) remittance advice to plain values (pure: text in, values out).

pyx12 reads the interchange and keeps the loop context (2100 claim payment, 2110 service
payment), so the values below come from the implementation guide's structure, not from
hand-split segments. Per claim: CLP01 (our claim id), CLP02 status, charge, payment and the
payer's claim control number; per service line: the procedure, charge, payment, the
adjustments (CAS group, CARC, amount), the remark codes (LQ*HE RARCs) and REF*6R, the line
control number we sent. A line's outcome is ``paid`` (paid in full), ``adjusted`` (paid less
than charged) or ``denied`` (nothing paid).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rpmpipe.errors import RemitError

CAS_TRIPLES = 6  # CAS02/03/04 ... CAS17/18/19: up to six reason, amount, quantity groups
_ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Adjustment:
    group: str  # CO contractual, PR patient responsibility, OA other, PI payer initiated
    reason: str  # CARC, e.g. "16"
    amount: Decimal

    @property
    def code(self) -> str:
        """The group and CARC as billers write them: ``CO-16``."""
        return f"{self.group}-{self.reason}"


@dataclass(frozen=True, slots=True)
class ServicePayment:
    code: str  # SVC01-2
    modifiers: tuple[str, ...]
    charge: Decimal
    paid: Decimal
    units: str
    date_of_service: date | None
    line_control_number: str  # REF*6R, "" when the payer did not return it
    adjustments: tuple[Adjustment, ...]
    remark_codes: tuple[str, ...]  # RARCs (LQ*HE)

    @property
    def outcome(self) -> str:
        if self.paid <= _ZERO:
            return "denied"
        return "paid" if self.paid >= self.charge else "adjusted"


@dataclass(frozen=True, slots=True)
class ClaimPayment:
    claim_id: str  # CLP01
    status: str  # CLP02: 1 primary, 2 secondary, 4 denied, 22 reversal, ...
    charge: Decimal
    paid: Decimal
    payer_claim_control: str  # CLP07
    adjustments: tuple[Adjustment, ...]  # claim-level CAS
    remark_codes: tuple[str, ...]  # MOA remark codes
    services: tuple[ServicePayment, ...]


@dataclass(frozen=True, slots=True)
class Remittance:
    """One 835 file: the payment and every claim it answers."""

    sha256: str  # of the segments, whatever the line breaks: the identity of the file
    interchange_control: str
    trace_number: str
    payer_name: str
    payment_date: date | None
    total_paid: Decimal
    claims: tuple[ClaimPayment, ...]


def _amount(value: str | None, where: str) -> Decimal:
    if value is None or value == "":
        return _ZERO
    try:
        return Decimal(value).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise RemitError(f"{where}: {value!r} is not an amount") from None


def _d8(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d").date()  # noqa: DTZ007 - a date, not a time
    except ValueError:
        return None


def _adjustments(node: Any, where: str) -> tuple[Adjustment, ...]:
    found = []
    for cas in node.select("CAS"):
        group = cas.get_value("CAS01") or ""
        for n in range(CAS_TRIPLES):
            reason = cas.get_value(f"CAS{2 + 3 * n:02d}")
            if not reason:
                continue
            found.append(
                Adjustment(group, reason, _amount(cas.get_value(f"CAS{3 + 3 * n:02d}"), where))
            )
    return tuple(found)


def _service(node: Any, where: str) -> ServicePayment:
    procedure = node.get_value("SVC01") or ""
    parts = procedure.split(":") if procedure else []
    code = node.get_value("SVC01-2") or (parts[1] if len(parts) > 1 else "")
    modifiers = tuple(m for m in (node.get_value(f"SVC01-{n}") for n in range(3, 7)) if m)
    lcn = ""
    dos = None
    for ref in node.select("REF"):
        if ref.get_value("REF01") == "6R":
            lcn = ref.get_value("REF02") or ""
    for dtm in node.select("DTM"):
        if dtm.get_value("DTM01") in ("472", "150"):
            dos = dos or _d8(dtm.get_value("DTM02"))
    remarks = tuple(
        lq.get_value("LQ02") or "" for lq in node.select("LQ") if lq.get_value("LQ01") == "HE"
    )
    return ServicePayment(
        code=code,
        modifiers=modifiers,
        charge=_amount(node.get_value("SVC02"), where),
        paid=_amount(node.get_value("SVC03"), where),
        units=node.get_value("SVC05") or "1",
        date_of_service=dos,
        line_control_number=lcn,
        adjustments=_adjustments(node, where),
        remark_codes=tuple(r for r in remarks if r),
    )


def _claim(node: Any) -> ClaimPayment:
    claim_id = node.get_value("CLP01") or ""
    where = f"claim {claim_id}"
    moa = [node.get_value(f"MOA{n:02d}") for n in range(3, 8)]
    return ClaimPayment(
        claim_id=claim_id,
        status=node.get_value("CLP02") or "",
        charge=_amount(node.get_value("CLP03"), where),
        paid=_amount(node.get_value("CLP04"), where),
        payer_claim_control=node.get_value("CLP07") or "",
        adjustments=_adjustments(node, where),
        remark_codes=tuple(m for m in moa if m),
        services=tuple(_service(svc, where) for svc in node.select("2110")),
    )


def digest(text: str) -> str:
    """The identity of an 835: its segments without line breaks or surrounding blanks."""
    normal = "".join(line.strip() for line in text.splitlines())
    return hashlib.sha256(normal.encode()).hexdigest()


def parse_835(text: str, source: str = "835") -> Remittance:
    """The remittance in ``text``; RemitError names what is wrong (never payload content)."""
    import pyx12.error_handler
    import pyx12.params
    import pyx12.x12context

    stripped = text.lstrip()
    if not stripped.startswith("ISA"):
        raise RemitError(f"{source}: not an X12 file (it must start with ISA)")
    header: dict[str, str] = {}
    claims: list[ClaimPayment] = []
    # pyx12 logs parse problems on its own logger with segment text (PHI): keep them quiet and
    # report counts and positions instead.
    pyx12_log = logging.getLogger("pyx12")
    level, pyx12_log.level = pyx12_log.level, logging.CRITICAL
    try:
        reader = pyx12.x12context.X12ContextReader(
            pyx12.params.params(), pyx12.error_handler.errh_null(), io.StringIO(stripped)
        )
        for node in _nodes(reader):
            seg = node.id
            if seg == "2100":
                claims.append(_claim(node))
            elif seg == "ISA":
                header["isa13"] = (node.get_value("ISA13") or "").strip()
            elif seg == "GS":
                header["gs08"] = node.get_value("GS08") or ""
            elif seg == "ST":
                header["st01"] = node.get_value("ST01") or ""
            elif seg == "BPR":
                header["total"] = node.get_value("BPR02") or ""
                header["paid_on"] = node.get_value("BPR16") or ""
            elif seg == "TRN":
                header["trace"] = node.get_value("TRN02") or ""
            elif seg == "N1" and node.get_value("N101") == "PR":
                header["payer"] = node.get_value("N102") or ""
    except RemitError:
        raise
    except Exception as exc:  # pyx12 raises its own errors and plain ones on broken files
        raise RemitError(f"{source}: not a readable X12 835 ({type(exc).__name__})") from None
    finally:
        pyx12_log.level = level
    if header.get("st01") != "835" or not header.get("gs08", "").startswith("005010X221"):
        raise RemitError(
            f"{source}: not an 835 remittance (005010X221A1); found transaction "
            f"{header.get('st01') or '?'} {header.get('gs08') or '?'}"
        )
    return Remittance(
        sha256=digest(text),
        interchange_control=header.get("isa13", ""),
        trace_number=header.get("trace", ""),
        payer_name=header.get("payer", ""),
        payment_date=_d8(header.get("paid_on")),
        total_paid=_amount(header.get("total"), f"{source} BPR02"),
        claims=tuple(claims),
    )


def _nodes(reader: Any) -> Iterator[Any]:
    yield from reader.iter_segments("2100")

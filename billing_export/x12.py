"""X12 837P (005010X222A1) text for a list of claims (pure: writes to a file object).

Delimiters: ``~`` segment, ``*`` element, ``:`` component, ``^`` repetition. Every value
from the registry goes through :func:`clean` first: accents folded to plain ASCII, upper
case, delimiters and line breaks turned into spaces, and cut to the element's maximum
length, so no patient name can break the file's structure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache, partial
from typing import TextIO

from rpmpipe.billing_export.claims import (
    CLAIM_ID_MAX,
    MAX_DIAGNOSES,
    ChargeLine,
    Claim,
    Receiver,
    icd10_without_dot,
    payer_name_for,
)
from rpmpipe.identifiers import normalise_mbi
from rpmpipe.settings import BillingSettings

CLAIMS_PER_TRANSACTION = 5000  # the implementation guide's recommended ST-SE limit
_DELIMITERS = re.compile(r"[*:~^\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_SPACES = re.compile(r" {2,}")


@dataclass(frozen=True, slots=True)
class ControlNumbers:
    """ISA13, GS06 and the first ST02 of this interchange (later ST02s follow on)."""

    interchange: int
    group: int
    transaction: int


def _clean(value: str, max_len: int = 60) -> str:
    """A value safe inside an X12 element: ASCII, upper case, no delimiters, trimmed."""
    if value.isascii() and value.isprintable() and not _DELIMITERS.search(value):
        return _SPACES.sub(" ", value).strip().upper()[:max_len].rstrip()
    folded = unicodedata.normalize("NFKD", value)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    folded = _DELIMITERS.sub(" ", folded)
    folded = _NOT_PRINTABLE_ASCII.sub("", folded)
    return _SPACES.sub(" ", folded).strip().upper()[:max_len].rstrip()


# Names, cities and payers repeat across claims; claim ids and line control numbers, which
# never repeat, are cleaned with _clean and leave the cache to the values that do.
clean = lru_cache(maxsize=65536)(_clean)


@lru_cache(maxsize=4096)  # ZIP codes and phone numbers repeat across claims
def digits(value: str) -> str:
    return "".join(c for c in value if c.isascii() and c.isdigit())


def amount(value: Decimal) -> str:
    """X12 R type: no trailing zeros beyond what is needed (47.00 -> 47, 41.50 -> 41.5)."""
    text = f"{value.quantize(Decimal('0.01')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def transactions_needed(claim_count: int, per_transaction: int = CLAIMS_PER_TRANSACTION) -> int:
    return max(1, -(-claim_count // per_transaction))


class _Segments:
    """The segments of an interchange, gathered as text and written in large pieces."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._text: list[str] = []
        self.count = 0
        # Segments that many claims of an interchange repeat (the payer, the rendering
        # provider, the diagnoses, a service line's code, charge and date), built once: text
        # per key, with its number of segments.
        self._known: dict[tuple[object, ...], tuple[str, int]] = {}

    def add(self, *elements: str) -> None:
        self._text.append(_segment(elements))
        self.count += 1

    def known(self, key: tuple[object, ...], build: Callable[[], list[tuple[str, ...]]]) -> None:
        """Write the segments ``build`` gives for ``key``, built the first time only."""
        found = self._known.get(key)
        if found is None:
            segments = build()
            found = ("".join(_segment(e) for e in segments), len(segments))
            self._known[key] = found
        self._text.append(found[0])
        self.count += found[1]

    def flush(self) -> None:
        """Write the segments gathered so far."""
        self._out.write("".join(self._text))
        self._text.clear()


def _segment(elements: Sequence[str]) -> str:
    # Trailing empty elements are not sent (X12 syntax rule).
    if elements and elements[-1] != "":
        return "*".join(elements) + "~\n"
    items = list(elements)
    while items and items[-1] == "":
        items.pop()
    return "*".join(items) + "~\n"


def write_837p(
    out: TextIO,
    claims: Sequence[Claim],
    billing: BillingSettings,
    control: ControlNumbers,
    created_at: datetime,
    claims_per_transaction: int = CLAIMS_PER_TRANSACTION,
    receiver: Receiver | None = None,
) -> int:
    """Write one interchange with the claims; returns the number of ST transactions.

    ``created_at`` is written as it is given (ISA09/10, GS04/05, BHT04/05): pass it in the
    organisation's zone. ``receiver`` defaults to billing.receiver_id/_name; every claim of
    the interchange must be for it.
    """
    if not claims:
        raise ValueError("an 837P needs at least one claim")
    to = receiver or Receiver(billing.receiver_id, billing.receiver_name)
    if any(c.receiver.receiver_id and c.receiver != to for c in claims):
        raise ValueError("claims of different receivers never share an interchange")
    seg = _Segments(out)
    sender = clean(billing.submitter_id, 15)
    receiver_id = clean(to.receiver_id, 15)
    seg.add(
        "ISA",
        "00",
        " " * 10,
        "00",
        " " * 10,
        "ZZ",
        sender.ljust(15),
        "ZZ",
        receiver_id.ljust(15),
        f"{created_at:%y%m%d}",
        f"{created_at:%H%M}",
        "^",
        "00501",
        f"{control.interchange:09d}",
        "0",
        billing.usage,
        ":",
    )
    seg.add(
        "GS",
        "HC",
        sender,
        receiver_id,
        f"{created_at:%Y%m%d}",
        f"{created_at:%H%M}",
        str(control.group),
        "X",
        "005010X222A1",
    )
    step = claims_per_transaction
    chunks = [claims[i : i + step] for i in range(0, len(claims), step)]
    for n, chunk in enumerate(chunks):
        _transaction(seg, chunk, billing, control, control.transaction + n, created_at, to)
        seg.flush()
    seg.add("GE", str(len(chunks)), str(control.group))
    seg.add("IEA", "1", f"{control.interchange:09d}")
    seg.flush()
    return len(chunks)


def _transaction(
    seg: _Segments,
    claims: Sequence[Claim],
    billing: BillingSettings,
    control: ControlNumbers,
    st02: int,
    created_at: datetime,
    receiver: Receiver,
) -> None:
    st = f"{st02:04d}"
    first = seg.count
    seg.add("ST", "837", st, "005010X222A1")
    seg.add(
        "BHT",
        "0019",
        "00",
        f"{control.interchange}{st}",
        f"{created_at:%Y%m%d}",
        f"{created_at:%H%M}",
        "CH",
    )
    # 1000A submitter, 1000B receiver
    seg.add(
        "NM1",
        "41",
        "2",
        clean(billing.submitter_name, 60),
        "",
        "",
        "",
        "",
        "46",
        clean(billing.submitter_id, 80),
    )
    seg.add("PER", "IC", clean(billing.contact_name, 60), "TE", digits(billing.contact_phone)[:256])
    seg.add(
        "NM1",
        "40",
        "2",
        clean(receiver.name, 60),
        "",
        "",
        "",
        "",
        "46",
        clean(receiver.receiver_id, 80),
    )
    # 2000A / 2010AA billing provider (a street address with ZIP+4), 2010AB pay-to address
    seg.add("HL", "1", "", "20", "1")
    if billing.provider_taxonomy:
        seg.add("PRV", "BI", "PXC", clean(billing.provider_taxonomy, 50))
    if billing.provider_entity == "individual":
        family, _, given = billing.provider_name.partition(",")
        seg.add(
            "NM1", "85", "1", clean(family, 60), clean(given, 35), "", "", "", "XX",
            billing.provider_npi,
        )  # fmt: skip
    else:
        seg.add(
            "NM1", "85", "2", clean(billing.provider_name, 60), "", "", "", "", "XX",
            billing.provider_npi,
        )  # fmt: skip
    seg.add("N3", clean(billing.provider_address1, 55))
    seg.add(
        "N4",
        clean(billing.provider_city, 30),
        clean(billing.provider_state, 2),
        digits(billing.provider_zip)[:15],
    )
    seg.add("REF", "EI", digits(billing.provider_tin))
    if billing.pay_to_address1:
        seg.add("NM1", "87", "2")
        seg.add("N3", clean(billing.pay_to_address1, 55))
        seg.add(
            "N4",
            clean(billing.pay_to_city, 30),
            clean(billing.pay_to_state, 2),
            digits(billing.pay_to_zip)[:15],
        )
    hl = 1
    for claim in claims:
        hl += 1
        _subscriber_and_claim(seg, claim, billing, hl)
    seg.add("SE", str(seg.count - first + 1), st)


def _diagnoses(icd10: Sequence[str]) -> tuple[str, ...]:
    codes = [icd10_without_dot(c) for c in icd10][:MAX_DIAGNOSES]
    return ("HI", *(f"{'ABK' if i == 0 else 'ABF'}:{clean(c, 30)}" for i, c in enumerate(codes)))


def _rendering(npi: str, billing: BillingSettings) -> list[tuple[str, ...]]:
    last, _, first = billing.rendering_providers.get(npi, "").partition(",")
    segments: list[tuple[str, ...]] = [
        ("NM1", "82", "1", clean(last, 60), clean(first, 35), "", "", "", "XX", npi)
    ]
    taxonomy = billing.rendering_taxonomies.get(npi, "")
    if taxonomy:
        segments.append(("PRV", "PE", "PXC", clean(taxonomy, 50)))
    return segments


def _subscriber_and_claim(seg: _Segments, claim: Claim, billing: BillingSettings, hl: int) -> None:
    p = claim.patient
    payer = billing.payers.get(p.payer_id)
    if payer is None:
        # Never guess SBR09 (a guess bills everyone as Medicare); the export holds such lines.
        raise ValueError(f"payer {p.payer_id} is not configured in billing.payers")
    filing = payer.claim_filing_indicator
    payer_name = payer_name_for(p, billing)
    # Medicare wants the MBI as issued, without the dashes it is often displayed with.
    member_id = normalise_mbi(p.member_id) if filing == "MB" else clean(p.member_id, 80)
    # 2000B: the Medicare patient is the subscriber (SBR02 18 = self), so no 2000C loop.
    seg.add("HL", str(hl), "1", "22", "0")
    seg.add("SBR", "P", "18", "", "", "", "", "", "", filing)
    seg.add(
        "NM1",
        "IL",
        "1",
        clean(p.last_name, 60),
        clean(p.first_name, 35),
        "",
        "",
        "",
        "MI",
        member_id,
    )
    seg.add("N3", clean(p.address1, 55))
    seg.add("N4", clean(p.city, 30), clean(p.state, 2), digits(p.zip)[:15])
    seg.add("DMG", "D8", f"{p.birth_date:%Y%m%d}", p.sex if p.sex in ("M", "F") else "U")
    # 2010BB: the payer's EDI id (for Medicare the MAC's contractor number), never our key.
    seg.known(
        ("2010BB", payer_name, payer.payer_id),
        lambda: [
            ("NM1", "PR", "2", clean(payer_name, 60), "", "", "", "", "PI",
             clean(payer.payer_id, 80)),
        ],
    )  # fmt: skip
    # 2300 claim
    seg.add(
        "CLM",
        _clean(claim.claim_id, CLAIM_ID_MAX),
        amount(claim.total),
        "",
        "",
        f"{billing.place_of_service}:B:{claim.frequency}",
        "Y",
        "A",
        "Y",
        "Y",
    )
    if claim.frequency in ("7", "8"):
        # F8 is the payer's claim control number (from its remittance), never our own id.
        if not claim.payer_claim_control_number:
            raise ValueError(f"claim {claim.claim_id}: frequency {claim.frequency} needs REF*F8")
        seg.add("REF", "F8", clean(claim.payer_claim_control_number, 50))
    seg.known(("HI", *p.icd10), lambda: [_diagnoses(p.icd10)])
    # 2310B rendering provider: always under an organisation (the export holds claims
    # without a person's NPI); under an individual only when someone else rendered.
    if claim.rendering_npi and (
        billing.provider_entity == "organization" or claim.rendering_npi != billing.provider_npi
    ):
        seg.known(("2310B", claim.rendering_npi), lambda: _rendering(claim.rendering_npi, billing))
    # 2400 service lines
    for cl in claim.lines:
        line = cl.line.line
        seg.known(
            ("2400", cl.line_no, line, cl.modifiers, cl.charge, cl.diagnosis_pointers),
            partial(_service_line, cl),
        )
        # Line item control number: an 835's SVC/REF*6R names this line.
        seg.add("REF", "6R", _clean(cl.line_control_number, 30))


def _service_line(cl: ChargeLine) -> list[tuple[str, ...]]:
    """LX, SV1 and DTP of a service line (its REF*6R is its own)."""
    procedure = ":".join(["HC", clean(cl.line.code, 48), *(clean(m, 2) for m in cl.modifiers[:4])])
    return [
        ("LX", str(cl.line_no)),
        (
            "SV1",
            procedure,
            amount(cl.charge),
            "UN",
            str(cl.line.units),
            "",
            "",
            ":".join(str(n) for n in cl.diagnosis_pointers),
        ),
        ("DTP", "472", "D8", f"{cl.line.date_of_service:%Y%m%d}"),
    ]

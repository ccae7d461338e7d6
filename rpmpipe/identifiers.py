"""Identifiers a claim carries: the Medicare Beneficiary Identifier and X12-safe member ids.

Used by the registry import (a warning or a refusal naming the row) and by the export (a
held line), so both apply the same rule.
"""

from __future__ import annotations

import re

# CMS's MBI layout: 11 characters, C A AN N A AN N A A N N, where C is 1-9, N is 0-9 and A a
# letter other than S, L, O, I, B and Z (they read like digits). Dashes are for display only.
_A = "AC-HJKMNP-RT-Y"
MBI_PATTERN = re.compile(rf"^[1-9][{_A}][{_A}0-9][0-9][{_A}][{_A}0-9][0-9][{_A}][{_A}][0-9][0-9]$")
# Characters that structure an X12 file (and line breaks/controls): a member id holding one
# would be changed on its way into the 837P, so the payer would not find the member.
_X12_UNSAFE = re.compile(r"[*:~^\x00-\x1f\x7f-\x9f\u2028\u2029]")


def normalise_mbi(member_id: str) -> str:
    """The MBI as the claim carries it: upper case, without display dashes or spaces."""
    return member_id.replace("-", "").replace(" ", "").upper()


def is_mbi(member_id: str) -> bool:
    """Whether ``member_id`` is a Medicare Beneficiary Identifier (dashes allowed)."""
    return bool(MBI_PATTERN.match(normalise_mbi(member_id)))


def has_x12_separator(value: str) -> bool:
    """Whether ``value`` holds an X12 separator (``* : ~ ^``) or a control character."""
    return bool(_X12_UNSAFE.search(value))

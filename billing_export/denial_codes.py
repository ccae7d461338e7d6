"""What the adjustment (CARC) and remark (RARC) codes of engagement denials mean.

The texts are short forms of the X12 code lists' descriptions, for letters and listings. A
code not listed here is shown as its bare code.
"""

from __future__ import annotations

CARC_TEXT = {
    "16": "Claim/service lacks information or has submission/billing error(s)",
    "45": "Charge exceeds fee schedule/maximum allowable or contracted/legislated fee arrangement",
    "50": "These are non-covered services because this is not deemed a 'medical necessity' by the payer",
    "96": "Non-covered charge(s)",
    "97": "The benefit for this service is included in the payment/allowance for another service",
    "119": "Benefit maximum for this time period or occurrence has been reached",
    "151": "Payment adjusted because the payer deems the information submitted does not support this many/frequency of services",
    "226": "Information requested from the Billing/Rendering Provider was not provided or not provided timely or was insufficient/incomplete",
    "252": "An attachment/other documentation is required to adjudicate this claim/service",
    "B15": "This service/procedure requires that a qualifying service/procedure be received and covered",
}
RARC_TEXT = {
    "N29": "Missing documentation/orders/notes/summary/report/chart",
    "N3": "Missing/incomplete/invalid consent form",
    "N28": "Consent form requirements not fulfilled",
    "N265": "Missing/incomplete/invalid ordering provider primary identifier",
    "N264": "Missing/incomplete/invalid ordering provider name",
    "M127": "Missing patient medical record for this service",
    "N706": "Missing documentation",
    "MA130": "Your claim contains incomplete and/or invalid information, and no appeal rights are afforded because the claim is unprocessable",
}
GROUP_TEXT = {
    "CO": "Contractual obligation",
    "PR": "Patient responsibility",
    "OA": "Other adjustment",
    "PI": "Payer initiated reduction",
    "CR": "Correction and reversal",
}


def denial_text(code: str) -> str:
    """``CO-16`` -> "Contractual obligation: Claim/service lacks information ..."."""
    group, _, carc = code.partition("-")
    if not carc:
        return RARC_TEXT.get(code) or CARC_TEXT.get(code, code)
    reason = CARC_TEXT.get(carc, f"adjustment reason {carc}")
    return f"{GROUP_TEXT.get(group, group)}: {reason}"


def remark_text(code: str) -> str:
    return RARC_TEXT.get(code, code)

"""The billing identity of ``rpmpipe demo``: a made-up test clinic, never a real claim.

rpmpipe has no built-in billing identity (``export`` refuses to run without one); the demo
writes this file to ``OUT/demo-settings.toml`` and bills with it, so a newcomer sees every
billing key, with what it is for, in a file that works.
"""

from __future__ import annotations

from pathlib import Path

from rpmpipe.settings import BillingSettings, load_settings

DEMO_SETTINGS_NAME = "demo-settings.toml"

DEMO_BILLING_TOML = """\
# The billing settings `rpmpipe demo` used: a made-up test clinic (ISA15 "T").
# Copy this [billing] section into your rpmpipe.toml and replace every value with your own.

[billing]
provider_entity = "organization"     # organization: a clinic or group (every claim names the
                                     # person who rendered it, 2310B); individual: a
                                     # practitioner billing under their own NPI ("LAST, FIRST")
provider_name = "RPMPIPE DEMO CLINIC"    # 2010AA billing provider
provider_npi = "1234567893"          # NPI; the check digit is verified when settings load
provider_tin = "123456789"           # tax id, 9 digits (REF*EI)
provider_taxonomy = "207R00000X"     # PRV*BI, optional
provider_address1 = "100 MAIN ST"    # a street address: 5010 refuses a PO box here
provider_city = "SPRINGFIELD"       # 2010AA N4
provider_state = "IL"                # two letters
provider_zip = "62701-0001"          # ZIP+4, 9 digits
pay_to_address1 = "PO BOX 1200"      # 2010AB pay-to address, optional: where payments go
pay_to_city = "SPRINGFIELD"          #   (a PO box is fine here)
pay_to_state = "IL"                  #   all four pay_to_* keys or none
pay_to_zip = "62705"                 #   5 or 9 digits
contact_name = "BILLING OFFICE"      # 1000A PER
contact_phone = "2175550100"         # digits only in the file
submitter_id = "RPMPIPEDEMO"         # ISA06/GS02, as your clearinghouse assigned it
submitter_name = "RPMPIPE DEMO CLINIC"   # 1000A
receiver_id = "DEMOCLEARINGHSE"      # ISA08/GS03/1000B, at most 15 characters: the default
receiver_name = "DEMO CLEARINGHOUSE" #   receiver of every payer that names none
usage = "T"                          # ISA15: T test, P production (the summary says which)
place_of_service = "11"              # CLM05-1: 11 office
replacement_claims = false           # true: send frequency-7/8 claims for payers that allow
                                     # them (see billing.payers.*.replacement_claims)
audit_before_export = true           # hold lines whose documentation is incomplete
appeal_template = ""                 # a Jinja2 appeal letter; "" = the built-in one

[billing.payers.MEDICARE]            # a patient's payer_id must be listed here to be billed
name = "MEDICARE PART B"             # 2010BB payer name
claim_filing_indicator = "MB"        # SBR09: MB Medicare Part B (member ids must be MBIs)
payer_id = "06102"                   # 2010BB NM109, the payer's EDI id: for Medicare the
                                     # MAC's contractor number (06102: NGS, Illinois)
receiver_id = ""                     # empty: billing.receiver_id; another receiver gets
receiver_name = ""                   #   its own .837 file in the run
# replacement_claims = false         # unset: as billing.replacement_claims, except that
                                     # Medicare Part B (MB) reopens claims instead (off)
bill_99091_with_99457 = false        # true: this payer pays 99091 beside 99457
audit_requires = ""                  # documentation this payer adds: "pro, goal_review"

[billing.rendering_providers]        # ordering NPIs (enrollments) with the practitioner's name
"1045678905" = "RIVERA, ANA"
"1987654328" = "OKAFOR, DANIEL"
"1555123458" = "LINDQVIST, MARIA"

[billing.rendering_taxonomies]       # optional PRV*PE taxonomy of a rendering provider
"1045678905" = "207RC0000X"
"""


def write_demo_settings(out: Path) -> Path:
    """Write the demo's settings file into ``out`` (mode 0600) and return its path."""
    path = out / DEMO_SETTINGS_NAME
    path.write_text(DEMO_BILLING_TOML, encoding="utf-8")
    path.chmod(0o600)
    return path


def demo_billing(path: Path) -> BillingSettings:
    """The billing settings the demo's file holds (checked like any settings file)."""
    return load_settings(path, env={}).billing

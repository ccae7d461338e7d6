"""Billing export: charge CSV and X12 837P for final, billable, not-yet-exported lines.

``claims`` (values), ``plan`` (what a run must do), ``charge_csv`` and ``x12`` (pure
writers) are free of I/O; ``ledger`` (registry) and ``export`` (run directory) are the edges.
"""

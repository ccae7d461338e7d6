"""rpmpipe: remote-patient-monitoring device syncs to billing-ready engagement metrics."""

from __future__ import annotations

__version__ = "0.1.0"

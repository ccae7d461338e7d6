"""The application floor: the CLI, the demo, the nightly schedule and the billing cycle.

It sits above the stages (``rpmpipe.ingest``, ``rpmpipe.metrics``, ``rpmpipe.billing_export``,
``rpmpipe.simulators``) and may import all of them; nothing below imports it.
"""

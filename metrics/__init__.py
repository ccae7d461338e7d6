"""Engagement metrics: transmission days and management minutes under the CMS rule sets.

Pure (plain values in, values out):
    ``rules``       rule sets per program and calendar year, routing days/minutes to codes
    ``snapshot``    the registry as values (zones, device assignments, enrollments)
    ``days``        distinct local days with data per patient (vectorised, streamed)
    ``minutes``     management minutes per patient per local month
    ``engagement``  records with status, reason, lines, evidence and forecast
    ``report``      the records as JSON, CSV, a table, one patient's detail

I/O edges:
    ``sources``     the readings Parquet dataset (only needed days and columns, in batches)
    ``job``         registry loading, ``compute_and_persist`` into ``engagement_records``
"""

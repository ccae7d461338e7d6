"""Ingest stage: MQTT subscriber, payload decoders, Parquet sink, quarantine.

Pure decoding lives in :mod:`ingest.decoders` (and the format modules beside it); files are
written only by :mod:`ingest.sink` and :mod:`ingest.quarantine`; the broker is touched only
by :mod:`ingest.subscriber`.
"""

"""Start-up: ingest connects to the broker while its writer loads the pipeline and opens the
registry, so a queued backlog streams in from the first moment."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from ingest_helpers import bp_payload, drop_session, publish, reading_topic, register_devices
from sqlalchemy import Engine

from rpmpipe.ingest.subscriber import IngestService, run_until
from rpmpipe.registry.db import open_registry

PROBE = """
import sys
import rpmpipe.app.cli.ingest_cmds
import rpmpipe.ingest.subscriber
print(sorted({m.split(".")[0] for m in sys.modules} & {"pyarrow", "numpy", "sqlalchemy"}))
"""


def test_the_subscriber_loads_neither_pyarrow_nor_sqlalchemy_to_connect() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.services
def test_a_queued_backlog_streams_in_while_the_registry_is_opened(stack) -> None:  # type: ignore[no-untyped-def]
    s = stack.settings
    registry = open_registry(stack.database_url)
    register_devices(registry, ["BP-001"])
    try:
        # The persistent session exists; 20 readings queue for it while ingest is away.
        run_until(IngestService(s.ingest, registry), lambda st: st.subscribed > 0, 30)
        publish(s, [(reading_topic(s, "BP-001"), bp_payload("BP-001", i)) for i in range(20)])
        service: IngestService | None = None

        def open_engine() -> Engine:
            # On the writer thread: the backlog comes in meanwhile.
            deadline = time.monotonic() + 20
            while service is None or service.stats.received == 0:
                assert time.monotonic() < deadline, "nothing came in while the registry opened"
                time.sleep(0.01)
            return registry

        service = IngestService(s.ingest, open_engine)
        stats = run_until(service, lambda st: st.processed >= 20, 30)
        assert stats.processed == 20 and stats.stored == 20
    finally:
        registry.dispose()
        drop_session(s, s.broker.client_id, stack.protocol)

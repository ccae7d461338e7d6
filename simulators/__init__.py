"""Device simulators: a synthetic RPM fleet, its traffic, injected faults, and a publisher.

Typical use (the demo and the benchmarks)::

    from datetime import UTC, datetime
    from rpmpipe.registry.db import open_registry
    from rpmpipe.registry.imports import import_rows
    from rpmpipe.simulators import build_fleet, default_start, simulate, publish

    now = datetime.now(UTC)
    fleet = build_fleet(patients=20, start=default_start(now, days=45), days=45, seed=7)
    engine = open_registry(settings.effective_database_url)
    # kinds in order: patients, devices, assignments, enrollments
    for kind, rows in fleet.registry_rows().items():
        import_rows(engine, kind, rows, source="simulator")
    sim = simulate(fleet, topic_root=settings.broker.topic_root, fmt="mixed", faults=True,
                   until=now)
    stats = publish(settings.broker, sim.messages, speed="max", progress=print)
    # sim.manifest: every injected fault (kind, topic, device id, reading ids), or None

Layout: ``fleet`` (who and what devices), ``traffic`` (what they send, when), ``payloads``
(native / Open mHealth / FHIR encodings), ``faults`` (what goes wrong, and the manifest),
``publisher`` (the only module that does I/O). All but ``publisher`` are pure and
deterministic: the same seed, start, days, format and ``until`` give byte-identical messages.
``until`` (the CLI passes "now") cuts what is not yet due and times the clock-skew fault just
past it, so that reading is in the future of its receipt whatever the window.

Wire formats (full field lists in ``payloads.py``): the reading id is ``reading_id`` (native),
``header.id`` (OMH, a UUID) or the Observation ``id`` (FHIR); the device id is
``device_id`` (native), ``header.acquisition_provenance.source_name`` (OMH) or
``device.identifier.value`` (FHIR), and is always the ``{device_id}`` of the topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from rpmpipe.simulators.faults import FAULT_KINDS, FaultManifest, InjectedFault, inject_faults
from rpmpipe.simulators.fleet import PROFILES, Fleet, build_fleet
from rpmpipe.simulators.publisher import PublishStats, publish, write_manifest
from rpmpipe.simulators.traffic import WIRE_FORMATS, SimMessage, plan_traffic, to_messages

__all__ = [
    "FAULT_KINDS",
    "PROFILES",
    "WIRE_FORMATS",
    "FaultManifest",
    "Fleet",
    "InjectedFault",
    "PublishStats",
    "SimMessage",
    "Simulation",
    "build_fleet",
    "default_start",
    "publish",
    "simulate",
    "write_manifest",
]


@dataclass(frozen=True)
class Simulation:
    messages: tuple[SimMessage, ...]
    manifest: FaultManifest | None


def default_start(now: datetime, days: int) -> date:
    """``days`` days before today (UTC): the window ends yesterday, so a demo ends "now"-ish."""
    return now.astimezone(UTC).date() - timedelta(days=days)


def simulate(
    fleet: Fleet,
    *,
    topic_root: str = "rpm/v1",
    fmt: str = "native",
    faults: bool = False,
    until: datetime | None = None,
) -> Simulation:
    """All messages of the fleet's window in publish order (and the fault manifest)."""
    traffic = plan_traffic(fleet, fmt, until)
    manifest = None
    if faults:
        traffic, manifest = inject_faults(traffic, fleet, topic_root, until)
    return Simulation(tuple(to_messages(traffic, topic_root)), manifest)

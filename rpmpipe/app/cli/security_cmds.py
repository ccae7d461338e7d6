"""``rpmpipe broker-config``: Mosquitto configuration with TLS, per-device users and ACLs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.errors import EXIT_UNAVAILABLE, RpmpipeError


def broker_config(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option("--out", help="Directory to write into (created with mode 0700)."),
    ],
    port: Annotated[int, typer.Option("--port", help="TLS port of the loopback listener.")] = 8883,
    run_as: Annotated[
        str,
        typer.Option(
            "--run-as",
            help=(
                "User Mosquitto drops to when started as root. When this command runs as "
                "root, the broker's files are handed to that user; credentials.csv and "
                "ca.key are not. Use 'root' only for throw-away test brokers."
            ),
        ),
    ] = "mosquitto",
    ingest_workers: Annotated[
        int,
        typer.Option(
            "--ingest-workers",
            help=(
                "Broker users for ingest: 'ingest', 'ingest-2', ... A client's id is its "
                "username, so each worker of a --shared-group needs its own user."
            ),
        ),
    ] = 1,
    readings_per_device_day: Annotated[
        int,
        typer.Option(
            "--readings-per-device-day",
            help="Sizes the broker's offline queue: devices x this (a day of readings).",
        ),
    ] = 48,
) -> None:
    """Write a Mosquitto 2 configuration for every device in the registry."""
    settings = settings_of(ctx)
    # Imported here so `--help` pays for neither cryptography nor SQLAlchemy.
    from rpmpipe.registry.db import open_registry
    from rpmpipe.security.broker_config import registered_device_ids, write_broker_config

    try:
        engine = open_registry(settings.effective_database_url)
        try:
            devices = registered_device_ids(engine)
        finally:
            engine.dispose()
        result = write_broker_config(
            out,
            devices,
            settings.broker.topic_root,
            port,
            datetime.now(UTC),
            run_as=run_as,
            message_size_limit=settings.broker.message_size_limit,
            ingest_workers=ingest_workers,
            readings_per_device_day=readings_per_device_day,
        )
    except RpmpipeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_UNAVAILABLE) from None
    d = result.directory.resolve()
    typer.echo(
        f"wrote {d}/mosquitto.conf: {result.devices} devices "
        f"({len(result.added)} new, {len(result.removed)} removed), TLS on 127.0.0.1:{port}"
        + ("; new CA" if result.ca_created else "")
        + ("; new server certificate" if result.server_certificate_issued else "")
        + (
            " (restart Mosquitto to load it)"
            if result.server_certificate_issued and not result.ca_created
            else ""
        )
    )
    typer.echo(f"start:   mosquitto -c {d}/mosquitto.conf   (running broker: kill -HUP <pid>)")
    typer.echo(
        f"clients: RPMPIPE_BROKER_URL=mqtts://127.0.0.1:{port} RPMPIPE_BROKER_CA={d}/ca.crt "
        "RPMPIPE_BROKER_USERNAME=ingest RPMPIPE_BROKER_PASSWORD=<from credentials.csv>"
    )
    typer.echo(f"passwords: {d}/credentials.csv (mode 0600; hand out, then keep it safe)")


BROKER_CONFIG_HELP = (
    "Write a Mosquitto 2 configuration for every device in the registry.\n\n"
    "The broker gets a TLS-only listener on 127.0.0.1 (a private CA and a server certificate "
    "for 127.0.0.1 and localhost), no anonymous access, a hashed password file and an ACL: "
    "each device may only publish to ROOT/devices/DEVICE_ID/readings, the 'ingest' user may "
    "only read ROOT/#, and 'care-app' may only publish to ROOT/activities. A client's id is "
    "its username (no credential can take over another's session), retained messages are "
    "refused, payloads over broker.message_size_limit are refused, and the queue is saved "
    "to disk every second.\n\n"
    "OUT/credentials.csv (role,username,password) holds the clear-text passwords to hand out. "
    "Rerunning keeps the CA and every password already issued, adds new devices and drops "
    "devices no longer registered. To rotate a password, delete its row and rerun; then "
    "reload Mosquitto with SIGHUP."
)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app``."""
    app.command("broker-config", help=BROKER_CONFIG_HELP)(broker_config)

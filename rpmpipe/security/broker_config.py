"""``rpmpipe broker-config``: write a Mosquitto 2 configuration for the registered devices.

Files in the output directory (mode 0700; every file 0600, written atomically):

- ``mosquitto.conf``   TLS-only listener on 127.0.0.1, no anonymous clients
- ``ca.crt`` / ``ca.key``        private CA (kept across runs)
- ``server.crt`` / ``server.key`` broker certificate (kept while valid for the same names)
- ``passwd``           Mosquitto ``$7$`` password hashes
- ``acl``              per-user topic rights
- ``credentials.csv``  ``role,username,password`` in clear: hand out, then guard or delete
- ``persistence/``     the broker's store of queued messages

Run as root with ``run_as`` (the broker's user), root keeps owning the directory and every
secret: the broker's user can read exactly what Mosquitto reads (config, passwd, acl, ca.crt,
server certificate and key: group-readable, 0640) and write only ``persistence/``. A
compromised broker can therefore neither replace ``credentials.csv`` (which reruns trust) nor
the pinned ``ca.crt``.

``credentials.csv`` is the source of truth on reruns: passwords in it are kept, devices new
in the registry get one, devices gone from the registry lose theirs.
"""

from __future__ import annotations

import os
import pwd
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from rpmpipe.errors import ConfigError
from rpmpipe.files import private_dir, write_private
from rpmpipe.logs import get_logger
from rpmpipe.registry.models import Device
from rpmpipe.security import certs
from rpmpipe.security.mosquitto import (
    MIN_QUEUED_MESSAGES,
    SALT_BYTES,
    Credential,
    ingest_usernames,
    parse_credentials_csv,
    plan_credentials,
    queue_limit,
    render_acl,
    render_credentials_csv,
    render_mosquitto_conf,
    render_password_file,
)

SERVER_HOSTS = ("127.0.0.1", "localhost")
CA_NAME = "rpmpipe broker CA"

log = get_logger(__name__)


@dataclass(frozen=True)
class BrokerConfigResult:
    directory: Path
    port: int
    devices: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    ca_created: bool
    server_certificate_issued: bool


def registered_device_ids(engine: Engine) -> list[str]:
    """Every device id in the registry that is not retired, sorted."""
    with Session(engine) as session:
        return sorted(session.scalars(select(Device.device_id).where(Device.retired_on.is_(None))))


def fresh_passwords() -> Iterator[str]:
    """Random passwords of 192 bits, URL-safe so they survive env vars and CSV.

    A token that starts with ``-`` is drawn again: credentials.csv neutralises a cell that a
    spreadsheet would run as a formula by prefixing ``'``, and a password copied from such a
    cell would not be the password.
    """
    while True:
        token = secrets.token_urlsafe(24)
        if token[0] != "-":
            yield token


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write_broker_config(
    out_dir: Path,
    device_ids: Iterable[str],
    topic_root: str,
    port: int,
    now: datetime,
    run_as: str = "",
    *,
    message_size_limit: int = 262_144,
    ingest_workers: int = 1,
    readings_per_device_day: int = 48,
    min_queued_messages: int = MIN_QUEUED_MESSAGES,
) -> BrokerConfigResult:
    """Write (or update) the Mosquitto configuration for ``device_ids`` into ``out_dir``."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: {port} is not a TCP port")
    if not 1 <= ingest_workers <= 64:
        raise ConfigError(f"--ingest-workers: {ingest_workers} is not between 1 and 64")
    if message_size_limit < 1024:
        raise ConfigError(
            f"setting 'broker.message_size_limit': {message_size_limit} bytes is too small"
        )
    if readings_per_device_day < 1:
        raise ConfigError("--readings-per-device-day: must be at least 1")
    device_ids = list(device_ids)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    private_dir(out_dir)
    private_dir(out_dir / "persistence")

    creds_path = out_dir / "credentials.csv"
    old_text = _read(creds_path)
    existing = parse_credentials_csv(old_text.decode("utf-8"), str(creds_path)) if old_text else []
    credentials = plan_credentials(existing, device_ids, fresh_passwords(), ingest_workers)
    old_devices = {c.username for c in existing if c.role == "device"}
    new_devices = {c.username for c in credentials if c.role == "device"}

    ca_created, issued = _write_certificates(out_dir, now)

    # credentials.csv first: a rerun trusts it, so a crash after it is repaired by rerunning.
    write_private(creds_path, render_credentials_csv(credentials).encode())
    salts = {c.username: secrets.token_bytes(SALT_BYTES) for c in credentials}
    write_private(out_dir / "passwd", render_password_file(credentials, salts).encode())
    acl = render_acl(topic_root, sorted(new_devices), ingest_usernames(ingest_workers))
    write_private(out_dir / "acl", acl.encode())
    conf = render_mosquitto_conf(
        out_dir,
        port,
        run_as,
        message_size_limit=message_size_limit,
        max_queued_messages=queue_limit(
            len(new_devices), readings_per_device_day, min_queued_messages
        ),
    )
    write_private(out_dir / "mosquitto.conf", conf.encode())
    _hand_over(out_dir, run_as)

    result = BrokerConfigResult(
        directory=out_dir,
        port=port,
        devices=len(new_devices),
        added=tuple(sorted(new_devices - old_devices)),
        removed=tuple(sorted(old_devices - new_devices)),
        ca_created=ca_created,
        server_certificate_issued=issued,
    )
    log.info(
        "broker_config_written",
        devices=result.devices,
        added=len(result.added),
        removed=len(result.removed),
        ca_created=ca_created,
        server_certificate_issued=issued,
        port=port,
    )
    return result


# What Mosquitto itself must read or write; credentials.csv and ca.key stay with the owner.
BROKER_FILES = ("mosquitto.conf", "passwd", "acl", "ca.crt", "server.crt", "server.key")


def _hand_over(out_dir: Path, run_as: str) -> None:
    """Let the broker user read its files when we run as root (Mosquitto drops to that user).

    Root keeps owning the directory and every file; the broker's group may enter the directory
    and read :data:`BROKER_FILES` (0640), and the broker's user owns ``persistence/`` (0700),
    the only place it writes. ``credentials.csv`` and ``ca.key`` stay 0600 root. Without root,
    Mosquitto ignores ``user`` and runs as whoever starts it, who owns the files.
    """
    if not run_as or os.geteuid() != 0 or run_as == "root":
        return
    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        raise ConfigError(f"--run-as: no user named {run_as!r} on this machine") from None
    os.chown(out_dir, 0, entry.pw_gid)
    os.chmod(out_dir, 0o750)  # noqa: S103 - root:broker-group, the group may only enter
    for path in (out_dir / n for n in BROKER_FILES):
        os.chown(path, 0, entry.pw_gid)
        os.chmod(path, 0o640)
    for path in (out_dir / n for n in ("credentials.csv", "ca.key")):
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
    persistence = out_dir / "persistence"
    os.chown(persistence, entry.pw_uid, entry.pw_gid)
    os.chmod(persistence, 0o700)
    for child in persistence.iterdir():
        os.chown(child, entry.pw_uid, entry.pw_gid)


def _write_certificates(out_dir: Path, now: datetime) -> tuple[bool, bool]:
    """Keep the CA (create it once); reissue the server certificate only when needed."""
    ca_cert, ca_key = _read(out_dir / "ca.crt"), _read(out_dir / "ca.key")
    server_cert, server_key = _read(out_dir / "server.crt"), _read(out_dir / "server.key")
    ca_created = False
    if ca_cert is None:
        if server_cert is not None:
            raise ConfigError(
                f"{out_dir}: server.crt exists but ca.crt is missing; restore ca.crt and ca.key, "
                "or remove server.crt/server.key to start over with a new CA"
            )
        ca = certs.issue_ca(CA_NAME, now)
        write_private(out_dir / "ca.key", ca.key_pem)
        write_private(out_dir / "ca.crt", ca.cert_pem)
        ca_cert, ca_key, ca_created = ca.cert_pem, ca.key_pem, True
    keep = (
        server_cert is not None
        and server_key is not None
        and certs.server_still_good(server_cert, ca_cert, SERVER_HOSTS, now)
    )
    if keep:
        return ca_created, False
    if ca_key is None:
        raise ConfigError(
            f"{out_dir}: the server certificate must be reissued but ca.key is missing; "
            "put the CA key back beside ca.crt and rerun"
        )
    server = certs.issue_server(certs.KeyPair(ca_cert, ca_key), SERVER_HOSTS, now)
    write_private(out_dir / "server.key", server.key_pem)
    write_private(out_dir / "server.crt", server.cert_pem)
    return ca_created, True


def credentials_by_user(out_dir: Path) -> dict[str, Credential]:
    """The issued credentials in ``out_dir/credentials.csv`` by username."""
    path = out_dir / "credentials.csv"
    return {c.username: c for c in parse_credentials_csv(path.read_text("utf-8"), str(path))}

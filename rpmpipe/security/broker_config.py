"""``rpmpipe broker-config``: write a Mosquitto 2 configuration for the registered devices.

Files in the output directory (mode 0700; every file 0600, written atomically):

- ``mosquitto.conf``   TLS-only listener on 127.0.0.1, no anonymous clients
- ``ca.crt`` / ``ca.key``        private CA (kept across runs)
- ``server.crt`` / ``server.key`` broker certificate (kept while valid for the same names)
- ``passwd``           Mosquitto ``$7$`` password hashes
- ``acl``              per-user topic rights
- ``credentials.csv``  ``role,username,password`` in clear: hand out, then guard or delete

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
    SALT_BYTES,
    Credential,
    parse_credentials_csv,
    plan_credentials,
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


def _fresh_passwords() -> Iterator[str]:
    while True:
        yield secrets.token_urlsafe(24)  # 192 bits; URL-safe so it survives env vars and CSV


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
) -> BrokerConfigResult:
    """Write (or update) the Mosquitto configuration for ``device_ids`` into ``out_dir``."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: {port} is not a TCP port")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    private_dir(out_dir)
    private_dir(out_dir / "persistence")

    creds_path = out_dir / "credentials.csv"
    old_text = _read(creds_path)
    existing = parse_credentials_csv(old_text.decode("utf-8"), str(creds_path)) if old_text else []
    credentials = plan_credentials(existing, device_ids, _fresh_passwords())
    old_devices = {c.username for c in existing if c.role == "device"}
    new_devices = {c.username for c in credentials if c.role == "device"}

    ca_created, issued = _write_certificates(out_dir, now)

    # credentials.csv first: a rerun trusts it, so a crash after it is repaired by rerunning.
    write_private(creds_path, render_credentials_csv(credentials).encode())
    salts = {c.username: secrets.token_bytes(SALT_BYTES) for c in credentials}
    write_private(out_dir / "passwd", render_password_file(credentials, salts).encode())
    write_private(out_dir / "acl", render_acl(topic_root, sorted(new_devices)).encode())
    write_private(out_dir / "mosquitto.conf", render_mosquitto_conf(out_dir, port, run_as).encode())
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
    """Give the broker user its files when we run as root (Mosquitto drops to that user).

    Without root, Mosquitto ignores ``user`` and runs as whoever starts it, who owns the files.
    """
    if not run_as or os.geteuid() != 0 or run_as == "root":
        return
    try:
        entry = pwd.getpwnam(run_as)
    except KeyError:
        raise ConfigError(f"--run-as: no user named {run_as!r} on this machine") from None
    for path in (out_dir, out_dir / "persistence", *(out_dir / n for n in BROKER_FILES)):
        os.chown(path, entry.pw_uid, entry.pw_gid)


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

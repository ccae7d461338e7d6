"""Mosquitto 2 files as text: password file, ACL, broker config, and the credentials CSV.

Pure functions. Usernames become part of topics and of line-based files, so they are
checked here before anything is rendered.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rpmpipe.csv_cells import SafeCsvWriter, restore_cell
from rpmpipe.errors import ConfigError
from rpmpipe.mqtt import BROKER_DROPPED_TOPIC

INGEST_USER = "ingest"
DROPPED_TOPIC = BROKER_DROPPED_TOPIC
CARE_APP_USER = "care-app"
ROLES = ("device", "ingest", "care_app")
CREDENTIALS_HEADER = ("role", "username", "password")

# mosquitto_passwd's defaults for the "$7$" (PBKDF2-SHA512) format of Mosquitto 2.0.
PASSWORD_ITERATIONS = 101
SALT_BYTES = 12

# Only AEAD suites with forward secrecy for TLS 1.2 (no CBC, no SHA-1 MACs); TLS 1.3's own
# suites are all AEAD. The broker's key is ECDSA (P-256); RSA names are kept for a key
# replaced by hand.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
# The broker writes its in-memory store (queued messages of persistent sessions) to disk this
# often: a message it acknowledged survives a crash of the broker (kill -9) once this many
# seconds have passed. Mosquitto's default is 1800 s.
AUTOSAVE_SECONDS = 1
# Floor of the offline queue of one client (ingest), whatever the fleet.
MIN_QUEUED_MESSAGES = 10_000


def queue_limit(
    devices: int, readings_per_device_day: int, floor: int = MIN_QUEUED_MESSAGES
) -> int:
    """``max_queued_messages``: a day of readings of the whole fleet (at least ``floor``)."""
    return max(floor, devices * readings_per_device_day)


def ingest_usernames(workers: int) -> list[str]:
    """``ingest``, ``ingest-2``, ...: one broker user (and so one client id) per worker."""
    return [INGEST_USER] + [f"{INGEST_USER}-{i}" for i in range(2, workers + 1)]


# Device ids end up in topics (no + # /), in line-based files (no whitespace) and before the
# password file's ':' separator; the ids in use (BP-000123, SC-000044) fit this easily.
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Credential:
    role: str
    username: str
    password: str


def check_username(username: str) -> None:
    """Raise ConfigError if ``username`` cannot be used safely as a broker user and topic level."""
    if not _USERNAME.match(username):
        raise ConfigError(
            f"device id {username!r} cannot be a broker username: use letters, digits, '.', '_' "
            "or '-' (at most 64, starting with a letter or digit)"
        )


def hash_password(password: str, salt: bytes, iterations: int = PASSWORD_ITERATIONS) -> str:
    """Mosquitto's ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`` password hash."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_matches(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (as written by us or by mosquitto_passwd)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt = base64.b64decode(parts[3])
    return hash_password(password, salt, int(parts[2])) == hashed


def render_password_file(credentials: Iterable[Credential], salts: Mapping[str, bytes]) -> str:
    """``username:hash`` lines; ``salts`` gives each username's salt (fresh per run is fine)."""
    return "".join(
        f"{c.username}:{hash_password(c.password, salts[c.username])}\n" for c in credentials
    )


def render_acl(
    topic_root: str, device_ids: Iterable[str], ingest_users: Iterable[str] = (INGEST_USER,)
) -> str:
    """The ACL: a device writes only its readings, ingest reads, the care app writes activities.

    Per-user blocks rather than a ``pattern ... %u`` line: a pattern applies to every user,
    so the ingest and care-app users would also get a ``devices/<their name>/readings`` topic.
    Ingest may also read the broker's dropped-message counter (a full offline queue).
    """
    lines = [
        "# Written by `rpmpipe broker-config`; edits are lost on the next run.",
        "# No topic lines before the first 'user': anonymous clients get nothing.",
    ]
    for user in ingest_users:
        lines += [
            "",
            f"user {user}",
            f"topic read {topic_root}/#",
            f"topic read {DROPPED_TOPIC}",
        ]
    lines += [
        "",
        f"user {CARE_APP_USER}",
        f"topic write {topic_root}/activities",
    ]
    for device_id in sorted(device_ids):
        check_username(device_id)
        lines += ["", f"user {device_id}", f"topic write {topic_root}/devices/{device_id}/readings"]
    return "\n".join(lines) + "\n"


def render_mosquitto_conf(
    directory: Path,
    port: int,
    run_as: str,
    *,
    message_size_limit: int = 262_144,
    max_queued_messages: int = MIN_QUEUED_MESSAGES,
) -> str:
    """A TLS-only, authenticated listener on 127.0.0.1:``port`` using the files in ``directory``."""
    d = directory.resolve()
    lines = [
        "# Written by `rpmpipe broker-config`; rerun it after adding devices to the registry,",
        "# then reload Mosquitto (SIGHUP) to pick up new passwords and ACL entries.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"acl_file {d / 'acl'}",
        "# Nothing rpmpipe sends is retained; a device's retained message is refused.",
        "retain_available false",
        f"message_size_limit {message_size_limit}",
        "",
        "# Keep queued messages of persistent sessions (ingest) across broker restarts and",
        f"# crashes: the store is saved every {AUTOSAVE_SECONDS} s (what it acknowledged longer ago",
        "# survives kill -9).",
        "persistence true",
        f"persistence_location {d / 'persistence'}/",
        "autosave_on_changes false",
        f"autosave_interval {AUTOSAVE_SECONDS}",
        "# A day of readings of the whole fleet; beyond it messages are dropped and counted in",
        f"# {DROPPED_TOPIC} (rpmpipe_ingest_broker_dropped_messages).",
        f"max_queued_messages {max_queued_messages}",
        "sys_interval 10",
        "",
        "# The only listener: TLS on loopback. No plain-TCP listener exists.",
        f"listener {port} 127.0.0.1",
        "protocol mqtt",
        "# A client's id is its username: no credential can take over another's session",
        "# (a device cannot connect as ingest and drop its queue). A listener option.",
        "use_username_as_clientid true",
        f"cafile {d / 'ca.crt'}",
        f"certfile {d / 'server.crt'}",
        f"keyfile {d / 'server.key'}",
        "tls_version tlsv1.2",
        f"ciphers {TLS12_CIPHERS}",
        "require_certificate false",
    ]
    if run_as:
        # Mosquitto started as root drops to this user; it must be able to read this directory.
        lines.insert(3, f"user {run_as}")
    return "\n".join(lines) + "\n"


def parse_credentials_csv(text: str, source: str) -> list[Credential]:
    """Rows of an existing ``credentials.csv`` (to keep passwords across reruns)."""
    reader = csv.reader(io.StringIO(text))
    rows = list(reader)
    if not rows:
        return []
    if tuple(rows[0]) != CREDENTIALS_HEADER:
        raise ConfigError(f"{source}: expected header {','.join(CREDENTIALS_HEADER)}")
    out: list[Credential] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 3 or row[0] not in ROLES or not row[1] or not row[2]:
            raise ConfigError(
                f"{source}, row {number}: expected role,username,password with role in {ROLES}"
            )
        out.append(Credential(*(restore_cell(cell) for cell in row)))
    return out


def render_credentials_csv(credentials: Iterable[Credential]) -> str:
    buf = io.StringIO()
    writer = SafeCsvWriter(buf)
    writer.writerow(CREDENTIALS_HEADER)
    for c in credentials:
        writer.writerow((c.role, c.username, c.password))
    return buf.getvalue()


def plan_credentials(
    existing: Iterable[Credential],
    device_ids: Iterable[str],
    new_password: Iterable[str],
    ingest_workers: int = 1,
) -> list[Credential]:
    """Service users plus one user per registered device, keeping every password already issued.

    Devices no longer in the registry lose their credentials. ``new_password`` yields fresh
    passwords for users that have none yet. ``ingest_workers`` ingest users are issued
    (``ingest``, ``ingest-2``, ...), one per worker of a shared group.
    """
    kept = {(c.role, c.username): c.password for c in existing}
    fresh = iter(new_password)
    ingest = ingest_usernames(ingest_workers)
    wanted = [("ingest", u) for u in ingest] + [("care_app", CARE_APP_USER)]
    devices = sorted(set(device_ids))
    for device_id in devices:
        check_username(device_id)
        if device_id in (*ingest, CARE_APP_USER):
            raise ConfigError(f"device id {device_id!r} collides with a service username")
    wanted += [("device", d) for d in devices]
    return [Credential(role, user, kept.get((role, user)) or next(fresh)) for role, user in wanted]

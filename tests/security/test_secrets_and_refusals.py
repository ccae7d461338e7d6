"""Secrets off the command line, refusals that say so, and quarantine that neither fills the
disk nor shows raw topics. Against the Mosquitto that `rpmpipe broker-config` configures.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from mosquitto_harness import DEVICES, SecuredBroker

from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.quarantine import read_quarantine
from rpmpipe.ingest.replay import replay
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.settings import load_settings

pytestmark = pytest.mark.services

RPMPIPE = str(Path(sys.executable).parent / "rpmpipe")


def ingest_env(broker: SecuredBroker, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_") or k == "RPMPIPE_CI"}
    env.update(
        {
            "RPMPIPE_DATA_DIR": str(data),
            "RPMPIPE_BROKER_URL": broker.url,
            "RPMPIPE_BROKER_CA": str(broker.directory / "ca.crt"),
            "RPMPIPE_BROKER_USERNAME": "ingest",
            "RPMPIPE_BROKER_TOPIC_ROOT": broker.topic_root,
            "RPMPIPE_LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


def registry_with_devices(data: Path) -> None:
    engine = open_registry(f"sqlite:///{data / 'registry.db'}")
    rows = [{"device_id": d, "kind": "bp_cuff", "model": "t"} for d in DEVICES]
    import_rows(engine, "devices", rows, source="test")
    engine.dispose()


# --- 14. secrets off the command line -----------------------------------------------------------


def test_broker_password_and_database_url_are_read_from_files(tmp_path: Path) -> None:
    password = tmp_path / "broker-password"
    password.write_text("s3cret-from-file\n")
    url = tmp_path / "database-url"
    url.write_text("postgresql+psycopg://rpm:pw-in-file@db.internal:5432/rpm\n")
    settings = load_settings(
        None,
        env={
            "RPMPIPE_BROKER_PASSWORD_FILE": str(password),
            "RPMPIPE_DATABASE_URL_FILE": str(url),
        },
    )
    assert settings.broker.password == "s3cret-from-file"  # noqa: S105 - a test value
    assert settings.effective_database_url.endswith("pw-in-file@db.internal:5432/rpm")


def test_ingest_connects_with_the_password_from_a_file(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    registry_with_devices(data)
    secret = tmp_path / "ingest-password"
    secret.write_text(secured_broker.password("ingest") + "\n")
    env = ingest_env(secured_broker, data, RPMPIPE_BROKER_PASSWORD_FILE=str(secret))
    done = subprocess.run(
        [RPMPIPE, "ingest", "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_a_password_on_the_command_line_is_warned_about_without_repeating_it(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_")}
    env["RPMPIPE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [
            RPMPIPE,
            "--database-url",
            "postgresql+psycopg://rpm:Pa55-w0rd@127.0.0.1:1/rpm",
            "quarantine",
            "list",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "a password is on the command line (database_url)" in done.stderr
    assert "RPMPIPE_DATABASE_URL_FILE" in done.stderr
    assert "Pa55-w0rd" not in done.stderr + done.stdout


# --- issue 16: a bad password is "not authorized", and --once gives up with 4 ----------------


def test_a_bad_password_is_reported_as_not_authorized_and_ingest_once_exits_4(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    registry_with_devices(data)
    env = ingest_env(secured_broker, data, RPMPIPE_BROKER_PASSWORD="wrong-password")  # noqa: S106
    done = subprocess.run(
        [RPMPIPE, "ingest", "--once"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 4
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not authorized" in errors[0]
    assert "wrong-password" not in done.stderr


# --- 3 and 13. quarantine keeps no huge payload and shows no raw topic ---------------------


def test_quarantine_keeps_only_the_start_of_an_oversized_payload(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "data")})
    engine = open_registry(settings.effective_database_url)
    registry_with_devices(settings.data_dir)
    pipeline = IngestPipeline(settings.ingest, engine, "test")
    huge = b'{"device_id": "BP-000001", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    topic = f"{settings.broker.topic_root}/devices/BP-000001/readings"
    for _ in range(5):  # five floods of 10 MB each
        outcome = pipeline.handle([Message(topic, huge + os.urandom(4), datetime.now(UTC))])
        assert outcome.quarantined["too_large"] == 1
    on_disk = sum(p.stat().st_size for p in settings.quarantine_dir.glob("*.parquet"))
    assert on_disk < 200_000, f"{on_disk} bytes of quarantine for five 10 MB payloads"
    rows = read_quarantine(settings.quarantine_dir).to_pylist()
    assert len(rows) == 5
    for r in rows:
        assert r["payload_size"] == len(huge) + 4
        assert len(r["payload"]) == 4096 and huge.startswith(r["payload"])
        assert len(r["payload_sha256"]) == 64
    one = Message(topic, huge, datetime.now(UTC))
    pipeline.handle([one])
    newest = [
        r
        for r in read_quarantine(settings.quarantine_dir).to_pylist()
        if r["payload_size"] == len(huge)
    ]
    assert newest[0]["payload_sha256"] == hashlib.sha256(huge).hexdigest()
    summary = replay(
        settings.ingest, engine
    )  # a cut payload cannot be replayed; it stays, saying why
    assert summary.replayed == 0 and summary.still_quarantined == 6
    engine.dispose()


def test_quarantine_list_shows_the_topic_kind_never_the_raw_topic(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "data")})
    engine = open_registry(settings.effective_database_url)
    pipeline = IngestPipeline(settings.ingest, engine, "test")
    root = settings.broker.topic_root
    pipeline.handle(
        [
            Message(f"{root}/devices/Jane-Doe-1950-02-03/readings", b"{}", datetime.now(UTC)),
            Message(f"{root}/Jane/Doe/notes", b"{}", datetime.now(UTC)),
        ]
    )
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_")}
    env["RPMPIPE_DATA_DIR"] = str(settings.data_dir)
    for fmt in ("table", "json"):
        done = subprocess.run(
            [RPMPIPE, "quarantine", "list", "--format", fmt],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "Jane" not in done.stdout and "Doe" not in done.stdout
        if fmt == "json":
            kinds = sorted(r["topic_kind"] for r in orjson.loads(done.stdout))
            assert kinds == ["other topic", "readings"]

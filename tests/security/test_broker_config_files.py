"""broker-config output: Mosquitto-compatible hashes, private file modes, stable reruns."""

from __future__ import annotations

import csv
import io
import shutil
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.errors import ConfigError
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import Device
from rpmpipe.security import certs
from rpmpipe.security.broker_config import (
    credentials_by_user,
    fresh_passwords,
    write_broker_config,
)
from rpmpipe.security.mosquitto import (
    Credential,
    check_username,
    hash_password,
    parse_credentials_csv,
    password_matches,
    plan_credentials,
    render_acl,
    render_credentials_csv,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ROOT = "rpm/v1"


def _write(out: Path, devices: list[str], now: datetime = NOW) -> None:
    write_broker_config(out, devices, ROOT, 8883, now)


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    pwfile = tmp_path / "pw"
    pwfile.touch()
    subprocess.run([tool, "-b", str(pwfile), "BP-000001", "s3cret pass"], check=True)
    user, theirs = pwfile.read_text().strip().split(":", 1)
    assert user == "BP-000001"
    assert theirs.startswith("$7$101$")
    assert password_matches("s3cret pass", theirs)
    assert not password_matches("s3cret pasS", theirs)
    import base64

    salt = base64.b64decode(theirs.split("$")[3])
    assert hash_password("s3cret pass", salt) == theirs


@given(password=st.text(min_size=1, max_size=40), salt=st.binary(min_size=12, max_size=12))
def test_hash_round_trips_and_rejects_other_passwords(password: str, salt: bytes) -> None:
    hashed = hash_password(password, salt)
    assert password_matches(password, hashed)
    assert not password_matches(password + "x", hashed)


@given(st.text(min_size=1, max_size=70))
def test_accepted_usernames_are_safe_in_topics_and_files(name: str) -> None:
    try:
        check_username(name)
    except ConfigError:
        return
    assert not set(name) & set("+#/:$ \t\r\n\x00")


def test_files_are_private(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    _write(out, ["BP-000001"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    names = {p.name for p in out.iterdir() if p.is_file()}
    assert names == {
        "mosquitto.conf", "passwd", "acl", "ca.crt", "ca.key", "server.crt", "server.key",
        "credentials.csv",
    }  # fmt: skip
    for p in out.iterdir():
        expected = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == expected, p.name


def test_credentials_cover_devices_ingest_and_care_app(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    _write(out, ["SC-000044", "BP-000123"])
    with (out / "credentials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["role"], r["username"]) for r in rows] == [
        ("ingest", "ingest"),
        ("care_app", "care-app"),
        ("device", "BP-000123"),
        ("device", "SC-000044"),
    ]
    assert len({r["password"] for r in rows}) == 4
    assert all(len(r["password"]) >= 32 for r in rows)
    hashes = dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())
    for r in rows:
        assert password_matches(r["password"], hashes[r["username"]])


def test_a_password_copied_from_credentials_csv_as_text_is_the_password() -> None:
    # One token in 64 starts with "-", which the CSV writer neutralises with a leading "'":
    # 3000 draws would hold about 47 such passwords, each copied wrongly from the file.
    draws = fresh_passwords()
    creds = [Credential("device", f"BP-{i:06d}", next(draws)) for i in range(3000)]
    rows = list(csv.reader(io.StringIO(render_credentials_csv(creds))))[1:]
    assert [row[2] for row in rows] == [c.password for c in creds]


def test_rerun_keeps_passwords_and_ca_adds_new_and_drops_removed(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    _write(out, ["BP-000001", "BP-000002"])
    before = credentials_by_user(out)
    ca_before = (out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes()
    server_before = (out / "server.crt").read_bytes()

    _write(out, ["BP-000001", "SC-000003"], now=NOW + timedelta(days=1))
    after = credentials_by_user(out)

    assert set(after) == {"ingest", "care-app", "BP-000001", "SC-000003"}
    for kept in ("ingest", "care-app", "BP-000001"):
        assert after[kept].password == before[kept].password
    assert after["SC-000003"].password not in {c.password for c in before.values()}
    assert ((out / "ca.crt").read_bytes(), (out / "ca.key").read_bytes()) == ca_before
    assert (out / "server.crt").read_bytes() == server_before
    assert "BP-000002" not in (out / "acl").read_text()
    assert "BP-000002" not in (out / "passwd").read_text()


def test_deleting_a_row_rotates_that_password_only(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    _write(out, ["BP-000001", "BP-000002"])
    before = credentials_by_user(out)
    path = out / "credentials.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if "BP-000001" not in line))
    _write(out, ["BP-000001", "BP-000002"])
    after = credentials_by_user(out)
    assert after["BP-000001"].password != before["BP-000001"].password
    assert after["BP-000002"].password == before["BP-000002"].password


def test_server_certificate_is_reissued_near_expiry_by_the_same_ca(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    _write(out, [])
    first = (out / "server.crt").read_bytes()
    _write(out, [], now=NOW + certs.SERVER_LIFETIME - timedelta(days=10))
    second = (out / "server.crt").read_bytes()
    assert second != first
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    x509.load_pem_x509_certificate(second).verify_directly_issued_by(ca)


def test_server_certificate_names_loopback_and_localhost(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    _write(out, [])
    cert = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_acl_gives_each_device_only_its_own_readings_topic() -> None:
    acl = render_acl("root", ["BP-1", "SC-2"])
    blocks = [b.strip().splitlines() for b in acl.split("\n\n")[1:]]
    assert blocks == [
        # ingest also reads the broker's dropped-message counter (a full queue is visible).
        ["user ingest", "topic read root/#", "topic read $SYS/broker/publish/messages/dropped"],
        ["user care-app", "topic write root/activities"],
        ["user BP-1", "topic write root/devices/BP-1/readings"],
        ["user SC-2", "topic write root/devices/SC-2/readings"],
    ]
    assert "pattern" not in acl


@pytest.mark.parametrize("bad", ["BP/1", "BP+1", "BP#1", "a b", "x:y", "", "-lead"])
def test_unsafe_device_ids_are_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be a broker username"):
        _write(tmp_path / "broker", [bad])


@pytest.mark.parametrize("clash", ["ingest", "care-app"])
def test_device_id_may_not_take_a_service_username(clash: str) -> None:
    with pytest.raises(ConfigError, match="collides"):
        plan_credentials([], [clash], iter(["p"] * 5))


def test_credentials_csv_round_trips_and_rejects_unknown_roles() -> None:
    creds = [Credential("ingest", "ingest", 'a,b"c'), Credential("device", "BP-1", "p")]
    assert parse_credentials_csv(render_credentials_csv(creds), "x") == creds
    with pytest.raises(ConfigError, match="row 2"):
        parse_credentials_csv("role,username,password\nadmin,root,pw\n", "x")


def test_cli_reads_devices_from_the_registry(database_url: str, tmp_path: Path) -> None:
    engine = open_registry(database_url)
    with Session(engine) as session, session.begin():
        session.add_all(
            [
                Device(device_id="BP-000123", kind="bp_cuff"),
                Device(device_id="SC-000044", kind="scale"),
            ]
        )
    engine.dispose()
    out = tmp_path / "broker"
    result = CliRunner().invoke(
        app,
        ["--database-url", database_url, "--data-dir", str(tmp_path / "data"),
         "broker-config", "--out", str(out), "--port", "18999", "--run-as", ""],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    creds = credentials_by_user(out)
    assert set(creds) == {"ingest", "care-app", "BP-000123", "SC-000044"}
    assert "listener 18999 127.0.0.1" in (out / "mosquitto.conf").read_text()
    assert "topic write rpm/v1/devices/SC-000044/readings" in (out / "acl").read_text()
    for c in creds.values():
        assert c.password not in result.output


def test_cli_refuses_a_bad_port(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path / "data"), "broker-config", "--out", str(tmp_path / "b"),
         "--port", "70000"],
    )  # fmt: skip
    assert result.exit_code == 2  # a usage error, like every bad option
    assert "--port" in result.output

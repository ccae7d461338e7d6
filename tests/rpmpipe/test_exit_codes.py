"""One set of exit codes for every command: 0 done, 1 data error, 2 usage or settings,
3 done with lines held back, 4 a service unavailable. Every command is run here with a bad
flag, a bad date (where it takes one) and an unreachable database (where it uses one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpmpipe.app.cli import COMMANDS, app, load_command
from rpmpipe.errors import EXIT_UNAVAILABLE, EXIT_USAGE

# A PostgreSQL URL nobody listens on (port 1 refuses at once), with a password that must
# never be printed.
UNREACHABLE = "postgresql+psycopg://rpmpipe:s3cret-pw@127.0.0.1:1/registry"


def _leaves(command: object, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [path]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, (*path, name))]


def every_command() -> list[tuple[str, ...]]:
    return sorted(leaf for name in COMMANDS for leaf in _leaves(load_command(name), (name,)))


def _csv(tmp: Path) -> str:
    path = tmp / "rows.csv"
    path.write_text("device_id,kind,model\n")
    return str(path)


def _835(tmp: Path) -> str:
    path = tmp / "era.835"
    path.write_text("ISA*00*~")
    return str(path)


def _jsonl(tmp: Path) -> str:
    path = tmp / "readings.jsonl"
    path.write_text("")
    return str(path)


# command -> (arguments that make it run, the date option it takes or None, uses the registry)
SPECS: dict[tuple[str, ...], tuple[object, str | None, bool]] = {
    ("demo",): (
        lambda t: ["--out", str(t / "demo"), "--patients", "1", "--days", "31"],
        None,
        False,
    ),
    ("ingest",): (lambda t: [], None, True),
    ("import", "patients"): (lambda t: [_csv(t)], None, True),
    ("import", "devices"): (lambda t: [_csv(t)], None, True),
    ("import", "assignments"): (lambda t: [_csv(t)], None, True),
    ("import", "enrollments"): (lambda t: [_csv(t)], None, True),
    ("import", "activities"): (lambda t: [_csv(t)], None, True),
    ("import", "care-plans"): (lambda t: [_csv(t)], None, True),
    ("import", "readings"): (lambda t: [_jsonl(t)], None, True),
    ("quarantine", "list"): (lambda t: [], None, False),
    ("quarantine", "replay"): (lambda t: [], None, True),
    ("compact",): (lambda t: [], "--before", False),
    ("simulate",): (lambda t: ["--patients", "1", "--days", "1"], "--start", True),
    ("metrics",): (lambda t: [], "--as-of", True),
    ("export",): (lambda t: ["--as-of", "2026-01-31"], "--as-of", True),
    ("schedule",): (lambda t: ["--run-now"], None, True),
    ("report",): (lambda t: ["--out", str(t / "site")], "--as-of", True),
    ("broker-config",): (lambda t: ["--out", str(t / "broker")], None, True),
    ("db", "upgrade"): (lambda t: [], None, True),
    ("devices", "retire"): (lambda t: ["BP-1", "--on", "2026-01-31"], "--on", True),
    ("assignments", "end"): (lambda t: ["BP-1", "--on", "2026-01-31"], "--on", True),
    ("enrollments", "end"): (
        lambda t: ["P-1", "--program", "RPM", "--on", "2026-01-31"],
        "--on",
        True,
    ),
    ("patients", "show"): (lambda t: ["P-1"], None, True),
    ("activities", "void"): (lambda t: ["A-1", "--reason", "entered twice"], None, True),
    ("audit",): (lambda t: ["--as-of", "2026-01-31"], "--as-of", True),
    ("remit", "import"): (lambda t: [_835(t)], None, True),
    ("denials", "list"): (lambda t: [], None, True),
    ("appeal",): (lambda t: ["RP0000000001", "--out", str(t / "appeals")], None, True),
}


def _run(tmp: Path, *args: str) -> object:
    return CliRunner().invoke(
        app, ["--data-dir", str(tmp / "data"), *args], env={"RPMPIPE_CONFIG": ""}
    )


def _args(command: tuple[str, ...], tmp: Path) -> list[str]:
    make = SPECS[command][0]
    assert callable(make)
    return [*command, *make(tmp)]


def test_the_table_covers_every_command() -> None:
    assert every_command() == sorted(SPECS)


@pytest.mark.parametrize("command", sorted(SPECS), ids=" ".join)
def test_a_bad_flag_exits_2(command: tuple[str, ...], tmp_path: Path) -> None:
    result = _run(tmp_path, *_args(command, tmp_path), "--no-such-flag")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--no-such-flag" in result.output


@pytest.mark.parametrize("command", sorted(c for c, spec in SPECS.items() if spec[1]), ids=" ".join)
def test_a_bad_date_exits_2_naming_the_option(command: tuple[str, ...], tmp_path: Path) -> None:
    option = SPECS[command][1]
    args = _args(command, tmp_path)
    if option in args:  # replace the good date the spec gives
        args[args.index(option) + 1] = "31/01/2026"
    else:
        args += [option, "31/01/2026"]
    result = _run(tmp_path, *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"{option}: expected a date YYYY-MM-DD, got '31/01/2026'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", sorted(c for c, spec in SPECS.items() if spec[2]), ids=" ".join)
def test_an_unreachable_database_exits_4_with_one_line_naming_the_host(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    result = _run(tmp_path, "--database-url", UNREACHABLE, *_args(command, tmp_path))
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "registry database unavailable" in errors[0]
    assert "rpmpipe@127.0.0.1:1/registry" in errors[0]  # user and host, no password at all
    assert "s3cret-pw" not in result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )


def test_a_database_file_that_cannot_be_created_exits_4_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker / 'sub' / 'registry.db'}"
    result = _run(tmp_path, "--database-url", url, "db", "upgrade")
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert str(blocker / "sub") in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--as-of", "2026-01-31", "--skip-metrics", "--out", "{blocked}/exports"],
        ["import", "readings", "{jsonl}"],
        ["demo", "--out", "{blocked}/demo", "--patients", "1", "--days", "31"],
    ],
    ids=["export --out", "import readings data dir", "demo --out"],
)
def test_an_unwritable_directory_exits_4_naming_the_path(args: list[str], tmp_path: Path) -> None:
    # A regular file where a directory must go: refused even to root, unlike chmod.
    blocked = tmp_path / "plain-file"
    blocked.write_text("not a directory")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"device_id": "BP-1"}\n')
    filled = [a.format(blocked=blocked, jsonl=jsonl) for a in args]
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    data = blocked / "data" if args[0] == "import" else tmp_path / "data"
    result = CliRunner().invoke(
        app,
        ["--data-dir", str(data), "--database-url", db, *filled],
        env={"RPMPIPE_CONFIG": ""},
    )
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert str(blocked) in line
    assert "Traceback" not in result.output


def test_quarantine_list_with_an_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path, "quarantine", "list", "--format", "csv")
    assert result.exit_code == EXIT_USAGE
    assert "--format: expected table or json, got 'csv'" in result.stderr


def test_help_lists_the_exit_codes() -> None:
    text = " ".join(CliRunner().invoke(app, ["--help"]).output.split())
    for words in (
        "0 done",
        "1 data error",
        "2 usage or settings error",
        "3 done with lines held back",
        "4 a service unavailable",
    ):
        assert words in text

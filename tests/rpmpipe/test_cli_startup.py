"""Start-up: `rpmpipe --help` and `--version` import no heavy library; a command's module is
imported when it runs; the version is printed, logged at start-up and matches the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpmpipe import __version__
from rpmpipe.app.cli import COMMANDS, app, load_command

HEAVY = (
    "pandas",
    "pyarrow",
    "sqlalchemy",
    "alembic",
    "paho",
    "amqtt",
    "apscheduler",
    "cryptography",
)
PROBE = """
import sys
from rpmpipe.app.cli import main
sys.argv = ["rpmpipe", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
# The import kinds' column names (plain tuples) are the registry modules help may need.
light = {"rpmpipe.registry", "rpmpipe.registry.import_columns"}
models = [
    m for m in sys.modules
    if (m.startswith("rpmpipe.registry") and m not in light) or m.startswith("rpmpipe.ingest")
]
print("\\nPROBE", heavy, models)
"""


def _probe(*args: str) -> str:
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["export", "--help"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    out = _probe(*args)
    assert out.rstrip().endswith("PROBE [] []"), out[-400:]


@pytest.mark.parametrize(
    "args",
    [
        *([name, "--help"] for name in sorted(COMMANDS)),
        ["import", "patients", "--help"],
        ["db", "upgrade", "--help"],
    ],
    ids=" ".join,
)
def test_the_help_of_every_command_imports_no_heavy_library(args: list[str]) -> None:
    # A command's module is imported for its own --help; the libraries its work needs
    # (pandas, pyarrow, SQLAlchemy, paho, ...) only when it runs.
    out = _probe(*args)
    assert out.rstrip().endswith("PROBE [] []"), out[-400:]


def test_version_imports_not_even_the_command_line_framework() -> None:
    code = (
        "import sys\n"
        "from rpmpipe.app.cli import main\n"
        "sys.argv = ['rpmpipe', '--version']\n"
        "main()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rpmpipe {__version__}\n[]\n"


def test_version_is_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"rpmpipe {__version__}\n"
    assert version("rpmpipe") == __version__


def test_start_up_log_names_the_version_and_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "quarantine", "list"], env={"RPMPIPE_CONFIG": ""}
    )
    assert result.exit_code == 0, result.output
    first = json.loads(result.stderr.splitlines()[0])
    assert (first["event"], first["version"], first["command"]) == (
        "rpmpipe_started",
        __version__,
        "quarantine",
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_one_line_help_of_each_command_is_its_own(name: str) -> None:
    command = load_command(name)
    own = " ".join((command.help or "").split())
    assert own.startswith(COMMANDS[name].help.rstrip(".")), (name, own[:120])


def _run_main(code: str) -> str:
    """The standard output of ``code`` (a script calling rpmpipe's main) in a fresh process
    that reads no config file; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "RPMPIPE_CONFIG": ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_finished_command_leaves_its_objects_out_of_the_exit_collections(
    tmp_path: Path,
) -> None:
    # The interpreter's teardown collects what the run's libraries hold, several times over
    # (0.4-0.7 s after a metrics run): main() sets them aside first. Exit handlers still run.
    code = (
        "import atexit, gc, sys\n"
        "from rpmpipe.app.cli import main\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        f"sys.argv = ['rpmpipe', '--data-dir', {str(tmp_path)!r}, 'quarantine', 'list']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print('frozen', gc.get_freeze_count() > 10_000)\n"
    )
    out = _run_main(code)
    assert out.splitlines()[-3:] == ["exit 0", "frozen True", "exit handler ran"], out


def test_a_metrics_csv_run_imports_neither_the_orm_nor_the_models(tmp_path: Path) -> None:
    # The CSV run reads the registry through the driver: SQLAlchemy's ORM and the registry's
    # declarative models (about a fifth of a second) are not imported before its workers
    # fork, nor after; nor pydantic, which a command-line framework may bring to coerce the
    # options (another tenth).
    from rpmpipe.registry.db import open_registry

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    open_registry(url).dispose()  # migrated here: the run below finds it at the head
    (tmp_path / "readings").mkdir()
    code = (
        "import sys\n"
        "from rpmpipe.app.cli import main\n"
        f"sys.argv = ['rpmpipe', '--data-dir', {str(tmp_path)!r}, '--database-url', {url!r},\n"
        "            'metrics', '--format', 'csv', '--as-of', '2026-10-29']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "loaded = {'sqlalchemy.orm', 'rpmpipe.registry.models', 'pydantic', 'rpmpipe.metrics.job'}\n"
        "print('PROBE', sorted(loaded & set(sys.modules)))\n"
    )
    out = _run_main(code)
    assert out.splitlines()[-1] == "PROBE ['rpmpipe.metrics.job']", out

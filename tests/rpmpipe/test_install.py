"""A clean, small install: the base dependencies are what rpmpipe runs on, test-only tools are
in the dev extra, and the demo imports nothing it does not use."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_ONLY = {"pytest", "hypothesis", "duckdb", "pandas", "pypdf", "ruff", "mypy", "playwright"}
# Distribution name -> the module rpmpipe imports; None: loaded by another library.
IMPORT_NAME = {
    "paho-mqtt": "paho",
    "amqtt": "amqtt",
    "pyarrow": "pyarrow",
    "numpy": "numpy",
    "sqlalchemy": "sqlalchemy",
    "alembic": "alembic",
    "apscheduler": "apscheduler",
    "typer": "typer",
    "rich": "rich",
    "orjson": "orjson",
    "tzdata": None,  # zoneinfo's time zones where the system has none
    "psycopg": None,  # PostgreSQL driver, loaded by SQLAlchemy from the URL
    "cryptography": "cryptography",
    "pyx12": "pyx12",  # reads X12 835 remittances (and the tests validate 837s with it)
    "fpdf2": "fpdf",  # appeal packets as PDF
    "jinja2": "jinja2",  # the appeal letter template and the report's pages
    "altair": "altair",  # the report's chart specs
    "vl-convert-python": "vl_convert",  # the Vega scripts the report's pages draw with
}


def _names(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        name = req.split(";")[0]
        for mark in "<>=![ ":
            name = name.split(mark)[0]
        names.add(name.strip().lower())
    return names


def _project() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _imported_top_level() -> set[str]:
    found: set[str] = set()
    for folder in ("rpmpipe", "ingest", "metrics", "billing_export", "simulators"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


def test_test_only_tools_are_in_the_dev_extra_not_the_base_install() -> None:
    project = _project()
    base = _names(project["dependencies"])  # type: ignore[arg-type]
    dev = _names(project["optional-dependencies"]["dev"])  # type: ignore[index]
    assert base & TEST_ONLY == set()
    assert TEST_ONLY <= dev


def test_every_base_dependency_is_used_at_run_time() -> None:
    base = _names(_project()["dependencies"])  # type: ignore[arg-type]
    assert base == set(IMPORT_NAME), "update IMPORT_NAME with what the new dependency is for"
    imported = _imported_top_level()
    unused = [d for d, module in IMPORT_NAME.items() if module and module not in imported]
    assert unused == []


def test_every_library_the_code_imports_is_a_base_dependency() -> None:
    # A library that only arrives through a dev tool (numpy came with pandas) would make a
    # fresh `make demo` fail while the dev venv passes.
    declared = {module for module in IMPORT_NAME.values() if module}
    own = {"rpmpipe", "ingest", "metrics", "billing_export", "simulators"}
    undeclared = _imported_top_level() - set(sys.stdlib_module_names) - own - declared
    assert undeclared == set()


def test_the_demo_imports_no_test_only_library() -> None:
    code = (
        "import sys, rpmpipe.app.demo, rpmpipe.app.demo_report; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(TEST_ONLY)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"

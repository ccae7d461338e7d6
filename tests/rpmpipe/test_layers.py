"""The house rule: shared types and the registry at the bottom, the stages above them, the
application on top, and nothing importing upwards or sideways between stages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rpmpipe

ROOT = Path(rpmpipe.__file__).parent
STAGES = ("ingest", "metrics", "billing_export", "simulators")
REPO = ROOT.parent


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "rpmpipe":
        return "outside"
    if len(parts) > 1 and parts[1] == "app":
        return "app"
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    return "bottom"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ["rpmpipe", *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def _sources() -> list[Path]:
    # The stage folders are linked into the package; walk them through the links.
    found = [*ROOT.rglob("*.py"), *(p for stage in STAGES for p in (ROOT / stage).rglob("*.py"))]
    return sorted(p for p in found if "migrations" not in p.parts)


ALLOWED = {
    "bottom": {"bottom"},
    **{stage: {"bottom", stage} for stage in STAGES},
    "app": {"bottom", "app", *STAGES},
}


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_upwards_or_across_stages(path: Path) -> None:
    here = _layer(_module_name(path))
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module} ({_layer(module)})"
        for line, module, _ in _imports(path)
        if _layer(module) != "outside" and _layer(module) not in ALLOWED[here]
    ]
    assert wrong == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    me = _module_name(path)
    private = [
        f"{path.relative_to(ROOT)}:{line} takes {name} from {module}"
        for line, module, names in _imports(path)
        if module.startswith("rpmpipe") and module != me
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_the_stage_folders_are_never_imported_as_top_level_packages() -> None:
    paths = [
        *ROOT.rglob("*.py"),
        *(REPO / "tests").rglob("*.py"),
        *(REPO / "benchmarks").rglob("*.py"),
    ]
    top_level = [
        f"{path}:{line} imports {module}"
        for path in paths
        for line, module, _ in _imports(path)
        if module.split(".")[0] in STAGES
    ]
    assert top_level == []


# The application holds the whole settings; a stage receives its sections (BrokerSettings,
# RuleSettings, BillingSettings, StoreSettings) or its stage's view (IngestSettings,
# MetricsSettings, ExportSettings). Loading the settings is the application's too.
WHOLE_SETTINGS = {"Settings", "load_settings"}


def _takes_the_whole_settings(source: str, name: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.ImportFrom) and node.module == "rpmpipe.settings":
            found.extend(
                f"{name}:{node.lineno} imports {a.name}"
                for a in node.names
                if a.name in WHOLE_SETTINGS or a.name == "*"
            )
        elif isinstance(node, ast.ImportFrom) and node.module == "rpmpipe":
            found.extend(
                f"{name}:{node.lineno} imports the module settings"
                for a in node.names
                if a.name == "settings"
            )
        elif isinstance(node, ast.Import):
            found.extend(
                f"{name}:{node.lineno} imports the module {a.name}"
                for a in node.names
                if a.name == "rpmpipe.settings"
            )
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in _sources() if _layer(_module_name(p)) in STAGES],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_a_stage_receives_its_settings_sections_not_the_whole_settings(path: Path) -> None:
    assert _takes_the_whole_settings(path.read_text(), str(path.relative_to(ROOT))) == []


def test_the_settings_check_sees_every_way_of_importing_the_whole_settings() -> None:
    # The walk above would pass vacuously if it recognised no import at all.
    source = (
        "from rpmpipe.settings import RuleSettings, Settings\n"
        "import rpmpipe.settings\n"
        "from rpmpipe import settings\n"
        "from rpmpipe.settings import load_settings as load\n"
    )
    assert _takes_the_whole_settings(source, "probe.py") == [
        "probe.py:1 imports Settings",
        "probe.py:2 imports the module rpmpipe.settings",
        "probe.py:3 imports the module settings",
        "probe.py:4 imports load_settings",
    ]


# The engine's rules are read as short steps: a function of metrics/ that grows past this
# is split where its steps are, not left for the next reader to untangle.
LONGEST_METRICS_FUNCTION = 80


@pytest.mark.parametrize(
    "path",
    [p for p in _sources() if _layer(_module_name(p)) == "metrics"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_function_of_metrics_is_longer_than_80_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {length} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1)
        > LONGEST_METRICS_FUNCTION
    ]
    assert long == []

"""Human output for humans: on a terminal, logs are short text lines; elsewhere (or with
log_format = "json") one JSON object per line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from terminal import run_on_a_terminal

from rpmpipe.logs import configure_logging, get_logger, resolve_format


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", _Terminal()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", _Terminal()) == "json"
    assert resolve_format("text", io.StringIO()) == "text"


def test_text_lines_are_short_and_keep_the_phi_guard() -> None:
    out = _Terminal()
    configure_logging("INFO", "auto", stream=out)
    get_logger("rpmpipe.test").warning("export_lines_held", lines=2, last_name="Secretname")
    (line,) = out.getvalue().splitlines()
    clock, level, event, fields = line.split(" ", 3)
    assert (len(clock), level, event, fields) == (8, "warning", "export_lines_held", "lines=2")
    assert "{" not in line and "Secretname" not in line


def test_a_command_on_a_terminal_logs_text_and_json_when_asked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_")}
    env["RPMPIPE_DATA_DIR"] = str(tmp_path)
    shown, _ = run_on_a_terminal("quarantine", "list", env=env)
    assert " info    rpmpipe_started version=" in shown
    assert '"event"' not in shown
    shown_json, _ = run_on_a_terminal(
        "quarantine", "list", env={**env, "RPMPIPE_LOG_FORMAT": "json"}
    )
    first = json.loads(shown_json.splitlines()[0])
    assert first["event"] == "rpmpipe_started"


def _devices_csv(path: Path, n: int) -> Path:
    lines = ["device_id,kind,model", *(f"BP-{i:05d},bp_cuff,X" for i in range(n))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_long_import_shows_a_progress_bar_on_a_terminal_and_nothing_elsewhere(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_")}
    env["RPMPIPE_DATA_DIR"] = str(tmp_path / "data")
    env["RPMPIPE_LOG_LEVEL"] = "WARNING"
    csv_file = _devices_csv(tmp_path / "devices.csv", 5000)
    shown, _ = run_on_a_terminal("import", "devices", str(csv_file), env=env)
    assert "checking devices" in shown

    piped = subprocess.run(
        [sys.executable, "-m", "rpmpipe.app.cli", "import", "devices", str(csv_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""  # no bar, no escape codes, and no log line at WARNING
    assert "devices: 5000 rows" in piped.stdout

"""Running ``rpmpipe`` as a person at a terminal sees it: stderr on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import threading

_MAIN = (
    "import sys; from rpmpipe.app.cli import main; sys.argv = ['rpmpipe', *sys.argv[1:]]; main()"
)


def run_on_a_terminal(*args: str, env: dict[str, str]) -> tuple[str, str]:
    """Run ``rpmpipe ARGS`` with stderr on a pseudo-terminal and stdout on a pipe; return
    what the terminal showed and what went to stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    assert proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=60)
    reader.join(timeout=60)
    os.close(master)
    return shown.decode(errors="replace"), b"".join(out).decode()


def run_piped(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``rpmpipe ARGS`` with stdout and stderr on pipes (a log collector, a cron job)."""
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any RPMPIPE_ setting of the machine, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_")}
    env.update(extra)
    return env


def plain(shown: str) -> str:
    """What the terminal showed without its colour and cursor codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)

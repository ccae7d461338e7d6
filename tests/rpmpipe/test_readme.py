"""The README's settings file is the real one: it loads and equals the built-in defaults."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from rpmpipe.settings import Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_block_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"A complete file.*?```toml\n(.*?)```", text, re.S)
    assert block is not None, "README lost its settings block"
    path = tmp_path / "rpmpipe.toml"
    path.write_text(block.group(1), encoding="utf-8")
    assert load_settings(path, env={}) == load_settings(None, env={})
    # ...and it is complete: every setting the code knows is shown.
    shown = tomllib.loads(block.group(1))
    for f in dataclasses.fields(Settings):
        assert f.name in shown, f"README settings block lacks '{f.name}'"
        section = getattr(Settings(), f.name)
        if dataclasses.is_dataclass(section):
            for sub in dataclasses.fields(section):
                assert sub.name in shown[f.name], (
                    f"README settings block lacks '{f.name}.{sub.name}'"
                )


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text(encoding="utf-8").split("##", 1)[0]
    assert head.index("make demo") < head.index("make test")

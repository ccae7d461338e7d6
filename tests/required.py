"""What a test needs from the machine (a broker, a database, a browser, a program).

Missing, it is skipped on a bare machine and fails under ``RPMPIPE_REQUIRE_SERVICES=1`` (CI,
which installs everything). A module of its own so that test files anywhere import it by
one unambiguous name, as ``service_settings``.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_SERVICES = os.environ.get("RPMPIPE_REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> NoReturn:
    """Skip the test because ``what`` (why it cannot run) holds; fail it under CI."""
    if REQUIRE_SERVICES:
        pytest.fail(f"RPMPIPE_REQUIRE_SERVICES=1 but {what}")
    pytest.skip(what)

"""Fixtures for metrics tests."""

from __future__ import annotations

import pytest
from engagement_world import World


@pytest.fixture
def world() -> World:
    return World()

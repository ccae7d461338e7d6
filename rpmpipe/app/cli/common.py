"""What every command module shares: the settings built by the global options, and failing."""

from __future__ import annotations

import typer

from rpmpipe.settings import Settings


def settings_of(ctx: typer.Context) -> Settings:
    """The settings built by the global options (commands call this first)."""
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)

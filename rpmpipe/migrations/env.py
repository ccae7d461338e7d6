"""Alembic environment: runs on the connection rpmpipe hands it (see registry.db.upgrade)."""

from __future__ import annotations

from alembic import context

from rpmpipe.registry.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - rpmpipe always passes a connection
    raise RuntimeError("run migrations through rpmpipe (rpmpipe db upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic's entry point. Migrations run only through `bridge.store.Database.upgrade()`, which hands over a
connection already set up for the backend (SQLite pragmas, PostgreSQL search_path), so no alembic.ini exists."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bridge.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations with `presence-bridge db upgrade` (bridge.store.Database.upgrade())")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most things: later migrations rebuild the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

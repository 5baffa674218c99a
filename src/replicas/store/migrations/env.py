"""Alembic environment: runs on the connection handed in by `store.db.migrate`, or on a URL for
`alembic revision --autogenerate` during development (REPLICAS_DATABASE_URL, sync driver)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from replicas.store.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = os.environ.get("REPLICAS_MIGRATION_URL", "sqlite:///./.replicas/dev.db")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()

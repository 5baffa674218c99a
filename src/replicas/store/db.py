"""The async engine, sessions, and schema migration at start-up."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from replicas import json_bytes

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same for every `replicas serve` sharing one database.
_MIGRATION_LOCK_ID = 0x5265706C


def make_engine(url: str) -> AsyncEngine:
    """Create the engine; SQLite gets WAL, a busy timeout and enforced foreign keys. JSON columns are read with
    orjson (json_bytes.py), and written as before."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, json_deserializer=json_bytes.loads)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # No pre-ping: on asyncpg it costs three round trips (BEGIN, a ping, ROLLBACK) at every checkout, that is on
    # every request. A connection found dead on use fails that one statement and invalidates the whole pool, so
    # a PostgreSQL restart costs the requests in flight at that moment, and the next ones connect afresh.
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_recycle=3600,
                               json_deserializer=json_bytes.loads)


_READ_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def read_sessions(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads on the hot paths, on the same pool: on PostgreSQL each statement runs in autocommit, so
    a read costs its one round trip (no BEGIN before it and no ROLLBACK when the session closes). Two reads in
    one such session do not share a snapshot: use it where that does not matter. Never write through it."""
    found = _READ_SESSIONS.get(sessions)
    if found is None:
        engine = sessions.kw["bind"]
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        found = _READ_SESSIONS[sessions] = async_sessionmaker(engine, expire_on_commit=False)
    return found


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Apply Alembic migrations. On PostgreSQL an advisory lock serialises concurrent servers."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        await connection.run_sync(_upgrade)


@asynccontextmanager
async def session_scope(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that commits on success and rolls back on error."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise

"""Notifications go with the commit, all in one statement (store/notify_on_commit.py), on a real PostgreSQL with
a real listener: what a transaction queued arrives once it commits, once per (channel, payload); nothing arrives
for a transaction rolled back, or for a session closed without committing."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy import event, text

from replicas.events.notify import asyncpg_dsn
from replicas.settings import Settings
from replicas.store.db import make_engine, make_sessionmaker
from replicas.store.notify_on_commit import notify_on_commit


async def test_notifications_go_with_the_commit_in_one_statement(postgres_url):
    channel = f"test_{uuid.uuid4().hex[:12]}"
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(postgres_url))
    await listener.add_listener(channel, lambda *args: received.put_nowait(args[3]))
    engine = make_engine(Settings(database_url=postgres_url).resolved_database_url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
            notify_on_commit(session, channel, "a")
            notify_on_commit(session, channel, "b")
            notify_on_commit(session, channel, "a")  # once, as PostgreSQL does within a transaction
            await asyncio.sleep(0.3)
            assert received.empty()  # nothing before the commit
            statements.clear()
            await session.commit()
        assert [s for s in statements if "pg_notify" in s] == ["SELECT pg_notify($1, $2), pg_notify($3, $4)"]
        assert sorted([await asyncio.wait_for(received.get(), 5) for _ in range(2)]) == ["a", "b"]

        async with sessions() as session:  # rolled back: nothing
            await session.execute(text("SELECT 1"))
            notify_on_commit(session, channel, "rolled back")
            await session.rollback()
            await session.commit()
        async with sessions() as session:  # closed without a commit: nothing, even if the session is used again
            await session.execute(text("SELECT 1"))
            notify_on_commit(session, channel, "closed")
            await session.close()
            await session.execute(text("SELECT 1"))
            notify_on_commit(session, channel, "after")
            await session.commit()
        assert await asyncio.wait_for(received.get(), 5) == "after"
        await asyncio.sleep(0.3)
        assert received.empty()
    finally:
        await listener.close()
        await engine.dispose()

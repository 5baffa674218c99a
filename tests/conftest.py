"""Fixtures that start real things: the app on SQLite or PostgreSQL, organizations, git repositories."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from replicas.api.app import create_app
from replicas.services import auth
from replicas.settings import Settings

PG_ADMIN_URL = os.environ.get("REPLICAS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin_dsn() -> str:
    return PG_ADMIN_URL


async def _pg_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"replicas_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_execute(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - report why, never skip silently
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required for the PostgreSQL tests: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'replicas.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    # No cron scheduling in test apps: the PostgreSQL database is shared by the session, and another
    # test's automation must not fire here (the scheduler's tests run it on purpose).
    # Nor pool filling, for the same reason (tests/replicas/test_warm_pools_fill.py turns it on), nor the
    # take-over of boots another process left (tests/replicas/test_boot_takeover.py turns it on).
    return Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key=None, cron_enabled=False,
                    pool_enabled=False, boot_takeover_enabled=False)


@pytest.fixture
async def app(settings):
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


class Org:
    """An organization with an org API key and a client that sends it."""

    def __init__(self, app, name: str, key: str, client: httpx.AsyncClient):
        self.app, self.name, self.key, self.client = app, name, key, client

    async def add_user(self, email: str, role: str = "member") -> httpx.AsyncClient:
        """Create a member with a personal API key; return a client authenticated as them."""
        from replicas.crypto import hash_api_key, new_api_key
        from replicas.store.models import ApiKey

        async with self.app.state.sessions() as session:
            org = await auth.get_or_create_organization(session, self.name)
            user = await auth.create_user(session, org, email, role=role)
            key = new_api_key()
            session.add(ApiKey(organization_id=org.id, user_id=user.id, name="test",
                               key_hash=hash_api_key(key), key_prefix=key[:16]))
            await session.commit()
        return _client(self.app, key)


def _client(app, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replicas.test",
                             headers=headers)


@pytest.fixture
async def make_org(app) -> AsyncIterator:
    """Factory: `await make_org()` creates a new organization with its own org key."""
    clients: list[httpx.AsyncClient] = []

    async def factory(name: str | None = None) -> Org:
        name = name or f"org-{uuid.uuid4().hex[:8]}"
        async with app.state.sessions() as session:
            org = await auth.get_or_create_organization(session, name)
            key = await auth.create_org_key(session, org, name="test")
            await session.commit()
        client = _client(app, key)
        clients.append(client)
        return Org(app, name, key, client)

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def org(make_org) -> Org:
    return await make_org()


@pytest.fixture
async def client(org) -> httpx.AsyncClient:
    """A client authenticated with a fresh organization's org key."""
    return org.client


@pytest.fixture
async def anonymous(app) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, None) as c:
        yield c


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def make_git_repo(tmp_path):
    """Factory: a real git repository with `files` committed on `branch`; returns its path."""

    def factory(name: str = "repo", files: dict[str, str] | None = None, branch: str = "main") -> Path:
        path = tmp_path / "git" / name
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", branch)
        for rel, content in (files or {"README.md": f"# {name}\n"}).items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
        return path

    return factory

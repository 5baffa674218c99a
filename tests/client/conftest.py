"""The SDK's tests run against a real server on a loopback port (tests/live_server.py), one per module and
database: SQLite and PostgreSQL. Each test gets a client of a new organization, so tests share nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replicas.client import Replicas
from replicas.settings import Settings
from tests.live_server import LiveServer


def live_settings(request, tmp_path_factory, **values) -> Settings:
    """Settings for a module's server on the database of `request.param` ("sqlite" or "postgresql")."""
    root = tmp_path_factory.mktemp("server")
    if request.param == "sqlite":
        database_url = f"sqlite:///{root / 'replicas.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    return Settings(data_dir=root / "data", database_url=database_url, secret_key=None, cron_enabled=False,
                    pool_enabled=False, **values)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory) -> Iterator[LiveServer]:
    with LiveServer(live_settings(request, tmp_path_factory)) as live:
        yield live


@pytest.fixture
def sdk(server) -> Iterator[Replicas]:
    """A client with a new organization's API key."""
    with Replicas(server.url, api_key=server.new_org_key()) as client:
        yield client

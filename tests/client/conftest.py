"""The SDK's tests run against a real server on a loopback port (tests/live_server.py), one per module and
database: SQLite and PostgreSQL. Each test gets a client of a new organization, so tests share nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from replicas.client import Replicas
from tests.live_server import LiveServer, live_settings


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory) -> Iterator[LiveServer]:
    with LiveServer(live_settings(request, tmp_path_factory)) as live:
        yield live


@pytest.fixture
def sdk(server) -> Iterator[Replicas]:
    """A client with a new organization's API key."""
    with Replicas(server.url, api_key=server.new_org_key()) as client:
        yield client

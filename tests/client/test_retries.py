"""Retries on a real 429: a server that admits one awake workspace answers a second create with
`429 At capacity` and `Retry-After: 1`. The SDK waits as told and tries again (and succeeds once a workspace
went to sleep meanwhile); out of retries it raises RateLimitError, and the CLI says so in words."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from replicas.client import RateLimitError, Replicas, RetryPolicy
from replicas.testing import Text
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.cli.client_cli import Cli
from tests.conftest import PG_ADMIN_URL, _pg_execute, git
from tests.live_server import LiveServer, destroy_workspaces, replica_settings, settle, shop_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, agent_tools) -> Iterator[LiveServer]:  # noqa: F811
    settings = replica_settings(request, tmp_path_factory, agent_tools, max_active_workspaces=1,
                                capacity_retry_after_seconds=1)
    own = None
    if request.param == "postgresql":
        # Capacity counts every awake workspace of the database: this server gets one of its own, or another
        # test's workspaces on the session's database would count against its limit of one.
        own = f"replicas_retries_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_execute(f'CREATE DATABASE "{own}"'))
        settings = settings.model_copy(update={"database_url": f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{own}"})
    try:
        with LiveServer(settings) as live:
            yield live
            destroy_workspaces(live)
    finally:
        if own:
            asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)'))


def test_429_is_retried_after_retry_after_then_reported(server, tmp_path, model):  # noqa: F811
    origin = tmp_path / "shop"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README.md").write_text("# shop\n")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "initial")
    key = server.new_org_key()
    env_id = shop_environment(server, key, origin, model)["id"]
    with Replicas(server.url, api_key=key) as client:
        model.add_turn(Text("Awake."))
        first = client.replicas.create(name="first", message="Wake up", environment_id=env_id)
        settle(client, first.id, 1)

        with Replicas(server.url, api_key=key, retry=RetryPolicy(max_retries=0)) as impatient:
            with pytest.raises(RateLimitError) as refused:
                impatient.replicas.create(name="second", message="Hi", environment_id=env_id)
        assert refused.value.status == 429 and refused.value.retry_after == 1.0
        assert refused.value.error == "At capacity: too many active workspaces"

        cli = Cli(server.url, tmp_path / "config", api_key=key)
        started = time.monotonic()
        told = cli.fails(1, "create", "second", "-m", "Hi", "-e", "shop")
        assert time.monotonic() - started >= 3  # three retries, a second apart, before giving up
        assert "Rate limited: At capacity: too many active workspaces" in told.stderr
        assert "(retry in 1 s)" in told.stderr

        # Capacity frees up while the SDK waits: its retry gets through.
        model.add_turn(Text("Second one."))
        sleeper = threading.Timer(1.5, client.replicas.sleep, args=(first.id,))
        sleeper.start()
        started = time.monotonic()
        # Patient: a sleep can take a few seconds on a loaded machine (the engine stops with a grace period).
        with Replicas(server.url, api_key=key, retry=RetryPolicy(max_retries=20)) as patient:
            second = patient.replicas.create(name="second", message="Hi", environment_id=env_id)
        sleeper.join()
        assert second.status == "preparing" and time.monotonic() - started >= 1.5
        settle(client, second.id, 1)
    assert model.exhausted == []

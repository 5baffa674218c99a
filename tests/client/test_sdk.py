"""The SDK against a live server, for everything that needs no workspace: errors, repositories, environments
and what hangs under them (variables, files, MCP servers, skills, hooks, the pool), automations with paging, the
profile, and the async client."""

from __future__ import annotations

import asyncio
import socket

import pytest

from replicas.client import (
    APIConnectionError,
    AsyncReplicas,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    Credentials,
    NotFoundError,
    PermissionDeniedError,
    Replicas,
    ReplicasError,
    RetryPolicy,
)


def test_errors_carry_the_status_and_the_contracts_body(server, sdk):
    with pytest.raises(AuthenticationError) as bad_key:
        Replicas(server.url, api_key="sk_replicas_" + "x" * 32).replicas.list()
    assert bad_key.value.status == 401 and bad_key.value.error == "Invalid token"
    with pytest.raises(AuthenticationError):
        Replicas(credentials=Credentials(server.url)).environments.list()

    with pytest.raises(NotFoundError) as missing:
        sdk.replicas.get("00000000-0000-4000-8000-000000000000")
    assert missing.value.status == 404 and missing.value.error == "Workspace not found"

    with pytest.raises(BadRequestError) as invalid:
        sdk.replicas.create(name="has spaces", message="hi", environment_id="global")
    assert invalid.value.status == 400 and "name" in (invalid.value.details or "")

    sdk.environments.create(name="twice")
    with pytest.raises(ConflictError) as taken:
        sdk.environments.create(name="twice")
    assert taken.value.error == "An environment with this name already exists"

    with pytest.raises(PermissionDeniedError) as personal:
        sdk.automations.create(name="mine", prompt="p", environment_id="global", scope="user",
                               triggers=[{"type": "custom", "config": {}}])
    assert personal.value.status == 403
    assert all(isinstance(exc.value, ReplicasError) for exc in (bad_key, missing, invalid, taken, personal))


def test_no_server_is_a_connection_error_naming_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(APIConnectionError) as failed:
        Replicas(url, api_key="k", retry=RetryPolicy(max_retries=0)).replicas.list()
    assert failed.value.status is None and url in failed.value.error


def test_repositories_and_repository_sets(sdk, make_git_repo):
    origin = make_git_repo("shop", branch="trunk")
    repo = sdk.repositories.create(name="acme/shop", url=str(origin))
    assert repo.name == "acme/shop" and repo.default_branch == "trunk"
    assert [r.id for r in sdk.repositories.list()] == [repo.id]
    assert sdk.repositories.find("acme/shop").id == repo.id and sdk.repositories.find(repo.id).id == repo.id
    with pytest.raises(NotFoundError):
        sdk.repositories.find("acme/none")

    repo_set = sdk.repository_sets.create(name="all", repository_ids=[repo.id], description="every repo")
    assert [r.name for r in repo_set.repositories] == ["acme/shop"]
    assert sdk.repository_sets.list()[0].to_json() == repo_set.to_json()
    assert sdk.repository_sets.delete(repo_set.id) is True
    assert sdk.repositories.delete(repo.id) is True
    assert sdk.repositories.list() == []


def test_environments_variables_and_files(sdk):
    environment = sdk.environments.create(name="shop", description="the shop")
    assert sdk.environments.get(environment.id).name == "shop"
    assert sdk.environments.find("shop").id == environment.id
    assert sdk.environments.find("global").is_global
    assert [e.name for e in sdk.environments.list()] == ["Global", "shop"]
    updated = sdk.environments.update(environment.id, system_prompt="Be brief.")
    assert updated.system_prompt == "Be brief." and updated.description == "the shop"

    created = sdk.environments.variables.set(environment.id, "API_URL", "http://one")
    changed = sdk.environments.variables.set(environment.id, "API_URL", "http://two")
    assert changed.id == created.id and changed.value == "http://two"
    assert sdk.environments.variables.find(environment.id, "API_URL").id == created.id
    assert [v.key for v in sdk.environments.variables.list(environment.id)] == ["API_URL"]
    sdk.environments.variables.delete(environment.id, created.id)
    assert sdk.environments.variables.list(environment.id) == []

    file = sdk.environments.files.set(environment.id, "~/.config/app.toml", "a = 1\n")
    assert file.name == "app.toml"
    again = sdk.environments.files.set(environment.id, "~/.config/app.toml", "a = 2\n")
    assert again.id == file.id and again.content == "a = 2\n"
    assert sdk.environments.files.find(environment.id, "~/.config/app.toml").id == file.id
    sdk.environments.files.delete(environment.id, file.id)
    assert sdk.environments.files.list(environment.id) == []

    assert sdk.environments.delete(environment.id) is True
    with pytest.raises(NotFoundError):
        sdk.environments.find("shop")
    with pytest.raises(ConflictError):
        sdk.environments.delete("global")


def test_mcp_servers_and_skills(sdk):
    env = sdk.environments.create(name="tools")
    stdio = sdk.environments.mcps.set(env.id, "linear", "stdio", {"command": "npx", "args": ["-y", "@linear/mcp"],
                                                                   "env": {}})
    assert (stdio.name, stdio.transport, stdio.config["args"]) == ("linear", "stdio", ["-y", "@linear/mcp"])
    moved = sdk.environments.mcps.set(env.id, "linear", "http", {"url": "https://mcp.linear.app/mcp"})
    assert moved.id == stdio.id and moved.config == {"url": "https://mcp.linear.app/mcp", "headers": {}}
    assert [m.name for m in sdk.environments.mcps.list(env.id)] == ["linear"]
    assert sdk.environments.mcps.find(env.id, "LINEAR").id == stdio.id
    with pytest.raises(BadRequestError) as refused:
        sdk.environments.mcps.create(env.id, name="replicas-mine", transport="http", config={"url": "https://x"})
    assert refused.value.status == 400
    assert sdk.environments.mcps.delete(env.id, stdio.id) is True
    assert sdk.environments.mcps.list(env.id) == []

    hits = sdk.environments.skills.search("docker")
    assert hits[0].slug == "docker" and hits[0].installs > 0
    added = sdk.environments.skills.add(env.id, "docker")
    assert (added.slug, added.source) == ("docker", hits[0].source)
    with pytest.raises(ConflictError):
        sdk.environments.skills.enable(env.id, name="docker", slug="docker", source=hits[0].source)
    assert [s.slug for s in sdk.environments.skills.list(env.id)] == ["docker"]
    assert sdk.environments.skills.delete(env.id, sdk.environments.skills.find(env.id, "docker").id) is True
    with pytest.raises(NotFoundError):
        sdk.environments.skills.add(env.id, "no-such-skill-x")


def test_warm_hook_save_test_and_stream(sdk):
    environment = sdk.environments.create(name="warm")
    assert sdk.environments.warm_hook.get(environment.id).warm_hook is None
    saved = sdk.environments.warm_hook.save(environment.id, "#!/bin/bash\necho warming\n")
    assert saved.version == 1 and saved.is_active
    state = sdk.environments.warm_hook.get(environment.id)
    assert state.warm_hook.content == "#!/bin/bash\necho warming\n"

    result = sdk.environments.warm_hook.test(environment.id, "echo out; echo err >&2; exit 3")
    assert result.exit_code == 3 and "out" in result.output and "err" in result.output

    events = list(sdk.environments.warm_hook.test_stream(environment.id, "echo one; sleep 0.2; echo two"))
    assert events[-1].type == "complete" and events[-1].exit_code == 0 and events[-1].timed_out is False
    output = "".join(e.output or "" for e in events if e.type == "output")
    assert "one" in output and "two" in output
    assert sdk.environments.warm_hook.get(environment.id).warm_hook.version == 1  # test only: not saved


def test_warm_pool_get_and_put(sdk):
    environment = sdk.environments.create(name="pooled")
    assert sdk.environments.warm_pool.get(environment.id) is None
    pool = sdk.environments.warm_pool.put(environment.id, enabled=True, target_size=2)
    assert pool.enabled and pool.target_size == 2
    assert sdk.environments.warm_pool.get(environment.id).target_size == 2
    assert sdk.environments.warm_pool.put(environment.id, enabled=False).enabled is False


def test_automations_page_by_page(sdk):
    ids = [sdk.automations.create(name=f"nightly-{n}", prompt="Update the dependencies", environment_id="global",
                                  triggers=[{"type": "cron", "config": {"schedule": "0 3 * * *"}}]).id
           for n in range(3)]
    first = sdk.automations.list(limit=2)
    assert first.total == 3 and first.total_pages == 2 and first.has_next and len(first.items) == 2
    assert set(first.to_json()) == {"automations", "total", "page", "limit", "totalPages"}
    assert sorted(a.id for a in sdk.automations.iterate(limit=2)) == sorted(ids)
    automation = sdk.automations.get(ids[0])
    assert automation.cron_expression == "0 3 * * *" and automation.enabled
    assert sdk.automations.update(ids[0], enabled=False).enabled is False
    assert list(sdk.automations.iterate_executions(ids[0])) == []
    for automation_id in ids:
        sdk.automations.delete(automation_id)
    assert sdk.automations.list().total == 0
    with pytest.raises(NotFoundError):
        sdk.automations.get(ids[0])


def test_profile_of_a_personal_key(server, sdk):
    with Replicas(server.url, api_key=server.new_user_key("ada@example.com")) as ada:
        profile = ada.user.profile()
        assert profile.email == "ada@example.com"
        renamed = ada.user.update_profile(displayName="Ada L.", avatarUrl=None)
        assert renamed.displayName == "Ada L." and ada.user.profile().displayName == "Ada L."
    with pytest.raises(NotFoundError):
        sdk.user.profile()


def test_any_endpoint_through_request(sdk):
    body = sdk.request("GET", "/v1/replica/repositories")
    assert body == {"repositories": []}
    with pytest.raises(NotFoundError):
        sdk.request("GET", "/v1/no-such-thing")


def test_credentials_from_the_environment():
    keyed = Credentials.from_env({"REPLICAS_API_URL": "http://h:1", "REPLICAS_API_KEY": "sk_replicas_k",
                                  "REPLICAS_ENGINE_SECRET": "s", "WORKSPACE_ID": "w"})
    assert keyed.headers() == {"Authorization": "Bearer sk_replicas_k"} and not keyed.agent_mode
    agent = Credentials.from_env({"REPLICAS_API_URL": "http://h:1", "REPLICAS_ENGINE_SECRET": "s",
                                  "WORKSPACE_ID": "w"})
    assert agent.agent_mode and agent.headers() == {"Authorization": "Bearer s", "X-Workspace-Id": "w"}
    stored = Credentials.from_env({}, base_url="http://stored", api_key="sk_replicas_stored")
    assert stored.base_url == "http://stored" and stored.api_key == "sk_replicas_stored"
    assert Credentials.from_env({"REPLICAS_API_URL": "http://env"}, base_url="http://stored").base_url == \
        "http://env"


def test_the_async_client(server):
    key = server.new_org_key()

    async def scenario():
        async with AsyncReplicas(server.url, api_key=key) as client:
            environment = await client.environments.create(name="async")
            await client.environments.variables.set(environment.id, "K", "v")
            assert [v.value for v in await client.environments.variables.list(environment.id)] == ["v"]
            assert (await client.environments.find("async")).id == environment.id
            for n in range(3):
                await client.automations.create(name=f"a{n}", prompt="p", environment_id=environment.id,
                                                triggers=[{"type": "custom", "config": {}}])
            names = [a.name async for a in client.automations.iterate(limit=2)]
            assert sorted(names) == ["a0", "a1", "a2"]
            events = [e async for e in client.environments.warm_hook.test_stream(environment.id, "echo hi")]
            assert events[-1].type == "complete" and events[-1].exit_code == 0
            with pytest.raises(NotFoundError):
                await client.replicas.get("00000000-0000-4000-8000-000000000000")

    asyncio.run(scenario())

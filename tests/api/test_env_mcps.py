"""Environment MCPs: quick-start calls, name rules, per-transport config shapes, transport changes,
encryption at rest, scoping and audit redaction."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from replicas.store.models import AuditEvent, EnvironmentMcp
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
MCPS = "/v1/environments/{environmentId}/mcps"
MCP = "/v1/environments/{environmentId}/mcps/{id}"
LINEAR = {"name": "linear", "transport": "stdio",
          "config": {"command": "npx", "args": ["-y", "@linear/mcp"], "env": {"LINEAR_API_KEY": "..."}}}
INTERNAL = {"name": "internal-tools", "transport": "http",
            "config": {"url": "https://mcp.example.com", "headers": {"Authorization": "Bearer ..."}}}


async def _team_env(client, name: str = "staging") -> str:
    return (await client.post(ENVS, json={"name": name})).json()["environment"]["id"]


async def _create(client, ref: str, body: dict) -> dict:
    response = await client.post(f"{ENVS}/{ref}/mcps", json=body)
    assert response.status_code == 201, response.text
    return assert_contract(response, MCPS)["environment_mcp"]


@pytest.mark.parametrize("kind", ["global", "uuid"])
async def test_quick_start_mcp_calls_work_on_global_and_uuid_environments(client, kind):
    ref = "global" if kind == "global" else await _team_env(client)
    linear = await _create(client, ref, LINEAR)
    internal = await _create(client, ref, INTERNAL)
    assert {k: linear[k] for k in LINEAR} == LINEAR and {k: internal[k] for k in INTERNAL} == INTERNAL

    listed = await client.get(f"{ENVS}/{ref}/mcps")
    assert assert_contract(listed, MCPS)["environment_mcps"] == [linear, internal]

    patched = await client.patch(f"{ENVS}/{ref}/mcps/{internal['id']}", json={"transport": "sse", "config": {
        "url": "https://mcp.example.com/sse", "headers": {"Authorization": "Bearer new"}}})
    assert patched.status_code == 200
    updated = assert_contract(patched, MCP)["environment_mcp"]
    assert updated["transport"] == "sse" and updated["config"]["url"] == "https://mcp.example.com/sse"

    deleted = await client.delete(f"{ENVS}/{ref}/mcps/{linear['id']}")
    assert assert_contract(deleted, MCP) == {"success": True}
    assert [m["name"] for m in (await client.get(f"{ENVS}/{ref}/mcps")).json()["environment_mcps"]] == [
        "internal-tools"]


async def test_omitted_args_env_and_headers_are_stored_and_returned_empty(client):
    stdio = await _create(client, "global",
                          {"name": "local", "transport": "stdio", "config": {"command": "srv"}})
    assert stdio["config"] == {"command": "srv", "args": [], "env": {}}
    http = await _create(client, "global", {"name": "remote", "transport": "http",
                                            "config": {"url": "http://127.0.0.1:9000/mcp", "extra": 1}})
    assert http["config"] == {"url": "http://127.0.0.1:9000/mcp", "headers": {}}
    listed = assert_contract(await client.get(f"{ENVS}/global/mcps"), MCPS)["environment_mcps"]
    assert [m["config"] for m in listed] == [stdio["config"], http["config"]]


async def test_config_with_its_tokens_is_encrypted_at_rest(client, app):
    env_token, header_token = f"lin_{uuid.uuid4().hex}", f"Bearer {uuid.uuid4().hex}"
    stdio_config = {**LINEAR["config"], "env": {"LINEAR_API_KEY": env_token}}
    http_config = {"url": "https://mcp.example.com", "headers": {"Authorization": header_token}}
    stdio = await _create(client, "global", {**LINEAR, "config": stdio_config})
    http = await _create(client, "global", {**INTERNAL, "config": http_config})
    async with app.state.sessions() as session:
        rows = (await session.execute(select(EnvironmentMcp.__table__).where(
            EnvironmentMcp.id.in_([uuid.UUID(stdio["id"]), uuid.UUID(http["id"])])))).all()
    assert len(rows) == 2
    for row in rows:
        text = " ".join(str(column) for column in row)
        for plaintext in (env_token, header_token, "@linear/mcp", "mcp.example.com"):
            assert plaintext not in text
        assert row._mapping["config_encrypted"].startswith("v1:")
    listed = (await client.get(f"{ENVS}/global/mcps")).json()["environment_mcps"]
    configs = {m["name"]: m["config"] for m in listed}
    assert configs["linear"]["env"] == {"LINEAR_API_KEY": env_token}
    assert configs["internal-tools"]["headers"] == {"Authorization": header_token}


INVALID_NAMES = [("replicas-tools", "reserved"), ("Replicas-x", "reserved"), ("relay-x", "reserved"),
                 ("RELAY-x", "reserved"), ("-lead", "must match"), ("_lead", "must match"),
                 ("has space", "must match"), ("a" * 65, "must match"), ("", "must match"),
                 ("dot.ted", "must match")]


async def test_invalid_or_reserved_names_are_400_naming_the_rule(client):
    for name, rule in INVALID_NAMES:
        response = await client.post(f"{ENVS}/global/mcps", json={**LINEAR, "name": name})
        assert response.status_code == 400, name
        details = assert_contract(response, MCPS)["details"]
        assert details.startswith("name:") and rule in details, (name, details)
    assert (await client.get(f"{ENVS}/global/mcps")).json()["environment_mcps"] == []


async def test_names_up_to_64_characters_and_near_reserved_prefixes_are_accepted(client):
    for name in ("a" * 64, "0day", "relay", "replicas", "replicasx", "my_relay-1"):
        await _create(client, "global", {**LINEAR, "name": name})


BAD_CONFIGS = [
    ("stdio", {"args": []}, "config.command"),
    ("stdio", {"command": ""}, "config.command"),
    ("stdio", {"command": 7}, "config.command"),
    ("stdio", {"url": "https://mcp.example.com"}, "config.command"),
    ("stdio", {"command": "npx", "args": "-y"}, "config.args"),
    ("stdio", {"command": "npx", "args": ["-y", 1]}, "config.args"),
    ("stdio", {"command": "npx", "env": ["A=1"]}, "config.env"),
    ("stdio", {"command": "npx", "env": {"A": 1}}, "config.env.A"),
    ("http", {"command": "npx"}, "config.url"),
    ("http", {"url": "mcp.example.com"}, "config.url"),
    ("http", {"url": "ftp://mcp.example.com"}, "config.url"),
    ("sse", {"url": "https://"}, "config.url"),
    ("sse", {"url": "https://mcp.example.com/a b"}, "config.url"),
    ("http", {"url": "https://mcp.example.com:99999"}, "config.url"),
    ("http", {"url": "https://x.example", "headers": {"Authorization": 5}}, "config.headers.Authorization"),
    ("http", {"url": "https://mcp.example.com", "headers": {"X": "a\r\nEvil: 1"}}, "config.headers.X"),
    ("http", {"url": "https://mcp.example.com", "headers": {"Bad Name": "x"}}, "config.headers.Bad Name"),
    ("http", "https://mcp.example.com", "config"),
    ("grpc", {"url": "https://mcp.example.com"}, "transport"),
]


async def test_config_must_match_the_transport_shape(client):
    for transport, config, field in BAD_CONFIGS:
        response = await client.post(f"{ENVS}/global/mcps",
                                     json={"name": "x", "transport": transport, "config": config})
        assert response.status_code == 400, (transport, config)
        details = assert_contract(response, MCPS)["details"]
        assert details.startswith(field), (transport, config, details)
    assert (await client.get(f"{ENVS}/global/mcps")).json()["environment_mcps"] == []


async def test_duplicate_names_conflict_on_create_and_rename(client):
    ref = await _team_env(client)
    await _create(client, ref, LINEAR)
    internal = await _create(client, ref, INTERNAL)
    duplicate = await client.post(f"{ENVS}/{ref}/mcps", json=LINEAR)
    assert duplicate.status_code == 409
    assert assert_contract(duplicate, MCPS)["error"] == "An MCP with this name already exists"
    renamed = await client.patch(f"{ENVS}/{ref}/mcps/{internal['id']}", json={"name": "linear"})
    assert renamed.status_code == 409
    assert_contract(renamed, MCP)
    listed = (await client.get(f"{ENVS}/{ref}/mcps")).json()["environment_mcps"]
    assert [m["name"] for m in listed] == ["linear", "internal-tools"]
    await _create(client, "global", LINEAR)


async def test_concurrent_creates_of_one_name_store_one_mcp(client):
    responses = await asyncio.gather(*[client.post(f"{ENVS}/global/mcps", json=LINEAR) for _ in range(5)])
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert len((await client.get(f"{ENVS}/global/mcps")).json()["environment_mcps"]) == 1


async def test_transport_change_requires_a_config_of_the_new_shape(client):
    mcp = await _create(client, "global", LINEAR)
    url = f"{ENVS}/global/mcps/{mcp['id']}"
    without = await client.patch(url, json={"transport": "http"})
    assert without.status_code == 400 and assert_contract(without, MCP)["details"].startswith("config:")
    mismatched = await client.patch(url, json={"transport": "http", "config": LINEAR["config"]})
    assert mismatched.status_code == 400 and mismatched.json()["details"].startswith("config.url")
    wrong_for_current = await client.patch(url, json={"config": INTERNAL["config"]})
    assert wrong_for_current.status_code == 400
    assert wrong_for_current.json()["details"].startswith("config.command")
    null = await client.patch(url, json={"transport": None})
    assert null.status_code == 400 and null.json()["details"].startswith("transport")
    unchanged = (await client.get(f"{ENVS}/global/mcps")).json()["environment_mcps"]
    assert unchanged == [mcp]
    same_transport = await client.patch(url, json={"transport": "stdio", "name": "linear-2"})
    assert same_transport.status_code == 200
    assert same_transport.json()["environment_mcp"]["config"] == mcp["config"]
    config_only = await client.patch(url, json={"config": {"command": "uvx", "args": ["linear-mcp"]}})
    assert assert_contract(config_only, MCP)["environment_mcp"]["config"] == {
        "command": "uvx", "args": ["linear-mcp"], "env": {}}
    switched = await client.patch(url, json={"transport": "http", "config": INTERNAL["config"]})
    body = assert_contract(switched, MCP)["environment_mcp"]
    assert (body["name"], body["transport"], body["config"]) == ("linear-2", "http", INTERNAL["config"])
    reserved = await client.patch(url, json={"name": "replicas-core"})
    assert reserved.status_code == 400 and "reserved" in reserved.json()["details"]


async def test_other_organizations_and_environments_ids_answer_404(make_org):
    alice, bob = await make_org(), await make_org()
    env = await _team_env(alice.client, "private")
    mcp = await _create(alice.client, env, LINEAR)
    listing = await bob.client.get(f"{ENVS}/{env}/mcps")
    assert listing.status_code == 404
    validate_schema(listing.json(), "Error")
    for ref in (env, "global"):
        for call in (bob.client.patch(f"{ENVS}/{ref}/mcps/{mcp['id']}", json={"name": "stolen"}),
                     bob.client.delete(f"{ENVS}/{ref}/mcps/{mcp['id']}")):
            response = await call
            assert response.status_code == 404
            assert_contract(response, MCP)
    other = await _team_env(alice.client, "other")
    assert (await alice.client.delete(f"{ENVS}/{other}/mcps/{mcp['id']}")).status_code == 404
    unknown = await alice.client.patch(f"{ENVS}/{env}/mcps/{uuid.uuid4()}", json={"name": "x"})
    assert unknown.status_code == 404
    assert (await alice.client.get(f"{ENVS}/{env}/mcps")).json()["environment_mcps"] == [mcp]


async def test_mcp_count_in_environment_list_follows_creates_and_deletes(client):
    env = await _team_env(client)

    async def count() -> int:
        envs = (await client.get(ENVS)).json()["environments"]
        return next(e["mcp_count"] for e in envs if e["id"] == env)

    assert await count() == 0
    linear = await _create(client, env, LINEAR)
    await _create(client, env, INTERNAL)
    assert await count() == 2
    await client.delete(f"{ENVS}/{env}/mcps/{linear['id']}")
    assert await count() == 1


async def test_mcp_changes_are_audited_with_env_and_header_values_redacted(client, app):
    mcp = await _create(client, "global", {**LINEAR, "config": {**LINEAR["config"],
                                                                "env": {"LINEAR_API_KEY": "lin_secret"}}})
    await client.patch(f"{ENVS}/global/mcps/{mcp['id']}", json={"transport": "http", "config": {
        "url": "https://mcp.example.com", "headers": {"Authorization": "Bearer hdr_secret"}}})
    await client.delete(f"{ENVS}/global/mcps/{mcp['id']}")
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == mcp["id"])
                                      .order_by(AuditEvent.created_at))).all()
    assert [r.action for r in rows] == ["environment_mcp.created", "environment_mcp.updated",
                                        "environment_mcp.deleted"]
    assert rows[0].after["config"] == {"command": "npx", "args": ["-y", "@linear/mcp"],
                                       "env": {"LINEAR_API_KEY": "[redacted]"}}
    assert rows[1].before["transport"] == "stdio" and rows[1].after["transport"] == "http"
    assert rows[1].after["config"]["headers"] == {"Authorization": "[redacted]"}
    assert rows[2].before["config"]["url"] == "https://mcp.example.com"
    assert not any("secret" in f"{r.before} {r.after}" for r in rows)

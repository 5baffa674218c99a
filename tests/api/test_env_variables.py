"""Environment variables: quick-start calls, encryption at rest, key rules, the personal-override policy,
scoping and audit."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select

from replicas.store.models import AuditEvent, EnvironmentVariable
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
VARS = "/v1/environments/{environmentId}/variables"
VAR = "/v1/environments/{environmentId}/variables/{id}"


async def _team_env(client, name: str = "staging") -> str:
    return (await client.post(ENVS, json={"name": name})).json()["environment"]["id"]


async def _env_ref(client, kind: str) -> str:
    return "global" if kind == "global" else await _team_env(client)


@pytest.mark.parametrize("kind", ["global", "uuid"])
async def test_quick_start_variable_calls_work_on_global_and_uuid_environments(client, kind):
    ref = await _env_ref(client, kind)
    created = await client.post(f"{ENVS}/{ref}/variables", json={"key": "DATABASE_URL", "value": "postgres://..."})
    assert created.status_code == 201
    var = assert_contract(created, VARS)["environment_variable"]
    assert (var["key"], var["value"], var["personal_override_allowed"]) == (
        "DATABASE_URL", "postgres://...", False)

    listed = await client.get(f"{ENVS}/{ref}/variables")
    assert assert_contract(listed, VARS)["environment_variables"] == [var]

    patched = await client.patch(f"{ENVS}/{ref}/variables/{var['id']}", json={"value": "postgres://new-host/db"})
    assert patched.status_code == 200
    updated = assert_contract(patched, VAR)["environment_variable"]
    assert updated["value"] == "postgres://new-host/db" and updated["key"] == "DATABASE_URL"

    deleted = await client.delete(f"{ENVS}/{ref}/variables/{var['id']}")
    assert assert_contract(deleted, VAR) == {"success": True}
    assert (await client.get(f"{ENVS}/{ref}/variables")).json() == {"environment_variables": []}


async def test_global_literal_and_global_uuid_share_variables(client):
    global_id = (await client.get(f"{ENVS}/global")).json()["environment"]["id"]
    await client.post(f"{ENVS}/global/variables", json={"key": "REGION", "value": "eu"})
    by_id = (await client.get(f"{ENVS}/{global_id}/variables")).json()["environment_variables"]
    assert [(v["key"], v["value"], v["environment_id"]) for v in by_id] == [("REGION", "eu", global_id)]


async def test_values_are_encrypted_at_rest_and_in_no_audit_row(client, app):
    secret = f"postgres://admin:{uuid.uuid4().hex}@db/prod"
    var = (await client.post(f"{ENVS}/global/variables",
                             json={"key": "DATABASE_URL", "value": secret})).json()["environment_variable"]
    await client.patch(f"{ENVS}/global/variables/{var['id']}", json={"value": secret + "-rotated"})
    async with app.state.sessions() as session:
        rows = (await session.execute(select(EnvironmentVariable.__table__)
                                      .where(EnvironmentVariable.id == uuid.UUID(var["id"])))).all()
        audits = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == var["id"]))).all()
    [row] = rows
    assert not any(secret in str(column) for column in row)
    assert row._mapping["value_encrypted"].startswith("v1:")
    assert len(audits) == 2
    for event in audits:
        assert secret not in f"{event.before} {event.after}"
    assert (await client.get(f"{ENVS}/global/variables")).json()["environment_variables"][0]["value"] == (
        secret + "-rotated")


async def test_invalid_keys_are_refused_with_400_naming_the_key(client):
    for key in ("1ABC", "MY-VAR", "MY VAR", "", "ÄPFEL", "A" * 256):
        response = await client.post(f"{ENVS}/global/variables", json={"key": key, "value": "v"})
        assert response.status_code == 400, key
        assert assert_contract(response, VARS)["details"].startswith("key:")
    assert (await client.get(f"{ENVS}/global/variables")).json()["environment_variables"] == []


async def test_missing_or_mistyped_fields_are_400_naming_the_field(client):
    missing = await client.post(f"{ENVS}/global/variables", json={"key": "A"})
    assert missing.status_code == 400 and "value" in assert_contract(missing, VARS)["details"]
    mistyped = await client.post(f"{ENVS}/global/variables", json={"key": "A", "value": 5})
    assert mistyped.status_code == 400 and "value" in mistyped.json()["details"]
    var = (await client.post(f"{ENVS}/global/variables", json={"key": "A", "value": "1"})).json()
    var_url = f"{ENVS}/global/variables/{var['environment_variable']['id']}"
    null = await client.patch(var_url, json={"value": None})
    assert null.status_code == 400 and assert_contract(null, VAR)["details"].startswith("value:")
    bad_key = await client.patch(var_url, json={"key": "not valid"})
    assert bad_key.status_code == 400 and bad_key.json()["details"].startswith("key:")


async def test_duplicate_keys_conflict_on_create_and_rename_and_change_nothing(client):
    ref = await _team_env(client)
    first = (await client.post(f"{ENVS}/{ref}/variables", json={"key": "A", "value": "1"})).json()
    second = (await client.post(f"{ENVS}/{ref}/variables", json={"key": "B", "value": "2"})).json()
    duplicate = await client.post(f"{ENVS}/{ref}/variables", json={"key": "A", "value": "other"})
    assert duplicate.status_code == 409
    assert assert_contract(duplicate, VARS)["error"] == "An environment variable with this key already exists"
    rename = await client.patch(f"{ENVS}/{ref}/variables/{second['environment_variable']['id']}",
                                json={"key": "A", "value": "changed"})
    assert rename.status_code == 409
    assert_contract(rename, VAR)
    listed = (await client.get(f"{ENVS}/{ref}/variables")).json()["environment_variables"]
    assert [(v["key"], v["value"]) for v in listed] == [("A", "1"), ("B", "2")]
    # The same key in another environment is fine, and renaming onto one's own key is a no-op.
    assert (await client.post(f"{ENVS}/global/variables", json={"key": "A", "value": "g"})).status_code == 201
    same = await client.patch(f"{ENVS}/{ref}/variables/{first['environment_variable']['id']}",
                              json={"key": "A"})
    assert same.status_code == 200


async def test_concurrent_creates_of_one_key_store_one_variable(client):
    responses = await asyncio.gather(*[client.post(f"{ENVS}/global/variables", json={"key": "A", "value": str(i)})
                                       for i in range(5)])
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert len((await client.get(f"{ENVS}/global/variables")).json()["environment_variables"]) == 1


async def test_only_admins_set_or_change_the_personal_override_policy(org):
    member = await org.add_user("member@example.com", "member")
    admin = await org.add_user("admin@example.com", "admin")
    refused = await member.post(f"{ENVS}/global/variables",
                                json={"key": "A", "value": "1", "personal_override_allowed": True})
    assert refused.status_code == 403
    assert assert_contract(refused, VARS)["error"] == (
        "Admin access required to change personal override policy")
    # Sending the default is no change, so members may.
    plain = await member.post(f"{ENVS}/global/variables",
                              json={"key": "A", "value": "1", "personal_override_allowed": False})
    assert plain.status_code == 201
    var_id = plain.json()["environment_variable"]["id"]
    flip = await member.patch(f"{ENVS}/global/variables/{var_id}", json={"personal_override_allowed": True})
    assert flip.status_code == 403 and assert_contract(flip, VAR)["error"].startswith("Admin access required")
    value_only = await member.patch(f"{ENVS}/global/variables/{var_id}", json={"value": "2"})
    assert value_only.status_code == 200
    by_admin = await admin.patch(f"{ENVS}/global/variables/{var_id}",
                                 json={"personal_override_allowed": True})
    assert assert_contract(by_admin, VAR)["environment_variable"]["personal_override_allowed"] is True
    by_org_key = await org.client.post(f"{ENVS}/global/variables",
                                       json={"key": "B", "value": "1", "personal_override_allowed": True})
    assert by_org_key.status_code == 201
    assert by_org_key.json()["environment_variable"]["personal_override_allowed"] is True


async def test_source_backed_personal_environment_overrides_only_allowed_keys(org):
    alice = await org.add_user("alice@example.com")
    team = await _team_env(org.client, "team")
    await org.client.post(f"{ENVS}/{team}/variables",
                          json={"key": "OPEN", "value": "team", "personal_override_allowed": True})
    await org.client.post(f"{ENVS}/{team}/variables", json={"key": "LOCKED", "value": "team"})
    personal = (await alice.post(ENVS, json={"name": "mine", "scope": "user",
                                             "source_environment_id": team})).json()["environment"]["id"]
    assert (await alice.get(f"{ENVS}/{personal}/variables")).json()["environment_variables"] == []
    allowed = await alice.post(f"{ENVS}/{personal}/variables", json={"key": "OPEN", "value": "mine"})
    assert allowed.status_code == 201
    locked = await alice.post(f"{ENVS}/{personal}/variables", json={"key": "LOCKED", "value": "mine"})
    assert locked.status_code == 403 and "LOCKED" in assert_contract(locked, VARS)["details"]
    own = (await alice.post(f"{ENVS}/{personal}/variables", json={"key": "OWN", "value": "x"})).json()
    renamed = await alice.patch(f"{ENVS}/{personal}/variables/{own['environment_variable']['id']}",
                                json={"key": "LOCKED"})
    assert renamed.status_code == 403 and "LOCKED" in assert_contract(renamed, VAR)["details"]
    policy = await alice.post(f"{ENVS}/{personal}/variables",
                              json={"key": "P", "value": "x", "personal_override_allowed": True})
    assert policy.status_code == 400 and policy.json()["details"].startswith("personal_override_allowed")
    listed = (await alice.get(f"{ENVS}/{personal}/variables")).json()["environment_variables"]
    assert [(v["key"], v["value"]) for v in listed] == [("OPEN", "mine"), ("OWN", "x")]


async def test_other_organizations_and_environments_ids_answer_404(make_org):
    alice, bob = await make_org(), await make_org()
    env = await _team_env(alice.client, "private")
    var = (await alice.client.post(f"{ENVS}/{env}/variables",
                                   json={"key": "SECRET", "value": "s"})).json()["environment_variable"]
    listing = await bob.client.get(f"{ENVS}/{env}/variables")
    assert listing.status_code == 404
    validate_schema(listing.json(), "Error")
    for ref in (env, "global"):
        for call in (bob.client.patch(f"{ENVS}/{ref}/variables/{var['id']}", json={"value": "stolen"}),
                     bob.client.delete(f"{ENVS}/{ref}/variables/{var['id']}")):
            response = await call
            assert response.status_code == 404
            assert_contract(response, VAR)
    creating = await bob.client.post(f"{ENVS}/{env}/variables", json={"key": "X", "value": "y"})
    assert creating.status_code == 404
    # Another environment of the same organization does not own the id either.
    other = await _team_env(alice.client, "other")
    elsewhere = await alice.client.patch(f"{ENVS}/{other}/variables/{var['id']}", json={"value": "z"})
    assert elsewhere.status_code == 404
    assert (await alice.client.delete(f"{ENVS}/{env}/variables/{uuid.uuid4()}")).status_code == 404
    assert (await alice.client.delete(f"{ENVS}/{env}/variables/not-a-uuid")).status_code == 404
    kept = (await alice.client.get(f"{ENVS}/{env}/variables")).json()["environment_variables"]
    assert [(v["key"], v["value"]) for v in kept] == [("SECRET", "s")]


async def test_variable_count_in_environment_list_follows_creates_and_deletes(client):
    env = await _team_env(client)

    async def count() -> int:
        envs = (await client.get(ENVS)).json()["environments"]
        return next(e["variable_count"] for e in envs if e["id"] == env)

    assert await count() == 0
    a = (await client.post(f"{ENVS}/{env}/variables", json={"key": "A", "value": "1"})).json()
    await client.post(f"{ENVS}/{env}/variables", json={"key": "B", "value": "2"})
    assert await count() == 2
    await client.delete(f"{ENVS}/{env}/variables/{a['environment_variable']['id']}")
    assert await count() == 1


async def test_every_variable_change_is_audited_with_the_value_redacted(client, app):
    var = (await client.post(f"{ENVS}/global/variables", json={"key": "A", "value": "hunter2"})).json()
    var_id = var["environment_variable"]["id"]
    await client.patch(f"{ENVS}/global/variables/{var_id}", json={"key": "B"})
    await client.delete(f"{ENVS}/global/variables/{var_id}")
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == var_id)
                                      .order_by(AuditEvent.created_at))).all()
    assert [r.action for r in rows] == ["environment_variable.created", "environment_variable.updated",
                                        "environment_variable.deleted"]
    assert {r.resource_type for r in rows} == {"environment_variable"}
    assert rows[0].after["key"] == "A" and rows[0].after["value"] == "[redacted]"
    assert rows[1].before["key"] == "A" and rows[1].after["key"] == "B"
    assert rows[1].after["value_changed"] is False
    assert rows[2].before["key"] == "B" and rows[2].after is None

"""Environments: the Global singleton, create/get/patch/delete, binding rules, scoping, contract shapes."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from replicas.store.models import Automation, Environment, Organization, Repository
from tests.contract import assert_contract

ENVS = "/v1/environments"
ENV = "/v1/environments/{id}"


async def _repository(app, org_name: str, name: str = "acme/app") -> str:
    """Insert a repository row directly (registration through the API is tested on its own)."""
    async with app.state.sessions() as session:
        org = await session.scalar(select(Organization).where(Organization.name == org_name))
        repo = Repository(organization_id=org.id, name=name, url="file:///srv/git/app", default_branch="main")
        session.add(repo)
        await session.commit()
        return str(repo.id)


async def test_list_includes_auto_created_global_with_counts(client):
    response = await client.get(ENVS)
    body = assert_contract(response, ENVS)
    assert response.status_code == 200
    [glob] = body["environments"]
    assert glob["is_global"] is True and glob["name"] == "Global"
    assert glob["variable_count"] == glob["file_count"] == glob["skill_count"] == glob["mcp_count"] == 0


async def test_global_literal_and_uuid_address_the_same_singleton(client):
    by_literal = assert_contract(await client.get("/v1/environments/global"), ENV, "get")
    again = assert_contract(await client.get("/v1/environments/global"), ENV, "get")
    by_id = assert_contract(await client.get(f"/v1/environments/{by_literal['environment']['id']}"), ENV, "get")
    assert by_literal["environment"]["id"] == again["environment"]["id"] == by_id["environment"]["id"]


async def test_create_bound_environment_as_in_the_quick_start(client, org, app):
    repo_id = await _repository(app, org.name)
    response = await client.post(ENVS, json={
        "name": "staging", "description": "Staging deploys", "repository_id": repo_id,
        "system_prompt": "You target staging only — never push to main.",
    })
    assert response.status_code == 201
    env = assert_contract(response, ENVS)["environment"]
    assert env["name"] == "staging" and env["repository_id"] == repo_id
    assert env["description"] == "Staging deploys" and env["is_global"] is False
    listed = (await client.get(ENVS)).json()["environments"]
    assert [e["name"] for e in listed] == ["Global", "staging"]


async def test_unbound_environment_and_duplicate_name_conflict(client):
    assert (await client.post(ENVS, json={"name": "scratch"})).status_code == 201
    response = await client.post(ENVS, json={"name": "scratch"})
    assert response.status_code == 409
    assert assert_contract(response, ENVS)["error"] == "An environment with this name already exists"
    assert (await client.post(ENVS, json={"name": "global"})).status_code == 409


async def test_binding_is_mutually_exclusive_and_must_exist(client, org, app):
    repo_id = await _repository(app, org.name)
    both = await client.post(ENVS, json={"name": "x", "repository_id": repo_id,
                                         "repository_set_id": str(uuid.uuid4())})
    assert both.status_code == 400
    assert "mutually exclusive" in assert_contract(both, ENVS)["error"]
    missing = await client.post(ENVS, json={"name": "y", "repository_id": str(uuid.uuid4())})
    assert missing.status_code == 400 and "repository_id" in missing.json()["details"]


async def test_validation_errors_are_400_and_name_the_field(client):
    response = await client.post(ENVS, json={"description": "no name"})
    assert response.status_code == 400
    body = assert_contract(response, ENVS)
    assert "name" in body["details"]
    bad_uuid = await client.post(ENVS, json={"name": "z", "repository_id": "not-a-uuid"})
    assert bad_uuid.status_code == 400 and "repository_id" in bad_uuid.json()["details"]
    bad_json = await client.post(ENVS, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "Invalid JSON body"
    bad_scope = await client.get(ENVS, params={"scope": "everyone"})
    assert bad_scope.status_code == 400 and "scope" in bad_scope.json()["details"]


async def test_patch_updates_and_global_is_refused_with_pointer(client, org, app):
    env = (await client.post(ENVS, json={"name": "staging"})).json()["environment"]
    response = await client.patch(f"{ENVS}/{env['id']}", json={"name": "staging-eu",
                                                               "system_prompt": "Region: eu-west-1."})
    updated = assert_contract(response, ENV, "patch")["environment"]
    assert updated["name"] == "staging-eu" and updated["system_prompt"] == "Region: eu-west-1."
    for ref in ("global", (await client.get(f"{ENVS}/global")).json()["environment"]["id"]):
        refused = await client.patch(f"{ENVS}/{ref}", json={"name": "nope"})
        assert refused.status_code == 400
        assert "/v1/environments/global/variables" in assert_contract(refused, ENV, "patch")["details"]
    repo_id = await _repository(app, org.name)
    rebound = (await client.patch(f"{ENVS}/{env['id']}", json={"repository_id": repo_id})).json()
    assert rebound["environment"]["repository_id"] == repo_id
    unbound = (await client.patch(f"{ENVS}/{env['id']}", json={"repository_id": None})).json()
    assert unbound["environment"]["repository_id"] is None
    await client.post(ENVS, json={"name": "taken"})
    clash = await client.patch(f"{ENVS}/{env['id']}", json={"name": "taken"})
    assert clash.status_code == 409
    assert (await client.get(f"{ENVS}/{env['id']}")).json()["environment"]["name"] == "staging-eu"


async def test_delete_refuses_global_and_environments_used_by_automations(client, org, app):
    assert assert_contract(await client.delete(f"{ENVS}/global"), ENV, "delete")["error"] == (
        "Cannot delete the global environment")
    env = (await client.post(ENVS, json={"name": "used"})).json()["environment"]
    async with app.state.sessions() as session:
        session.add(Automation(organization_id=uuid.UUID(env["organization_id"]),
                               environment_id=uuid.UUID(env["id"]), name="nightly", prompt="p"))
        await session.commit()
    blocked = await client.delete(f"{ENVS}/{env['id']}")
    assert blocked.status_code == 409 and "automation" in blocked.json()["error"].lower()
    free = (await client.post(ENVS, json={"name": "free"})).json()["environment"]
    deleted = await client.delete(f"{ENVS}/{free['id']}")
    assert assert_contract(deleted, ENV, "delete") == {"success": True}
    assert (await client.get(f"{ENVS}/{free['id']}")).status_code == 404


async def test_other_organizations_ids_answer_404(make_org):
    alice, bob = await make_org(), await make_org()
    env = (await alice.client.post(ENVS, json={"name": "private"})).json()["environment"]
    for call in (bob.client.get(f"{ENVS}/{env['id']}"),
                 bob.client.patch(f"{ENVS}/{env['id']}", json={"name": "stolen"}),
                 bob.client.delete(f"{ENVS}/{env['id']}")):
        response = await call
        assert response.status_code == 404
        assert_contract(response, ENV)
    assert [e["name"] for e in (await bob.client.get(ENVS)).json()["environments"]] == ["Global"]
    assert (await alice.client.get(f"{ENVS}/{env['id']}")).json()["environment"]["name"] == "private"


async def test_personal_environments_are_visible_only_to_their_owner(org, app):
    alice = await org.add_user("alice@example.com")
    bob = await org.add_user("bob@example.com")
    team = (await org.client.post(ENVS, json={"name": "team", "system_prompt": "Be careful."})).json()
    personal = await alice.post(ENVS, json={"name": "mine", "scope": "user",
                                            "source_environment_id": team["environment"]["id"]})
    assert personal.status_code == 201
    env = assert_contract(personal, ENVS)["environment"]
    assert env["user_id"] is not None and env["system_prompt"] == "Be careful."
    assert env["source_environment_id"] == team["environment"]["id"]
    assert [e["name"] for e in (await alice.get(ENVS, params={"scope": "user"})).json()["environments"]] == ["mine"]
    assert (await bob.get(f"{ENVS}/{env['id']}")).status_code == 404
    assert (await bob.get(ENVS, params={"scope": "user"})).json()["environments"] == []
    locked = await alice.patch(f"{ENVS}/{env['id']}", json={"system_prompt": "ignore it"})
    assert locked.status_code == 400
    prefs = await alice.patch(f"{ENVS}/{env['id']}", json={"personal_preferences": "Use tabs."})
    assert prefs.json()["environment"]["personal_preferences"] == "Use tabs."
    source_busy = await org.client.delete(f"{ENVS}/{team['environment']['id']}")
    assert source_busy.status_code == 409
    org_key_personal = await org.client.post(ENVS, json={"name": "x", "scope": "user"})
    assert org_key_personal.status_code == 403


async def test_team_environment_from_source_copies_nested_resources(client):
    source = (await client.post(ENVS, json={"name": "base"})).json()["environment"]
    await client.post(f"{ENVS}/{source['id']}/variables", json={"key": "A", "value": "1"})
    copy = (await client.post(ENVS, json={"name": "copy", "source_environment_id": source["id"]})).json()
    assert copy["environment"]["source_environment_id"] is None
    variables = (await client.get(f"{ENVS}/{copy['environment']['id']}/variables")).json()
    assert [(v["key"], v["value"]) for v in variables["environment_variables"]] == [("A", "1")]


async def test_authentication_errors(anonymous, client):
    missing = await anonymous.get(ENVS)
    assert missing.status_code == 401 and assert_contract(missing, ENVS)["error"] == "Missing authorization token"
    wrong = await anonymous.get(ENVS, headers={"Authorization": "Bearer sk_replicas_not-a-real-key-000000"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "Invalid token"


async def test_api_version_header_is_accepted_and_unknown_values_refused(client):
    ok = await client.get(ENVS, headers={"X-Replicas-Api-Version": "2026-05-17"})
    assert ok.status_code == 200 and ok.headers["X-Replicas-Api-Version"] == "2026-05-17"
    bad = await client.get(ENVS, headers={"X-Replicas-Api-Version": "1999-01-01"})
    assert bad.status_code == 400 and "X-Replicas-Api-Version" in bad.json()["error"]


async def test_every_change_is_audited(client, app):
    env = (await client.post(ENVS, json={"name": "audited"})).json()["environment"]
    await client.patch(f"{ENVS}/{env['id']}", json={"description": "now described"})
    await client.delete(f"{ENVS}/{env['id']}")
    async with app.state.sessions() as session:
        from replicas.store.models import AuditEvent

        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == env["id"])
                                      .order_by(AuditEvent.created_at))).all()
    assert [r.action for r in rows] == ["environment.created", "environment.updated", "environment.deleted"]
    assert rows[1].before["description"] is None and rows[1].after["description"] == "now described"
    assert rows[0].actor_type == "api_key"
    _ = Environment

"""Skills enabled on an environment: enable, list, disable, conflicts, validation, scoping, audit."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from replicas.store.models import AuditEvent
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
SKILLS = "/v1/environments/{environmentId}/skills"
SKILL = "/v1/environments/{environmentId}/skills/{id}"
DOCKER = {"name": "docker", "slug": "docker", "source": "https://skills.sh/skill/docker"}


async def _env(client, name: str = "staging") -> str:
    return (await client.post(ENVS, json={"name": name})).json()["environment"]["id"]


async def test_enable_list_and_disable_a_skill_as_in_the_quick_start(client):
    env_id = await _env(client)
    created = await client.post(f"{ENVS}/{env_id}/skills", json=DOCKER)
    assert created.status_code == 201
    skill = assert_contract(created, SKILLS)["environment_skill"]
    assert {k: skill[k] for k in DOCKER} == DOCKER and skill["environment_id"] == env_id
    listed = await client.get(f"{ENVS}/{env_id}/skills")
    assert assert_contract(listed, SKILLS)["environment_skills"] == [skill]
    assert (await client.get(f"{ENVS}/{env_id}")).json()["environment"]["skill_count"] == 1
    deleted = await client.delete(f"{ENVS}/{env_id}/skills/{skill['id']}")
    assert assert_contract(deleted, SKILL) == {"success": True}
    assert (await client.get(f"{ENVS}/{env_id}/skills")).json() == {"environment_skills": []}
    again = await client.delete(f"{ENVS}/{env_id}/skills/{skill['id']}")
    assert again.status_code == 404 and assert_contract(again, SKILL)["error"] == "Skill not found"


async def test_the_global_environment_takes_skills_by_its_literal_name(client):
    created = await client.post(f"{ENVS}/global/skills", json=DOCKER)
    assert created.status_code == 201
    global_id = (await client.get(f"{ENVS}/global")).json()["environment"]["id"]
    assert created.json()["environment_skill"]["environment_id"] == global_id
    by_id = (await client.get(f"{ENVS}/{global_id}/skills")).json()["environment_skills"]
    assert [s["slug"] for s in by_id] == ["docker"]


async def test_same_slug_or_same_source_is_a_conflict_and_stores_nothing(client):
    env_id = await _env(client)
    assert (await client.post(f"{ENVS}/{env_id}/skills", json=DOCKER)).status_code == 201
    same_slug = await client.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, "source": "acme/skills/docker"})
    assert same_slug.status_code == 409
    body = assert_contract(same_slug, SKILLS)
    assert body["error"] == "Skill is already enabled on this environment"
    assert "slug 'docker'" in body["details"]
    same_source = await client.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, "slug": "docker-2"})
    assert same_source.status_code == 409 and "source" in same_source.json()["details"]
    assert len((await client.get(f"{ENVS}/{env_id}/skills")).json()["environment_skills"]) == 1
    # Another environment may enable the same skill.
    other = await _env(client, "production")
    assert (await client.post(f"{ENVS}/{other}/skills", json=DOCKER)).status_code == 201


async def test_name_slug_and_source_are_required_and_not_blank(client):
    env_id = await _env(client)
    for field in ("name", "slug", "source"):
        without = {k: v for k, v in DOCKER.items() if k != field}
        missing = await client.post(f"{ENVS}/{env_id}/skills", json=without)
        assert missing.status_code == 400 and field in assert_contract(missing, SKILLS)["details"]
        blank = await client.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, field: "  "})
        assert blank.status_code == 400
        assert assert_contract(blank, SKILLS)["details"] == f"{field}: must not be blank"
    too_long = await client.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, "slug": "x" * 256})
    assert too_long.status_code == 400 and "slug" in too_long.json()["details"]
    wrong_type = await client.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, "name": 7})
    assert wrong_type.status_code == 400 and "name" in wrong_type.json()["details"]
    assert (await client.get(f"{ENVS}/{env_id}/skills")).json() == {"environment_skills": []}


async def test_values_are_trimmed_and_unknown_fields_ignored(client):
    env_id = await _env(client)
    created = await client.post(f"{ENVS}/{env_id}/skills", json={
        "name": " Docker ", "slug": "docker\n", "source": " https://skills.sh/skill/docker", "installs": 5})
    skill = assert_contract(created, SKILLS)["environment_skill"]
    assert (skill["name"], skill["slug"], skill["source"]) == ("Docker", "docker", DOCKER["source"])


async def test_unknown_environment_and_skill_ids_answer_404(client):
    missing_env = await client.get(f"{ENVS}/{uuid.uuid4()}/skills")
    assert missing_env.status_code == 404
    validate_schema(missing_env.json(), "Error")
    env_id = await _env(client)
    for skill_id in (uuid.uuid4(), "not-a-uuid"):
        response = await client.delete(f"{ENVS}/{env_id}/skills/{skill_id}")
        assert response.status_code == 404
        assert_contract(response, SKILL)


async def test_a_skill_is_disabled_only_through_its_own_environment(client):
    first, second = await _env(client, "first"), await _env(client, "second")
    skill = (await client.post(f"{ENVS}/{first}/skills", json=DOCKER)).json()["environment_skill"]
    wrong_env = await client.delete(f"{ENVS}/{second}/skills/{skill['id']}")
    assert wrong_env.status_code == 404
    assert len((await client.get(f"{ENVS}/{first}/skills")).json()["environment_skills"]) == 1


async def test_other_organizations_environments_and_skills_answer_404(make_org):
    alice, bob = await make_org(), await make_org()
    env_id = await _env(alice.client, "private")
    skill = (await alice.client.post(f"{ENVS}/{env_id}/skills", json=DOCKER)).json()["environment_skill"]
    for call in (bob.client.get(f"{ENVS}/{env_id}/skills"),
                 bob.client.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, "slug": "o", "source": "o/r/s"}),
                 bob.client.delete(f"{ENVS}/{env_id}/skills/{skill['id']}"),
                 bob.client.delete(f"{ENVS}/global/skills/{skill['id']}")):
        response = await call
        assert response.status_code == 404
        validate_schema(response.json(), "Error")
    assert (await bob.client.get(f"{ENVS}/global/skills")).json() == {"environment_skills": []}
    kept = (await alice.client.get(f"{ENVS}/{env_id}/skills")).json()["environment_skills"]
    assert [s["id"] for s in kept] == [skill["id"]]


async def test_personal_environment_skills_are_visible_only_to_their_owner(org):
    alice = await org.add_user("alice@example.com")
    bob = await org.add_user("bob@example.com")
    env_id = (await alice.post(ENVS, json={"name": "mine", "scope": "user"})).json()["environment"]["id"]
    assert (await alice.post(f"{ENVS}/{env_id}/skills", json=DOCKER)).status_code == 201
    assert (await bob.get(f"{ENVS}/{env_id}/skills")).status_code == 404
    stolen = await bob.post(f"{ENVS}/{env_id}/skills", json={**DOCKER, "slug": "b", "source": "b"})
    assert stolen.status_code == 404


async def test_enabling_and_disabling_are_audited(client, app):
    env_id = await _env(client)
    skill = (await client.post(f"{ENVS}/{env_id}/skills", json=DOCKER)).json()["environment_skill"]
    await client.delete(f"{ENVS}/{env_id}/skills/{skill['id']}")
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == skill["id"])
                                      .order_by(AuditEvent.created_at))).all()
    assert [(r.action, r.resource_type) for r in rows] == [
        ("environment_skill.created", "environment_skill"),
        ("environment_skill.deleted", "environment_skill"),
    ]
    assert rows[0].after == {"environment_id": env_id, **DOCKER} and rows[0].before is None
    assert rows[1].before == rows[0].after and rows[1].after is None

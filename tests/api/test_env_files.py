"""Environment files: quick-start calls, encryption at rest, the 64 KB limit, path rules, scoping, audit."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from sqlalchemy import select

from replicas.store.models import AuditEvent, EnvironmentFile
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
FILES = "/v1/environments/{environmentId}/files"
FILE = "/v1/environments/{environmentId}/files/{id}"
AGENTS = {"name": "AGENTS", "path": "~/AGENTS.md", "content": "# Project conventions\n..."}


async def _team_env(client, name: str = "staging") -> str:
    return (await client.post(ENVS, json={"name": name})).json()["environment"]["id"]


async def _paths(client, ref: str) -> list[str]:
    return [f["path"] for f in (await client.get(f"{ENVS}/{ref}/files")).json()["environment_files"]]


@pytest.mark.parametrize("kind", ["global", "uuid"])
async def test_quick_start_file_calls_work_on_global_and_uuid_environments(client, kind):
    ref = "global" if kind == "global" else await _team_env(client)
    created = await client.post(f"{ENVS}/{ref}/files", json=AGENTS)
    assert created.status_code == 201
    file = assert_contract(created, FILES)["environment_file"]
    assert {k: file[k] for k in AGENTS} == AGENTS

    listed = await client.get(f"{ENVS}/{ref}/files")
    assert assert_contract(listed, FILES)["environment_files"] == [file]

    patched = await client.patch(f"{ENVS}/{ref}/files/{file['id']}", json={"content": "# New rules\n"})
    updated = assert_contract(patched, FILE)["environment_file"]
    assert patched.status_code == 200
    assert (updated["content"], updated["path"], updated["name"]) == (
        "# New rules\n", "~/AGENTS.md", "AGENTS")

    deleted = await client.delete(f"{ENVS}/{ref}/files/{file['id']}")
    assert assert_contract(deleted, FILE) == {"success": True}
    assert await _paths(client, ref) == []


async def test_file_content_is_encrypted_at_rest(client, app):
    secret = f"token = {uuid.uuid4().hex}"
    file = (await client.post(f"{ENVS}/global/files", json={"name": "npmrc", "path": "~/.npmrc",
                                                           "content": secret})).json()["environment_file"]
    async with app.state.sessions() as session:
        [row] = (await session.execute(select(EnvironmentFile.__table__)
                                       .where(EnvironmentFile.id == uuid.UUID(file["id"])))).all()
    assert not any(secret in str(column) for column in row)
    assert row._mapping["content_encrypted"].startswith("v1:") and row._mapping["path"] == "~/.npmrc"
    assert (await client.get(f"{ENVS}/global/files")).json()["environment_files"][0]["content"] == secret


async def test_content_limit_is_65536_utf8_bytes(client):
    at_limit = await client.post(f"{ENVS}/global/files", json={**AGENTS, "content": "x" * 65_536})
    assert at_limit.status_code == 201
    over = await client.post(f"{ENVS}/global/files",
                             json={**AGENTS, "path": "~/big", "content": "x" * 65_537})
    assert over.status_code == 400 and "65,536" in assert_contract(over, FILES)["details"]
    # 32,769 characters, but 65,538 bytes once UTF-8 encoded.
    wide = await client.post(f"{ENVS}/global/files",
                             json={**AGENTS, "path": "~/wide", "content": "é" * 32_769})
    assert wide.status_code == 400 and "65,536" in wide.json()["details"]
    file_id = at_limit.json()["environment_file"]["id"]
    grown = await client.patch(f"{ENVS}/global/files/{file_id}", json={"content": "y" * 65_537})
    assert grown.status_code == 400 and "65,536" in assert_contract(grown, FILE)["details"]
    [kept] = (await client.get(f"{ENVS}/global/files")).json()["environment_files"]
    assert kept["content"] == "x" * 65_536


async def test_paths_outside_home_or_not_naming_a_file_are_refused(client):
    for path in ("AGENTS.md", "/etc/passwd", "~", "~/", "~/dir/", "~/../etc/passwd", "~/a/../../x", "~/./..",
                 "~user/x", "./x", "~/a\nb"):
        response = await client.post(f"{ENVS}/global/files", json={**AGENTS, "path": path})
        assert response.status_code == 400, path
        assert assert_contract(response, FILES)["details"].startswith("path:")
    assert await _paths(client, "global") == []


async def test_paths_are_stored_normalised(client):
    for given, stored in (("~//a/./b.md", "~/a/b.md"), ("~/a/../b.md", "~/b.md"),
                          ("~/workspaces/app/.env", "~/workspaces/app/.env")):
        response = await client.post(f"{ENVS}/global/files", json={**AGENTS, "path": given})
        assert response.status_code == 201 and response.json()["environment_file"]["path"] == stored, given


async def test_one_file_per_path_per_environment(client):
    ref = await _team_env(client)
    first = (await client.post(f"{ENVS}/{ref}/files", json=AGENTS)).json()["environment_file"]
    for spelling in ("~/AGENTS.md", "~//AGENTS.md", "~/./AGENTS.md"):
        duplicate = await client.post(f"{ENVS}/{ref}/files",
                                      json={**AGENTS, "path": spelling, "content": "new"})
        assert duplicate.status_code == 400
        assert assert_contract(duplicate, FILES)["error"] == "A file with this path already exists"
    second = (await client.post(f"{ENVS}/{ref}/files", json={**AGENTS, "path": "~/CLAUDE.md"})).json()
    moved = await client.patch(f"{ENVS}/{ref}/files/{second['environment_file']['id']}",
                               json={"path": "~/AGENTS.md", "content": "clobber"})
    assert moved.status_code == 400
    assert assert_contract(moved, FILE)["error"] == "A file with this path already exists"
    files = (await client.get(f"{ENVS}/{ref}/files")).json()["environment_files"]
    assert [(f["path"], f["content"]) for f in files] == [("~/AGENTS.md", AGENTS["content"]),
                                                         ("~/CLAUDE.md", AGENTS["content"])]
    # Same path in another environment is fine; moving a file onto its own path is a no-op.
    assert (await client.post(f"{ENVS}/global/files", json=AGENTS)).status_code == 201
    same = await client.patch(f"{ENVS}/{ref}/files/{first['id']}", json={"path": "~//AGENTS.md"})
    assert same.status_code == 200 and same.json()["environment_file"]["path"] == "~/AGENTS.md"


async def test_concurrent_creates_at_one_path_store_one_file(client):
    responses = await asyncio.gather(*[client.post(f"{ENVS}/global/files", json={**AGENTS, "content": str(i)})
                                       for i in range(5)])
    assert sorted(r.status_code for r in responses) == [201, 400, 400, 400, 400]
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"A file with this path already exists"}
    assert await _paths(client, "global") == ["~/AGENTS.md"]


async def test_name_is_required_and_fields_must_be_strings(client):
    for body in ({"path": "~/a", "content": ""}, {**AGENTS, "name": ""}, {**AGENTS, "name": "   "}):
        response = await client.post(f"{ENVS}/global/files", json=body)
        assert response.status_code == 400 and "name" in assert_contract(response, FILES)["details"]
    missing_content = await client.post(f"{ENVS}/global/files", json={"name": "a", "path": "~/a"})
    assert missing_content.status_code == 400 and "content" in missing_content.json()["details"]
    file = (await client.post(f"{ENVS}/global/files", json=AGENTS)).json()["environment_file"]
    for field in ("name", "path", "content"):
        null = await client.patch(f"{ENVS}/global/files/{file['id']}", json={field: None})
        assert null.status_code == 400 and assert_contract(null, FILE)["details"].startswith(field)
    renamed = await client.patch(f"{ENVS}/global/files/{file['id']}", json={"name": "Conventions"})
    assert renamed.json()["environment_file"]["name"] == "Conventions"


async def test_other_organizations_and_environments_ids_answer_404(make_org):
    alice, bob = await make_org(), await make_org()
    env = await _team_env(alice.client, "private")
    file = (await alice.client.post(f"{ENVS}/{env}/files", json=AGENTS)).json()["environment_file"]
    listing = await bob.client.get(f"{ENVS}/{env}/files")
    assert listing.status_code == 404
    validate_schema(listing.json(), "Error")
    for ref in (env, "global"):
        for call in (bob.client.patch(f"{ENVS}/{ref}/files/{file['id']}", json={"content": "stolen"}),
                     bob.client.delete(f"{ENVS}/{ref}/files/{file['id']}")):
            response = await call
            assert response.status_code == 404
            assert_contract(response, FILE)
    other = await _team_env(alice.client, "other")
    assert (await alice.client.delete(f"{ENVS}/{other}/files/{file['id']}")).status_code == 404
    unknown = await alice.client.patch(f"{ENVS}/{env}/files/{uuid.uuid4()}", json={"name": "x"})
    assert unknown.status_code == 404
    kept = (await alice.client.get(f"{ENVS}/{env}/files")).json()["environment_files"]
    assert [(f["path"], f["content"]) for f in kept] == [("~/AGENTS.md", AGENTS["content"])]


async def test_file_count_in_environment_list_follows_creates_and_deletes(client):
    env = await _team_env(client)

    async def count() -> int:
        return (await client.get(f"{ENVS}/{env}")).json()["environment"]["file_count"]

    assert await count() == 0
    file = (await client.post(f"{ENVS}/{env}/files", json=AGENTS)).json()["environment_file"]
    assert await count() == 1
    listed = (await client.get(ENVS)).json()["environments"]
    assert next(e["file_count"] for e in listed if e["id"] == env) == 1
    await client.delete(f"{ENVS}/{env}/files/{file['id']}")
    assert await count() == 0


async def test_file_changes_are_audited_with_digest_and_size_instead_of_content(client, app):
    file = (await client.post(f"{ENVS}/global/files", json=AGENTS)).json()["environment_file"]
    await client.patch(f"{ENVS}/global/files/{file['id']}",
                       json={"path": "~/docs/AGENTS.md", "content": "short"})
    await client.delete(f"{ENVS}/global/files/{file['id']}")
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == file["id"])
                                      .order_by(AuditEvent.created_at))).all()
    assert [r.action for r in rows] == ["environment_file.created", "environment_file.updated",
                                        "environment_file.deleted"]
    digest = hashlib.sha256(AGENTS["content"].encode()).hexdigest()
    assert rows[0].after == {"environment_id": file["environment_id"], "name": "AGENTS",
                             "path": "~/AGENTS.md", "content_sha256": digest, "size": len(AGENTS["content"])}
    assert rows[1].before["path"] == "~/AGENTS.md" and rows[1].after["path"] == "~/docs/AGENTS.md"
    assert rows[1].after["size"] == 5 and rows[2].before["path"] == "~/docs/AGENTS.md"
    assert all("content" not in (r.before or {}) and "content" not in (r.after or {}) for r in rows)

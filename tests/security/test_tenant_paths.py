"""Every place where tenant input becomes a path on the host: refused with 400 through the API when it is
stored, and refused (never followed) by provisioning when it is written. Each test plants a secret outside the
home and asserts it is neither overwritten nor read back into anything the tenant can see.

Places: environment file paths, symlinks planted in the home (by a checkout, an earlier hook or the agent),
MCP configs, skill slugs and skill archives, MCP server names, preview ports, repository names used as
checkout folders. Canvas names are covered by tests/engine/test_engine_canvas.py.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.services import provisioning
from replicas.services.principal import Principal
from replicas.store.models import Organization, Workspace
from tests.conftest import git
from tests.contract import validate_schema

SECRET = "planted-secret-" + uuid.uuid4().hex
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _assert_400(response, field: str) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    validate_schema(body, "Error")
    assert field in body["details"], body
    return body


async def _env(client) -> str:
    response = await client.post("/v1/environments", json={"name": f"env-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    return response.json()["environment"]["id"]


async def _resolve(org, env_id: str) -> provisioning.ResolvedEnvironment:
    async with org.app.state.sessions() as session:
        org_id = await session.scalar(select(Organization.id).where(Organization.name == org.name))
        return await provisioning.resolve_workspace_config(session, org.app.state.box, Principal.system(org_id),
                                                           env_id)


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the home holding a secret file, as any host file the server's user can read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.json").write_text(json.dumps({"mcpServers": {"stolen": {"command": SECRET}}}))
    return folder


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret.json"]
    assert SECRET in (outside / "secret.json").read_text()


def _nothing_in_home_holds_the_secret(home: Path) -> None:
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_text(errors="replace"), path


# --- environment files: the API ------------------------------------------------------------------------------

async def test_environment_file_paths_outside_the_home_are_400_and_store_nothing(client):
    env_id = await _env(client)
    files = f"/v1/environments/{env_id}/files"
    for path in ("~/../..", "~/../etc/passwd", "~/a/../../x", "~/..", "/etc/passwd", "/home/other/.ssh/id_rsa",
                 "~root/.ssh/authorized_keys", "../x", "~/a\x00b", "~/" + "x" * 256, "~/", "~/a/"):
        response = await client.post(files, json={"name": "f", "path": path, "content": SECRET})
        _assert_400(response, "path")
        assert SECRET not in response.text
    assert (await client.get(files)).json()["environment_files"] == []
    created = await client.post(files, json={"name": "ok", "path": "~/a/../b/./c", "content": "x"})
    assert created.status_code == 201 and created.json()["environment_file"]["path"] == "~/b/c"
    moved = await client.patch(f"{files}/{created.json()['environment_file']['id']}", json={"path": "~/../../escape"})
    _assert_400(moved, "path")
    assert [f["path"] for f in (await client.get(files)).json()["environment_files"]] == ["~/b/c"]


# --- environment files and configs: provisioning with symlinks planted in the home ---------------------------

@SQLITE_ONLY
async def test_provisioning_never_writes_or_reads_through_a_symlink_planted_in_the_home(org, tmp_path, outside):
    env_id = await _env(org.client)
    for path in ("~/.config/tool/settings", "~/.npmrc", "~/deep/file"):
        response = await org.client.post(f"/v1/environments/{env_id}/files",
                                         json={"name": path, "path": path, "content": "written"})
        assert response.status_code == 201
    await org.client.post(f"/v1/environments/{env_id}/mcps", json={
        "name": "docs", "transport": "stdio", "config": {"command": "docs-server"}})
    resolved = await _resolve(org, env_id)
    resolved.system_prompt = "Be careful."
    home = tmp_path / "home"
    home.mkdir()
    (home / ".config").symlink_to(outside)               # a folder on the way points out
    (home / ".npmrc").symlink_to(outside / "secret.json")  # the file itself points out
    (home / "deep").mkdir()
    os.link(outside / "secret.json", home / "deep" / "file")  # a hard link to a host file
    (home / ".claude.json").symlink_to(outside / "secret.json")  # a config that would be read and merged
    (home / ".claude").symlink_to(outside)                 # skills and instructions would land outside

    result = await provisioning.provision_home(resolved, home, tmp_path / "data")
    _untouched(outside)
    _nothing_in_home_holds_the_secret(home)
    assert any(".config" in w and "refus" in w for w in result.warnings)
    assert any("MCP configuration not written" in w for w in result.warnings)
    assert any("system_prompt" in w and ".claude" in w for w in result.warnings)
    # The symlink or hard link at a file's own name is replaced by the file, not written through.
    assert not (home / ".npmrc").is_symlink() and (home / ".npmrc").read_text() == "written"
    assert (home / "deep" / "file").read_text() == "written"


@SQLITE_ONLY
async def test_a_symlinked_workspaces_folder_does_not_move_a_checkout_out_of_the_home(
        org, tmp_path, outside, make_git_repo):
    repo = make_git_repo("app")
    created = await org.client.post("/v1/replica/repositories", json={"name": "acme/app", "url": str(repo)})
    env_id = (await org.client.post("/v1/environments", json={
        "name": "e", "repository_id": created.json()["repository"]["id"]})).json()["environment"]["id"]
    home = tmp_path / "home"
    home.mkdir()
    (home / "workspaces").symlink_to(outside)
    result = await provisioning.provision_home(await _resolve(org, env_id), home, tmp_path / "data")
    assert result.repos == [] and any("workspaces" in w for w in result.warnings)
    _untouched(outside)


# --- repository names used as checkout folders ---------------------------------------------------------------

async def test_repository_names_that_climb_are_400(client, make_git_repo):
    path = make_git_repo("app")
    for name in ("acme/../../x", "..", "acme/..", "./x", "a//b", "a\\..\\b", "a\x00b", "/abs"):
        _assert_400(await client.post("/v1/replica/repositories", json={"name": name, "url": str(path)}), "name")
    assert (await client.get("/v1/replica/repositories")).json() == {"repositories": []}


async def test_a_stored_climbing_name_still_checks_out_inside_workspaces(tmp_path, make_git_repo):
    """Rows stored before the name rule: the checkout folder is made from a sanitised last segment."""
    repo = make_git_repo("app")
    resolved = provisioning.ResolvedEnvironment(environment_id="x", name="x", repositories=[
        provisioning.ResolvedRepository("r1", "acme/..", repo.as_uri(), "main"),
        provisioning.ResolvedRepository("r2", "acme/../../x y", repo.as_uri(), "main")])
    home = tmp_path / "home"
    result = await provisioning.provision_home(resolved, home, tmp_path / "data")
    assert [r.path for r in result.repos] == [home / "workspaces" / "repo", home / "workspaces" / "x-y"]


# --- skills: slugs and archives ------------------------------------------------------------------------------

async def test_skill_slugs_that_are_not_folder_names_are_400(client):
    env_id = await _env(client)
    for slug in ("../x", "a/b", ".hidden", "..", "x\\y", "-rf"):
        response = await client.post(f"/v1/environments/{env_id}/skills",
                                     json={"name": "n", "slug": slug, "source": f"acme/skills/{uuid.uuid4().hex}"})
        _assert_400(response, "slug")
    assert (await client.get(f"/v1/environments/{env_id}/skills")).json()["environment_skills"] == []


async def test_a_skill_archive_with_links_out_is_refused_and_writes_nothing_outside(tmp_path, outside, make_git_repo):
    source = make_git_repo("evil-skill", {"SKILL.md": "---\nname: evil\n---\n"})
    os.symlink("../../../../outside", source / "climb")
    os.symlink(str(outside / "secret.json"), source / "absolute")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "links")
    resolved = provisioning.ResolvedEnvironment(environment_id="x", name="x", skills={
        "evil": provisioning.ResolvedSkill(name="evil", slug="evil", source=str(source))})
    home = tmp_path / "home"
    result = await provisioning.provision_home(resolved, home, tmp_path / "data")
    assert result.skills == [] and any("evil" in w and "not installed" in w for w in result.warnings)
    _untouched(outside)
    _nothing_in_home_holds_the_secret(home)


async def test_a_skill_folder_behind_a_symlink_is_refused(tmp_path, outside, make_git_repo):
    source = make_git_repo("good-skill", {"SKILL.md": "---\nname: good\n---\nHello.\n"})
    resolved = provisioning.ResolvedEnvironment(environment_id="x", name="x", skills={
        "good": provisioning.ResolvedSkill(name="good", slug="good", source=str(source))})
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "skills").symlink_to(outside)
    result = await provisioning.provision_home(resolved, home, tmp_path / "data")
    assert result.skills == [] and any(".codex/skills" in w for w in result.warnings)
    _untouched(outside)


# --- MCP server names ----------------------------------------------------------------------------------------

async def test_mcp_names_that_are_not_plain_names_are_400(client):
    env_id = await _env(client)
    for name in ("../x", "a/b", ".claude", "x y", "a\x00"):
        response = await client.post(f"/v1/environments/{env_id}/mcps",
                                     json={"name": name, "transport": "stdio", "config": {"command": "x"}})
        _assert_400(response, "name")
    assert (await client.get(f"/v1/environments/{env_id}/mcps")).json()["environment_mcps"] == []


# --- preview ports -------------------------------------------------------------------------------------------

async def test_preview_ports_of_the_server_and_the_engine_are_400(app, org, anonymous, settings):
    secret = f"engine-{uuid.uuid4().hex}"
    async with app.state.sessions() as session:
        org_id = await session.scalar(select(Organization.id).where(Organization.name == org.name))
        row = Workspace(organization_id=org_id, name="ws", status="active", runtime_state={"engine_port": 40123},
                        engine_secret_encrypted=app.state.box.encrypt(secret))
        session.add(row)
        await session.commit()
    headers = {"Authorization": f"Bearer {secret}", "X-Workspace-Id": str(row.id)}
    for port in (settings.port, settings.docker_engine_port, 40123, 0, 65536, -1):
        response = await anonymous.post("/v1/previews", json={"port": port}, headers=headers)
        assert response.status_code == 400, (port, response.text)
        by_org = await org.client.post(f"/v1/workspaces/{row.id}/previews", json={"port": port})
        assert by_org.status_code == 400, (port, by_org.text)
    assert (await anonymous.get("/v1/previews", headers=headers)).json()["previews"] == []
    assert (await anonymous.post("/v1/previews", json={"port": 3000}, headers=headers)).status_code == 201

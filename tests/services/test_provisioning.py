"""Provisioning a workspace home from an environment: real SQLite, real git repositories, no network.

SQLite only (`database_url` is narrowed below): the merge is plain ORM reads, which the environment
services' own tests already run on PostgreSQL; what these tests prove is the files laid out on disk.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tomllib
import uuid

import pytest
from sqlalchemy import select

from replicas.services import provisioning
from replicas.services.principal import Principal
from replicas.store.models import Organization, User

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def _post(client, path: str, body: dict, status: int = 201) -> dict:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def _resolve(org, env_ref: str) -> provisioning.ResolvedEnvironment:
    async with org.app.state.sessions() as session:
        org_id = await session.scalar(select(Organization.id).where(Organization.name == org.name))
        return await provisioning.resolve_workspace_config(session, org.app.state.box,
                                                           Principal.system(org_id), env_ref)


async def _env(org, **body) -> str:
    data = await _post(org.client, "/v1/environments", {"name": f"env-{uuid.uuid4().hex[:6]}", **body})
    return data["environment"]["id"]


async def _repo(org, name: str, path) -> str:
    return (await _post(org.client, "/v1/replica/repositories", {"name": name, "url": str(path)}))["repository"]["id"]


@SQLITE_ONLY
async def test_global_and_environment_variables_merge_with_the_environment_winning(org, tmp_path):
    env_id = await _env(org)
    await _post(org.client, "/v1/environments/global/variables", {"key": "SHARED", "value": "global"})
    await _post(org.client, "/v1/environments/global/variables", {"key": "ONLY_GLOBAL", "value": "g"})
    await _post(org.client, f"/v1/environments/{env_id}/variables", {"key": "SHARED", "value": "it's env"})
    resolved = await _resolve(org, env_id)
    assert resolved.variables == {"SHARED": "it's env", "ONLY_GLOBAL": "g"}
    assert "it's env" not in repr(resolved)

    result = await provisioning.provision_home(resolved, tmp_path / "home", tmp_path / "data")
    assert result.env == {"SHARED": "it's env", "ONLY_GLOBAL": "g"}
    assert stat.S_IMODE(result.env_file.stat().st_mode) == 0o600
    shell = subprocess.run(["bash", "-c", f". {result.env_file}; printf '%s|%s' \"$SHARED\" \"$ONLY_GLOBAL\""],
                           capture_output=True, text=True, check=True)
    assert shell.stdout == "it's env|g"


@SQLITE_ONLY
async def test_files_land_at_their_paths_and_escapes_are_refused(org, tmp_path):
    env_id = await _env(org)
    await _post(org.client, "/v1/environments/global/files", {"name": "npmrc", "path": "~/.npmrc", "content": "g"})
    await _post(org.client, f"/v1/environments/{env_id}/files", {"name": "npmrc", "path": "~/.npmrc", "content": "e"})
    await _post(org.client, f"/v1/environments/{env_id}/files",
                {"name": "cfg", "path": "~/a/b/c.txt", "content": "deep"})
    resolved = await _resolve(org, env_id)
    home, outside = tmp_path / "home", tmp_path / "outside"
    outside.mkdir()
    home.mkdir()
    (home / "link").symlink_to(outside)
    resolved.files["~/../escape"] = "no"
    resolved.files["~/link/escape"] = "no"

    result = await provisioning.provision_home(resolved, home, tmp_path / "data")
    assert (home / ".npmrc").read_text() == "e"
    assert (home / "a" / "b" / "c.txt").read_text() == "deep"
    assert not (tmp_path / "escape").exists() and not (outside / "escape").exists()
    assert len([w for w in result.warnings if "File refused" in w]) == 2


@SQLITE_ONLY
async def test_each_agent_gets_the_mcp_servers_in_its_own_format(org, tmp_path):
    env_id = await _env(org)
    await _post(org.client, "/v1/environments/global/mcps",
                {"name": "files", "transport": "stdio",
                 "config": {"command": "npx", "args": ["-y", "srv"], "env": {"TOKEN": "s3cret"}}})
    await _post(org.client, f"/v1/environments/{env_id}/mcps",
                {"name": "search", "transport": "http",
                 "config": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer t"}}})
    home = tmp_path / "home"
    (home).mkdir()
    (home / ".claude.json").write_text(json.dumps({"numStartups": 7, "mcpServers": {"mine": {"command": "x"}}}))

    result = await provisioning.provision_home(await _resolve(org, env_id), home, tmp_path / "data")
    claude = json.loads((home / ".claude.json").read_text())
    assert claude["numStartups"] == 7 and claude["mcpServers"]["mine"] == {"command": "x"}
    assert claude["mcpServers"]["files"] == {"type": "stdio", "command": "npx", "args": ["-y", "srv"],
                                             "env": {"TOKEN": "s3cret"}}
    assert claude["mcpServers"]["search"]["type"] == "http"
    codex = tomllib.loads((home / ".codex" / "config.toml").read_text())
    assert codex["mcp_servers"]["files"]["env"] == {"TOKEN": "s3cret"}
    assert codex["mcp_servers"]["search"] == {"url": "https://mcp.example.com/mcp",
                                              "http_headers": {"Authorization": "Bearer t"}}
    opencode = json.loads((home / ".config" / "opencode" / "opencode.json").read_text())
    assert opencode["mcp"]["files"]["command"] == ["npx", "-y", "srv"]
    assert opencode["mcp"]["search"]["type"] == "remote"
    assert len(result.mcp_configs) == 3
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in result.mcp_configs)


@SQLITE_ONLY
async def test_registry_skills_are_copied_for_each_agent_and_unfetchable_ones_warn(org, tmp_path, make_git_repo):
    registry = make_git_repo("skills", {
        "skills/lint-rules/SKILL.md": "---\nname: lint-rules\ndescription: Lint.\n---\nUse ruff.\n",
        "skills/lint-rules/scripts/run.sh": "ruff check\n",
        "skills/other/SKILL.md": "---\nname: other\n---\n",
    })
    env_id = await _env(org)
    await _post(org.client, f"/v1/environments/{env_id}/skills-registries", {"url": str(registry)}, 200)
    await _post(org.client, f"/v1/environments/{env_id}/skills",
                {"name": "lint-rules", "slug": "lint-rules", "source": "acme/skills/lint-rules"})
    await _post(org.client, "/v1/environments/global/skills",
                {"name": "web", "slug": "web-design-guidelines",
                 "source": "https://skills.sh/replicas-no-such-owner-0/no-such-repo/web-design-guidelines"})
    home = tmp_path / "home"
    result = await provisioning.provision_home(await _resolve(org, env_id), home, tmp_path / "data")
    assert result.skills == ["lint-rules"]
    for rel in (".claude/skills", ".codex/skills", ".agents/skills"):
        assert (home / rel / "lint-rules" / "SKILL.md").read_text().endswith("Use ruff.\n")
        assert (home / rel / "lint-rules" / "scripts" / "run.sh").read_text() == "ruff check\n"
        assert not (home / rel / "web-design-guidelines").exists()
    assert any("web-design-guidelines" in w and "not installed" in w for w in result.warnings)


@SQLITE_ONLY
async def test_system_prompt_merges_global_environment_and_repo_config(org, tmp_path, make_git_repo):
    repo = make_git_repo("app", {"replicas.json": json.dumps({"systemPrompt": "Repo rules.",
                                                               "startHook": {"commands": ["make"]}})})
    await _post(org.client, "/v1/environments/global/start-hooks/save", {"content": "echo global"})
    env_id = await _env(org, repository_id=await _repo(org, "acme/app", repo), system_prompt="Env rules.")
    await _post(org.client, f"/v1/environments/{env_id}/start-hooks/save", {"content": "echo env"})
    home = tmp_path / "home"
    result = await provisioning.provision_home(await _resolve(org, env_id), home, tmp_path / "data")
    prompt = result.system_prompt_path.read_text()
    assert prompt.index("Env rules.") < prompt.index("Repo rules.")
    for rel in (".claude/CLAUDE.md", ".codex/AGENTS.md"):
        assert "Env rules." in (home / rel).read_text() and "Repo rules." in (home / rel).read_text()
    assert result.repos[0].start_hook.commands == ["make"]
    hook = subprocess.run(["bash", str(result.start_hook_path)], capture_output=True, text=True)
    assert hook.returncode == 0
    assert hook.stdout.index("global") < hook.stdout.index("\nenv\n")


@SQLITE_ONLY
async def test_repository_set_is_cloned_at_default_branches_and_reprovisions_from_the_mirror(
        org, tmp_path, make_git_repo):
    first = make_git_repo("one", {"a.txt": "1"}, branch="main")
    second = make_git_repo("two", {"b.txt": "2"}, branch="trunk")
    ids = [await _repo(org, "acme/app", first), await _repo(org, "other/app", second)]
    set_id = (await _post(org.client, "/v1/replica/repository-sets",
                          {"name": "both", "repository_ids": ids}))["repository_set"]["id"]
    env_id = await _env(org, repository_set_id=set_id)
    steps: list[str] = []

    async def on_step(name, detail):
        steps.append(name)

    resolved = await _resolve(org, env_id)
    result = await provisioning.provision_home(resolved, tmp_path / "h1", tmp_path / "data", on_step=on_step)
    assert steps == list(provisioning.STEPS)
    assert [(r.name, r.path.name, r.branch) for r in result.repos] == [
        ("acme/app", "app", "main"), ("other/app", "app-2", "trunk")]
    app = tmp_path / "h1" / "workspaces" / "app"
    assert (app / "a.txt").read_text() == "1"
    assert (tmp_path / "h1" / "workspaces" / "app-2" / "b.txt").read_text() == "2"
    origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=app, capture_output=True, text=True)
    assert origin.stdout.strip() == first.resolve().as_uri()
    name = subprocess.run(["git", "config", "user.name"], cwd=app, capture_output=True, text=True)
    assert name.stdout.strip() == provisioning.AGENT_NAME

    shutil.rmtree(first)
    again = await provisioning.provision_home(resolved, tmp_path / "h2", tmp_path / "data")
    assert (tmp_path / "h2" / "workspaces" / "app" / "a.txt").read_text() == "1"
    assert any("acme/app" in w and "fetched last" in w for w in again.warnings)
    quiet = await provisioning.provision_home(resolved, tmp_path / "h3", tmp_path / "data", refresh=False)
    assert quiet.warnings == [] and quiet.repos[0].commit == result.repos[0].commit

    (app / "a.txt").write_text("agent work")
    rerun = await provisioning.provision_home(resolved, tmp_path / "h1", tmp_path / "data")
    assert rerun.repos[0].path == app and (app / "a.txt").read_text() == "agent work"


async def test_a_skill_from_a_git_source_installs_and_reinstalls_from_its_mirror(tmp_path, make_git_repo):
    source = make_git_repo("pdf-skill", {"SKILL.md": "---\nname: pdf\n---\nRead PDFs.\n", "ref.md": "x"})
    resolved = provisioning.ResolvedEnvironment(environment_id="x", name="x")
    resolved.skills["pdf"] = provisioning.ResolvedSkill("pdf", "pdf", str(source))
    data = tmp_path / "data"
    first = await provisioning.provision_home(resolved, tmp_path / "h1", data)
    assert first.skills == ["pdf"] and first.warnings == []
    assert (tmp_path / "h1" / ".agents" / "skills" / "pdf" / "ref.md").read_text() == "x"
    shutil.rmtree(source)
    second = await provisioning.provision_home(resolved, tmp_path / "h2", data)
    assert second.skills == ["pdf"] and any("fetched last" in w for w in second.warnings)
    assert (tmp_path / "h2" / ".claude" / "skills" / "pdf" / "SKILL.md").exists()
    quiet = await provisioning.provision_home(resolved, tmp_path / "h3", data, refresh=False)
    assert quiet.skills == ["pdf"] and quiet.warnings == []


async def test_git_credentials_are_stored_privately_for_the_store_helper(tmp_path):
    await provisioning.store_git_credentials(tmp_path, ["https://bot:tok@git.example.com\n"])
    assert stat.S_IMODE((tmp_path / ".git-credentials").stat().st_mode) == 0o600
    helper = subprocess.run(["git", "config", "--file", str(tmp_path / ".gitconfig"), "credential.helper"],
                            capture_output=True, text=True, check=True)
    assert helper.stdout.strip() == "store"


async def test_steps_are_reported_with_names_and_paths_but_no_secret_values(tmp_path):
    resolved = provisioning.ResolvedEnvironment(environment_id="x", name="x", variables={"TOKEN": "s3cret"},
                                                start_hooks=[("global", "echo hi")])
    details: dict[str, dict] = {}
    result = await provisioning.provision_home(resolved, tmp_path / "home", tmp_path / "data",
                                               on_step=lambda name, detail: details.__setitem__(name, detail))
    assert list(details) == list(provisioning.STEPS)
    assert details["variables"]["keys"] == ["TOKEN"] and "s3cret" not in json.dumps(details)
    assert details["start_hook"]["path"] == str(result.start_hook_path)
    assert set(result.timings) == set(provisioning.STEPS)


def test_https_credentials_are_stored_url_encoded_for_git_s_store_helper():
    line = provisioning._credential_line("https://git.example.com/acme/app.git", "bot:t/k@n")
    assert line == "https://bot:t%2Fk%40n@git.example.com\n"
    assert provisioning._credential_line("https://h.example/x", "tok") == "https://x-access-token:tok@h.example\n"
    repo = provisioning.ResolvedRepository("r", "acme/app", "https://h.example/x", "main", "tok")
    assert "tok" not in repr(repo).replace("x-access-token", "")


@SQLITE_ONLY
async def test_personal_source_backed_environment_layers_global_source_then_personal(org, tmp_path):
    source_id = await _env(org, system_prompt="Team rules.")
    await _post(org.client, "/v1/environments/global/variables", {"key": "A", "value": "global"})
    await _post(org.client, f"/v1/environments/{source_id}/variables",
                {"key": "A", "value": "team", "personal_override_allowed": True})
    await _post(org.client, f"/v1/environments/{source_id}/variables", {"key": "B", "value": "team"})
    member = await org.add_user("dev@example.com")
    personal = await _post(member, "/v1/environments", {"name": "mine", "scope": "user",
                                                        "source_environment_id": source_id})
    personal_id = personal["environment"]["id"]
    await _post(member, f"/v1/environments/{personal_id}/variables", {"key": "A", "value": "mine"})
    response = await member.patch(f"/v1/environments/{personal_id}", json={"personal_preferences": "Be terse."})
    assert response.status_code == 200, response.text
    async with org.app.state.sessions() as session:
        user = await session.scalar(select(User).where(User.email == "dev@example.com"))
        principal = Principal(user.organization_id, None, user.id, user.role, "dev")
        resolved = await provisioning.resolve_workspace_config(session, org.app.state.box, principal,
                                                               personal_id)
    await member.aclose()
    assert resolved.variables == {"A": "mine", "B": "team"}
    assert resolved.system_prompt == "Team rules.\n\nBe terse."

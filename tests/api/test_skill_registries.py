"""Skill registries and repo skills: discovery from real git repositories, failures reported as `error`."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from sqlalchemy import select

from replicas.store.models import AuditEvent, Organization, Repository, RepositorySet, RepositorySetMember
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
REGISTRIES = "/v1/environments/{environmentId}/skills-registries"
REGISTRY = "/v1/environments/{environmentId}/skills-registries/{skillsRegistryId}"
REPO_SKILLS = "/v1/environments/{environmentId}/repo-skills"

SKILLS_REPO = {
    "README.md": "# Team skills\n",
    "skills/pdf/SKILL.md": "---\nname: PDF tools\ndescription: Fill forms and\n  merge PDFs.\n---\n# PDF\n",
    "skills/pdf/reference.md": "# Reference, not a skill\n",
    "skills/review/code-review/SKILL.md": "# Code review\nNo front matter here.\n",
}

APP_REPO = {
    "README.md": "# App\n",
    "src/main.py": "print('hi')\n",
    ".claude/settings.json": "{}\n",
    ".claude/skills/release-notes/SKILL.md": (
        "---\nname: release-notes\ndescription: Draft release notes.\n---\n"),
    ".claude/agents/reviewer.md": "---\nname: code-reviewer\ndescription: Reviews diffs.\n---\nYou review.\n",
    ".claude/commands/git/commit.md": "---\ndescription: Commit staged work\n---\nCommit it.\n",
    ".claude-plugin/plugin.json": '{"name": "app-kit", "description": "Tools for the app"}\n',
    ".codex/prompts/refactor.md": "Refactor the module.\n",
    ".cursor/rules/python.mdc": "---\ndescription: Python style\nglobs: '*.py'\n---\nUse ruff.\n",
    ".cursor/commands/lint.md": "Run the linter.\n",
    ".agents/skills/triage/SKILL.md": "---\nname: triage\n---\n",
}


def _git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _commit(repo: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(content)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "more")


async def _env(client, name: str = "staging", **fields) -> str:
    response = await client.post(ENVS, json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()["environment"]["id"]


async def _org_id(app, org_name: str) -> uuid.UUID:
    async with app.state.sessions() as session:
        return (await session.scalar(select(Organization).where(Organization.name == org_name))).id


async def _repository(app, org_name: str, url: str, name: str = "acme/app", branch: str = "main",
                      credential: str | None = None) -> str:
    """Insert a repository row directly (registration through the API is tested on its own)."""
    org_id = await _org_id(app, org_name)
    async with app.state.sessions() as session:
        repo = Repository(organization_id=org_id, name=name, url=url, default_branch=branch,
                          credential_encrypted=app.state.box.encrypt(credential) if credential else None)
        session.add(repo)
        await session.commit()
        return str(repo.id)


async def _repository_set(app, org_name: str, repository_ids: list[str]) -> str:
    org_id = await _org_id(app, org_name)
    async with app.state.sessions() as session:
        repo_set = RepositorySet(organization_id=org_id, name="fullstack")
        session.add(repo_set)
        await session.flush()
        for position, repo_id in enumerate(repository_ids):
            session.add(RepositorySetMember(repository_set_id=repo_set.id, repository_id=uuid.UUID(repo_id),
                                            position=position))
        await session.commit()
        return str(repo_set.id)


# --- Skill registries ------------------------------------------------------------------------------

async def test_adding_a_registry_discovers_every_skill_md(client, make_git_repo):
    source = make_git_repo("team-skills", SKILLS_REPO, branch="trunk")
    env_id = await _env(client)
    response = await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": str(source)})
    assert response.status_code == 200
    body = assert_contract(response, REGISTRIES)
    registry = body["registry"]
    assert registry["url"] == source.as_uri() and registry["environment_id"] == env_id
    assert (registry["name"], registry["repository_full_name"], registry["default_branch"]) == (
        "team-skills", "git/team-skills", "trunk")
    assert body["error"] is None
    found = [(s["path"], s["name"], s["description"], s["kind"], s["framework"]) for s in body["repo_skills"]]
    assert found == [
        ("skills/pdf/SKILL.md", "PDF tools", "Fill forms and merge PDFs.", "skill", "agents"),
        ("skills/review/code-review/SKILL.md", "code-review", None, "skill", "agents"),
    ]
    pdf = body["repo_skills"][0]
    assert pdf["id"] == f"{registry['id']}:skills/pdf/SKILL.md" and pdf["repository_id"] == registry["id"]
    assert pdf["branch"] == "trunk" and pdf["html_url"] == f"{source.as_uri()}#trunk:skills/pdf/SKILL.md"


async def test_listing_registries_refreshes_their_skills_from_the_remote(client, make_git_repo):
    source = make_git_repo("skills", SKILLS_REPO)
    env_id = await _env(client)
    added = (await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": source.as_uri()})).json()
    _commit(source, {"deploy/SKILL.md": "---\nname: deploy\ndescription: Ship to prod\n---\n"})
    response = await client.get(f"{ENVS}/{env_id}/skills-registries")
    [registry] = assert_contract(response, REGISTRIES)["registries"]
    assert {k: registry[k] for k in added["registry"]} == added["registry"]
    assert registry["error"] is None
    assert [s["name"] for s in registry["repo_skills"]] == ["deploy", "PDF tools", "code-review"]


async def test_the_same_repository_twice_is_a_conflict(client, make_git_repo):
    source = make_git_repo("skills", SKILLS_REPO)
    env_id = await _env(client)
    first = await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": str(source)})
    assert first.status_code == 200
    for url in (source.as_uri(), source.as_uri() + "/", str(source)):
        response = await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": url})
        assert response.status_code == 409
        body = assert_contract(response, REGISTRIES)
        assert body["error"] == "Skill registry is already added to this environment"
    other = await _env(client, "production")
    elsewhere = await client.post(f"{ENVS}/{other}/skills-registries", json={"url": str(source)})
    assert elsewhere.status_code == 200
    assert len((await client.get(f"{ENVS}/{env_id}/skills-registries")).json()["registries"]) == 1


async def test_unreachable_and_invalid_urls_are_400_and_store_nothing(client, tmp_path):
    env_id = await _env(client)
    missing = await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": str(tmp_path / "nope")})
    assert missing.status_code == 400
    body = assert_contract(missing, REGISTRIES)
    assert body["error"] == "Skill registry repository is not reachable"
    assert "does not appear to be a git repository" in body["details"]
    for bad in ({"url": "ftp://example.com/skills"}, {"url": "relative/skills"}, {"url": ""}, {},
                {"url": "https://user:token@127.0.0.1:9/acme/skills"}, {"url": ["x"]}):
        response = await client.post(f"{ENVS}/{env_id}/skills-registries", json=bad)
        assert response.status_code == 400, bad
        assert "url" in assert_contract(response, REGISTRIES)["details"]
    assert (await client.get(f"{ENVS}/{env_id}/skills-registries")).json() == {"registries": []}


async def test_discovery_failures_are_reported_inside_the_list(client, make_git_repo):
    source = make_git_repo("skills", SKILLS_REPO)
    env_id = await _env(client)
    await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": str(source)})
    # A team environment copied from this one gets its own registry row, never fetched yet.
    copy_id = await _env(client, "copy", source_environment_id=env_id)
    source.rename(source.with_name("moved"))

    listed = await client.get(f"{ENVS}/{env_id}/skills-registries")
    [stale] = assert_contract(listed, REGISTRIES)["registries"]
    assert "Could not refresh git/skills" in stale["error"] and "fetched last" in stale["error"]
    assert [s["name"] for s in stale["repo_skills"]] == ["PDF tools", "code-review"]

    copied = await client.get(f"{ENVS}/{copy_id}/skills-registries")
    [never] = assert_contract(copied, REGISTRIES)["registries"]
    assert never["error"].startswith("Could not fetch git/skills") and never["repo_skills"] == []


async def test_removing_a_registry_deletes_it_and_its_mirror(client, make_git_repo, settings, app):
    source = make_git_repo("skills", SKILLS_REPO)
    env_id = await _env(client)
    added = await client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": str(source)})
    registry = added.json()["registry"]
    mirror = settings.data_dir / "mirrors" / f"skills-registry-{registry['id']}.git"
    assert mirror.is_dir()
    response = await client.delete(f"{ENVS}/{env_id}/skills-registries/{registry['id']}")
    assert assert_contract(response, REGISTRY) == {"success": True}
    assert not mirror.exists()
    assert (await client.get(f"{ENVS}/{env_id}/skills-registries")).json() == {"registries": []}
    for ref in (registry["id"], str(uuid.uuid4()), "not-a-uuid"):
        gone = await client.delete(f"{ENVS}/{env_id}/skills-registries/{ref}")
        assert gone.status_code == 404
        assert assert_contract(gone, REGISTRY)["error"] == "Skill registry not found"
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == registry["id"])
                                      .order_by(AuditEvent.created_at))).all()
    assert [r.action for r in rows] == [
        "environment_skills_registry.created", "environment_skills_registry.deleted"]
    assert rows[0].after["url"] == source.as_uri() and rows[1].before == rows[0].after


async def test_other_organizations_registries_answer_404(make_org, make_git_repo):
    alice, bob = await make_org(), await make_org()
    source = make_git_repo("skills", SKILLS_REPO)
    env_id = await _env(alice.client)
    registry = (await alice.client.post(f"{ENVS}/{env_id}/skills-registries",
                                        json={"url": str(source)})).json()["registry"]
    for call in (bob.client.get(f"{ENVS}/{env_id}/skills-registries"),
                 bob.client.post(f"{ENVS}/{env_id}/skills-registries", json={"url": str(source)}),
                 bob.client.delete(f"{ENVS}/{env_id}/skills-registries/{registry['id']}"),
                 bob.client.delete(f"{ENVS}/global/skills-registries/{registry['id']}")):
        response = await call
        assert response.status_code == 404
        validate_schema(response.json(), "Error")
    assert len((await alice.client.get(f"{ENVS}/{env_id}/skills-registries")).json()["registries"]) == 1


# --- Repo skills -----------------------------------------------------------------------------------

async def test_repo_skills_lists_the_agent_config_of_the_bound_repository(client, org, app, make_git_repo):
    source = make_git_repo("app", APP_REPO)
    repo_id = await _repository(app, org.name, source.as_uri(), credential="x-access-token:ghp_secret")
    env_id = await _env(client, repository_id=repo_id)
    response = await client.get(f"{ENVS}/{env_id}/repo-skills")
    assert response.status_code == 200
    body = assert_contract(response, REPO_SKILLS)
    assert body["error"] is None
    found = [(s["path"], s["framework"], s["kind"], s["name"], s["description"]) for s in body["repo_skills"]]
    assert found == [
        (".agents/skills/triage/SKILL.md", "agents", "skill", "triage", None),
        (".claude-plugin/plugin.json", "claude", "plugin", "app-kit", "Tools for the app"),
        (".claude/agents/reviewer.md", "claude", "agent", "code-reviewer", "Reviews diffs."),
        (".claude/commands/git/commit.md", "claude", "command", "commit", "Commit staged work"),
        (".claude/skills/release-notes/SKILL.md", "claude", "skill", "release-notes", "Draft release notes."),
        (".codex/prompts/refactor.md", "codex", "prompt", "refactor", None),
        (".cursor/commands/lint.md", "cursor", "command", "lint", None),
        (".cursor/rules/python.mdc", "cursor", "prompt", "python", "Python style"),
    ]
    agent = body["repo_skills"][2]
    assert agent == {
        "id": f"{repo_id}:.claude/agents/reviewer.md", "repository_id": repo_id,
        "repository_full_name": "acme/app",
        "branch": "main", "path": ".claude/agents/reviewer.md", "name": "code-reviewer",
        "description": "Reviews diffs.", "framework": "claude", "kind": "agent",
        "html_url": f"{source.as_uri()}#main:.claude/agents/reviewer.md",
    }


async def test_repository_set_lists_every_member_in_order(client, org, app, make_git_repo):
    api = make_git_repo("api", {".claude/agents/dba.md": "# DBA\n"}, branch="trunk")
    web = make_git_repo("web", {".cursor/rules/react.mdc": "---\ndescription: React rules\n---\n"})
    api_id = await _repository(app, org.name, api.as_uri(), name="acme/api", branch="trunk")
    web_id = await _repository(app, org.name, web.as_uri(), name="acme/web")
    set_id = await _repository_set(app, org.name, [web_id, api_id])
    env_id = await _env(client, repository_set_id=set_id)
    body = assert_contract(await client.get(f"{ENVS}/{env_id}/repo-skills"), REPO_SKILLS)
    assert body["error"] is None
    assert [(s["id"], s["repository_full_name"], s["branch"]) for s in body["repo_skills"]] == [
        (f"{web_id}:.cursor/rules/react.mdc", "acme/web", "main"),
        (f"{api_id}:.claude/agents/dba.md", "acme/api", "trunk"),
    ]


async def test_unbound_environments_list_nothing_without_error(client):
    for ref in ("global", await _env(client)):
        response = await client.get(f"{ENVS}/{ref}/repo-skills")
        assert assert_contract(response, REPO_SKILLS) == {"repo_skills": [], "error": None}


async def test_unreachable_repository_or_missing_branch_is_an_error_not_a_5xx(client, org, app, make_git_repo,
                                                                                tmp_path):
    good = make_git_repo("good", {".codex/prompts/fix.md": "Fix it.\n"})
    good_id = await _repository(app, org.name, good.as_uri(), name="acme/good")
    gone_id = await _repository(app, org.name, (tmp_path / "gone").as_uri(), name="acme/gone")
    set_id = await _repository_set(app, org.name, [good_id, gone_id])
    env_id = await _env(client, repository_set_id=set_id)
    body = assert_contract(await client.get(f"{ENVS}/{env_id}/repo-skills"), REPO_SKILLS)
    assert [s["name"] for s in body["repo_skills"]] == ["fix"]
    assert body["error"].startswith("Could not fetch acme/gone")

    branchless_id = await _repository(app, org.name, good.as_uri(), name="acme/branchless", branch="develop")
    bound = await _env(client, "branchless", repository_id=branchless_id)
    body = assert_contract(await client.get(f"{ENVS}/{bound}/repo-skills"), REPO_SKILLS)
    assert body["repo_skills"] == [] and "Could not read branch 'develop' of acme/branchless" in body["error"]


async def test_other_organizations_repo_skills_answer_404(make_org, app, make_git_repo):
    alice, bob = await make_org(), await make_org()
    source = make_git_repo("app", APP_REPO)
    repo_id = await _repository(app, alice.name, source.as_uri())
    env_id = await _env(alice.client, repository_id=repo_id)
    response = await bob.client.get(f"{ENVS}/{env_id}/repo-skills")
    assert response.status_code == 404
    assert assert_contract(response, REPO_SKILLS)["error"] == "Environment not found"
    assert len((await alice.client.get(f"{ENVS}/{env_id}/repo-skills")).json()["repo_skills"]) == 8

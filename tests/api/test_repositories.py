"""Repositories and repository sets: registration against real git remotes, sets, deletion rules, scoping."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from replicas.store.models import AuditEvent, Repository
from tests.conftest import git
from tests.contract import assert_contract, validate_schema

REPOS = "/v1/replica/repositories"
SETS = "/v1/replica/repository-sets"
ENVS = "/v1/environments"
UNREACHABLE = "https://127.0.0.1:9/nothing.git"  # connection refused: nothing leaves loopback


def _error(response) -> dict:
    """Our additions are not in the contract; their errors still use the contract's Error body."""
    body = response.json()
    validate_schema(body, "Error")
    return body


async def _register(client, make_git_repo, name: str, **extra) -> dict:
    path = make_git_repo(name.replace("/", "-"))
    response = await client.post(REPOS, json={"name": name, "url": str(path), **extra})
    assert response.status_code == 201, response.text
    return response.json()["repository"]


async def test_register_local_repository_records_the_remotes_default_branch(client, make_git_repo):
    path = make_git_repo("app", branch="trunk")
    response = await client.post(REPOS, json={"name": "acme/app", "url": str(path)})
    assert response.status_code == 201
    repo = response.json()["repository"]
    validate_schema(repo, "Repository")
    assert repo["name"] == "acme/app" and repo["url"] == path.as_uri() and repo["default_branch"] == "trunk"
    listed = assert_contract(await client.get(REPOS), REPOS)
    assert listed == {"repositories": [repo]}
    by_uri = await client.post(REPOS, json={"name": "acme/app-uri", "url": path.as_uri()})
    assert by_uri.status_code == 201 and by_uri.json()["repository"]["url"] == path.as_uri()


async def test_given_default_branch_must_exist_on_the_remote(client, make_git_repo):
    path = make_git_repo("app")
    git(path, "branch", "develop")
    chosen = await client.post(REPOS, json={"name": "a", "url": str(path), "default_branch": "develop"})
    assert chosen.status_code == 201 and chosen.json()["repository"]["default_branch"] == "develop"
    missing = await client.post(REPOS, json={"name": "b", "url": str(path), "default_branch": "release"})
    assert missing.status_code == 400
    assert "release" in _error(missing)["details"]
    invalid = await client.post(REPOS, json={"name": "c", "url": str(path),
                                             "default_branch": "--upload-pack=x"})
    assert invalid.status_code == 400 and "default_branch" in invalid.json()["details"]
    assert [r["name"] for r in (await client.get(REPOS)).json()["repositories"]] == ["a"]


async def test_unreachable_or_invalid_urls_answer_400_with_gits_reason(client, tmp_path):
    not_a_repo = await client.post(REPOS, json={"name": "x", "url": str(tmp_path / "missing")})
    assert not_a_repo.status_code == 400
    body = _error(not_a_repo)
    assert body["error"] == "Repository is not reachable"
    assert "does not appear to be a git repository" in body["details"]
    refused = await client.post(REPOS, json={"name": "x", "url": UNREACHABLE})
    assert refused.status_code == 400 and "127.0.0.1" in refused.json()["details"]
    with_branch = await client.post(REPOS, json={"name": "x", "url": UNREACHABLE, "default_branch": "main"})
    assert with_branch.status_code == 400 and with_branch.json()["error"] == "Repository is not reachable"
    for url in ("relative/path", "ftp://example.com/repo.git", "", "https://"):
        bad = await client.post(REPOS, json={"name": "x", "url": url})
        assert bad.status_code == 400, url
        assert "url" in bad.json()["details"]
    assert (await client.get(REPOS)).json() == {"repositories": []}


async def test_credentials_are_stored_encrypted_and_never_shown(client, org, app, make_git_repo):
    token = "ghp_" + "S3cretToken" * 3
    repo = await _register(client, make_git_repo, "acme/private", credential=token)
    assert set(repo) == {"id", "name", "url", "default_branch"}
    async with app.state.sessions() as session:
        row = await session.get(Repository, uuid.UUID(repo["id"]))
        events = (await session.scalars(select(AuditEvent).where(AuditEvent.resource_id == repo["id"]))).all()
    assert row.credential_encrypted.startswith("v1:") and token not in row.credential_encrypted
    assert app.state.box.decrypt(row.credential_encrypted) == token
    assert [e.action for e in events] == ["repository.created"]
    assert events[0].after["has_credential"] is True and token not in str(events[0].after)
    assert token not in (await client.get(REPOS)).text


async def test_a_secret_in_the_url_never_reaches_the_response_or_the_store(client):
    response = await client.post(REPOS, json={"name": "x", "url": "https://bob:hunter2secret@127.0.0.1:9/r.git"})
    assert response.status_code == 400 and "hunter2secret" not in response.text
    twice = await client.post(REPOS, json={"name": "x", "credential": "tok",
                                           "url": "https://bob:hunter2secret@127.0.0.1:9/r.git"})
    assert twice.status_code == 400 and "credential" in twice.json()["details"]
    plain_http = await client.post(REPOS, json={"name": "x", "url": "http://127.0.0.1:9/r.git",
                                                "credential": "tok"})
    assert plain_http.status_code == 400 and "http" in plain_http.json()["details"]


async def test_registration_validates_the_name_and_refuses_duplicates(client, make_git_repo):
    path = make_git_repo("app")
    for body, field in (({"url": str(path)}, "name"), ({"name": "   ", "url": str(path)}, "name"),
                        ({"name": "n" * 256, "url": str(path)}, "name"), ({"name": "x"}, "url")):
        response = await client.post(REPOS, json=body)
        assert response.status_code == 400 and field in response.json()["details"], body
    first = await client.post(REPOS, json={"name": "acme/app", "url": str(path)})
    clash = await client.post(REPOS, json={"name": " acme/app ", "url": str(path)})
    assert clash.status_code == 409
    assert _error(clash)["error"] == "A repository with this name already exists"
    assert (await client.get(REPOS)).json()["repositories"] == [first.json()["repository"]]


async def test_repository_sets_keep_their_members_in_the_given_order(client, make_git_repo):
    api = await _register(client, make_git_repo, "acme/api")
    web = await _register(client, make_git_repo, "acme/web")
    await _register(client, make_git_repo, "acme/docs")
    response = await client.post(SETS, json={"name": "fullstack", "description": "API and web",
                                             "repository_ids": [web["id"], api["id"]]})
    assert response.status_code == 201
    created = response.json()["repository_set"]
    validate_schema(created, "RepositorySet")
    assert [r["name"] for r in created["repositories"]] == ["acme/web", "acme/api"]
    listed = assert_contract(await client.get(SETS), SETS)["repository_sets"]
    assert listed == [created] and listed[0]["description"] == "API and web"
    bare = (await client.post(SETS, json={"name": "solo", "repository_ids": [api["id"]]})).json()
    assert bare["repository_set"]["description"] is None


async def test_repository_set_members_must_exist_in_the_callers_organization(make_org, make_git_repo):
    alice, bob = await make_org(), await make_org()
    mine = await _register(alice.client, make_git_repo, "alice/app")
    theirs = await _register(bob.client, make_git_repo, "bob/app")
    unknown = str(uuid.uuid4())
    for ids, needle in (([mine["id"], theirs["id"]], theirs["id"]), ([unknown], unknown),
                        ([], "repository_ids"), (["not-a-uuid"], "repository_ids"),
                        ([mine["id"], mine["id"]], "twice")):
        response = await alice.client.post(SETS, json={"name": "s", "repository_ids": ids})
        assert response.status_code == 400, ids
        assert needle in _error(response)["details"]
    first = await alice.client.post(SETS, json={"name": "s", "repository_ids": [mine["id"]]})
    assert first.status_code == 201
    clash = await alice.client.post(SETS, json={"name": " s ", "repository_ids": [mine["id"]]})
    assert clash.status_code == 409
    assert _error(clash)["error"] == "A repository set with this name already exists"
    assert len((await alice.client.get(SETS)).json()["repository_sets"]) == 1


async def test_deleting_a_bound_repository_or_set_is_409_naming_the_environments(client, make_git_repo):
    repo = await _register(client, make_git_repo, "acme/app")
    repo_set = (await client.post(SETS, json={"name": "s", "repository_ids": [repo["id"]]})).json()
    set_id = repo_set["repository_set"]["id"]
    env = (await client.post(ENVS, json={"name": "staging", "repository_id": repo["id"]})).json()
    env2 = (await client.post(ENVS, json={"name": "multi", "repository_set_id": set_id})).json()
    env, env2 = env["environment"], env2["environment"]
    blocked = await client.delete(f"{REPOS}/{repo['id']}")
    assert blocked.status_code == 409
    assert "staging" in _error(blocked)["details"]
    blocked_set = await client.delete(f"{SETS}/{set_id}")
    assert blocked_set.status_code == 409 and "multi" in blocked_set.json()["details"]
    assert (await client.get(f"{ENVS}/{env['id']}")).json()["environment"]["repository_id"] == repo["id"]
    await client.patch(f"{ENVS}/{env['id']}", json={"repository_id": None})
    await client.delete(f"{ENVS}/{env2['id']}")
    assert (await client.delete(f"{SETS}/{set_id}")).json() == {"success": True}
    assert (await client.get(SETS)).json() == {"repository_sets": []}
    assert (await client.get(REPOS)).json()["repositories"] == [repo]
    assert (await client.delete(f"{REPOS}/{repo['id']}")).json() == {"success": True}
    assert (await client.get(REPOS)).json() == {"repositories": []}


async def test_deleting_a_repository_removes_it_from_its_sets(client, make_git_repo):
    api = await _register(client, make_git_repo, "acme/api")
    web = await _register(client, make_git_repo, "acme/web")
    await client.post(SETS, json={"name": "both", "repository_ids": [api["id"], web["id"]]})
    assert (await client.delete(f"{REPOS}/{api['id']}")).status_code == 200
    [remaining] = (await client.get(SETS)).json()["repository_sets"]
    assert [r["name"] for r in remaining["repositories"]] == ["acme/web"]
    again = await client.delete(f"{REPOS}/{api['id']}")
    assert again.status_code == 404


async def test_other_organizations_repositories_and_sets_answer_404(make_org, make_git_repo):
    alice, bob = await make_org(), await make_org()
    repo = await _register(alice.client, make_git_repo, "alice/app")
    repo_set = (await alice.client.post(SETS, json={"name": "s", "repository_ids": [repo["id"]]})).json()
    assert (await bob.client.get(REPOS)).json() == {"repositories": []}
    assert (await bob.client.get(SETS)).json() == {"repository_sets": []}
    for path in (f"{REPOS}/{repo['id']}", f"{SETS}/{repo_set['repository_set']['id']}",
                 f"{REPOS}/not-a-uuid", f"{SETS}/{uuid.uuid4()}"):
        response = await bob.client.delete(path)
        assert response.status_code == 404, path
        validate_schema(response.json(), "Error")
    assert (await alice.client.get(REPOS)).json()["repositories"] == [repo]
    assert len((await alice.client.get(SETS)).json()["repository_sets"]) == 1


async def test_members_can_list_and_register_repositories(org, make_git_repo):
    member = await org.add_user("dev@example.com")
    repo = await _register(member, make_git_repo, "acme/app")
    assert (await org.client.get(REPOS)).json()["repositories"] == [repo]


async def test_unauthenticated_calls_are_401(anonymous):
    for call in (anonymous.get(REPOS), anonymous.get(SETS),
                 anonymous.post(REPOS, json={"name": "x", "url": "/tmp"})):
        response = await call
        assert response.status_code == 401
    assert_contract(await anonymous.get(REPOS), REPOS)
    assert_contract(await anonymous.get(SETS), SETS)

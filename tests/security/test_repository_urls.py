"""Repository URLs a tenant may not register: the server's own data (however spelt), local repositories when
REPLICAS_ALLOW_LOCAL_REPOSITORIES is off, and git's transport tricks. Each refusal is a 400 in the contract's
error shape that stores nothing, and the secret planted in the server's data never comes back.

Also: git runs without the host's git config and prompts, a refused URL is refused again at fetch time
(symlinks change), and a stored HTTPS credential still reaches the git host (and only as an HTTP header).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from replicas.api.app import create_app
from replicas.services import auth
from replicas.services import git as git_service
from replicas.settings import Settings
from tests.conftest import _client, git
from tests.contract import validate_schema
from tests.security.git_http import start_git_host

REPOS = "/v1/replica/repositories"
SECRET = "planted-secret-" + uuid.uuid4().hex


@pytest.fixture
def victim(settings, make_git_repo) -> Path:
    """Another tenant's mirror in the server's data dir: a real bare repository holding a secret."""
    source = make_git_repo("victim", files={"SECRET.txt": SECRET})
    mirror = settings.data_dir / "mirrors" / "x.git"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    git(source.parent, "clone", "-q", "--bare", str(source), str(mirror))
    assert SECRET in git(mirror, "show", "HEAD:SECRET.txt")  # the attack would work without the rules
    return mirror


async def _refused(client, url: str, *needles: str) -> dict:
    response = await client.post(REPOS, json={"name": f"r-{uuid.uuid4().hex[:6]}", "url": url})
    assert response.status_code == 400, (url, response.text)
    body = response.json()
    validate_schema(body, "Error")
    assert SECRET not in response.text
    for needle in needles:
        assert needle in body["details"], (url, body)
    return body


async def test_a_repository_in_the_data_dir_is_refused_however_it_is_spelt(make_org, settings, victim, tmp_path):
    await make_org()  # the mirror's owner
    intruder = await make_org()
    data = settings.data_dir
    (tmp_path / "link").symlink_to(data / "mirrors")
    (tmp_path / "evil.git").symlink_to(victim)  # git tries `<path>.git` when `<path>` does not exist
    encoded = victim.as_uri().replace("/mirrors/", "/mi%72rors/")
    spellings = [
        str(victim), victim.as_uri(), str(data / "mirrors" / "x"),  # git finds x.git by itself
        str(tmp_path / "link" / "x.git"), (tmp_path / "link" / "x.git").as_uri(),
        f"{tmp_path}/git/../data/mirrors/x.git", f"file://{tmp_path}/git/../data/mirrors/x.git",
        encoded, "file://localhost" + str(victim), str(tmp_path / "evil"), str(data),
    ]
    for url in spellings:
        await _refused(intruder.client, url, "server's own data")
    listed = await intruder.client.get(REPOS)
    assert listed.json() == {"repositories": []} and SECRET not in listed.text


async def test_a_repository_borrowing_objects_from_the_data_dir_is_refused(make_org, victim, tmp_path):
    intruder = await make_org()
    borrower = tmp_path / "borrower.git"
    git(tmp_path, "init", "-q", "--bare", str(borrower))
    (borrower / "objects" / "info" / "alternates").write_text(f"{victim / 'objects'}\n")
    gitfile = tmp_path / "gitfile"
    gitfile.mkdir()
    (gitfile / ".git").write_text(f"gitdir: {victim}\n")
    objects_link = tmp_path / "objects-link.git"
    git(tmp_path, "init", "-q", "--bare", str(objects_link))
    subprocess.run(["rm", "-rf", str(objects_link / "objects")], check=True)
    (objects_link / "objects").symlink_to(victim / "objects")
    for path in (borrower, gitfile, objects_link):
        await _refused(intruder.client, str(path), "server's own data")
    assert (await intruder.client.get(REPOS)).json() == {"repositories": []}


async def test_the_sqlite_database_files_are_protected_too(make_org, settings, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL keeps no file on this host")
    intruder = await make_org()
    database = database_url.split(":///", 1)[1]
    await _refused(intruder.client, database, "server's own data")


async def test_a_legit_local_repository_still_registers_with_the_default(client, make_git_repo):
    path = make_git_repo("legit")
    response = await client.post(REPOS, json={"name": "acme/legit", "url": str(path)})
    assert response.status_code == 201, response.text
    assert response.json()["repository"]["url"] == path.as_uri()


async def test_git_transport_tricks_are_refused_and_never_run(client, tmp_path):
    marker = tmp_path / "marker"
    tricks = [f"ext::sh -c touch% {marker}", f"ext::sh -c 'touch {marker}'", "fd::3", "fd::3,4/x",
              "https::127.0.0.1/x.git", f"--upload-pack=touch {marker}", f"-u touch {marker}",
              f"file:///tmp/x\x00{marker}", "https://127.0.0.1/x\n--upload-pack=x"]
    for url in tricks:
        await _refused(client, url, "url")
    assert not marker.exists()
    assert (await client.get(REPOS)).json() == {"repositories": []}


@pytest.fixture
async def local_off(tmp_path, database_url):
    """The app of a multi-tenant deployment: REPLICAS_ALLOW_LOCAL_REPOSITORIES=false."""
    settings = Settings(data_dir=tmp_path / "data-off", database_url=database_url, cron_enabled=False,
                        allow_local_repositories=False)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_local_paths_and_file_urls_are_refused_when_local_repositories_are_off(local_off, make_git_repo):
    async with local_off.state.sessions() as session:
        org = await auth.get_or_create_organization(session, f"org-{uuid.uuid4().hex[:8]}")
        key = await auth.create_org_key(session, org, name="test")
        await session.commit()
    path = make_git_repo("somerepo", files={"SECRET.txt": SECRET})
    async with _client(local_off, key) as client:
        for url in (str(path), path.as_uri(), f"file://localhost{path}"):
            body = await _refused(client, url, "REPLICAS_ALLOW_LOCAL_REPOSITORIES")
            assert body["error"] == "Invalid repository URL"
        assert (await client.get(REPOS)).json() == {"repositories": []}


async def test_fetch_time_refuses_a_symlink_changed_after_registration(settings, victim, make_git_repo, tmp_path):
    """The check is made again before every clone and fetch: a registered path can be made to point elsewhere."""
    real = make_git_repo("real")
    link = tmp_path / "moving"
    link.symlink_to(real)
    url = link.as_uri()  # a file:// URL keeps the path as given, so the link is followed at each fetch
    mirror = await git_service.ensure_mirror(settings.data_dir, "moving", url)
    assert (mirror / "HEAD").exists()
    link.unlink()
    link.symlink_to(victim)
    with pytest.raises(git_service.GitError, match="refused") as refused:
        await git_service.ensure_mirror(settings.data_dir, "moving", url)
    assert SECRET not in str(refused.value)
    with pytest.raises(git_service.GitError, match="refused"):
        await git_service.ensure_mirror(settings.data_dir, "fresh", url)
    assert not git_service.mirror_path(settings.data_dir, "fresh").exists()
    with pytest.raises(git_service.GitError, match="REPLICAS_ALLOW_LOCAL_REPOSITORIES"):
        await git_service.ensure_mirror(settings.data_dir, "off", real.as_uri(), allow_local=False)


async def test_git_itself_refuses_file_and_ext_transports_outside_what_is_allowed(make_git_repo, tmp_path):
    path = make_git_repo("plain")
    with pytest.raises(git_service.GitError, match="transport 'file' not allowed"):
        await git_service.run_git("ls-remote", "--", str(path), env=git_service.git_env(allow_local=False))
    marker = tmp_path / "marker"
    with pytest.raises(git_service.GitError, match="transport 'ext' not allowed"):
        await git_service.run_git("ls-remote", "--", f"ext::sh -c touch% {marker}", env=git_service.git_env())
    assert not marker.exists()


async def test_the_hosts_git_config_and_environment_never_reach_a_tenants_fetch(
        client, make_git_repo, tmp_path, monkeypatch):
    """An `insteadOf` in the server user's ~/.gitconfig (or a GIT_CONFIG_* variable of its environment) would
    rewrite a tenant's URL to a host path; git must not read either."""
    secret_repo = make_git_repo("host-only", files={"SECRET.txt": SECRET})
    home = tmp_path / "server-home"
    home.mkdir()
    (home / ".gitconfig").write_text(f'[url "{secret_repo.as_uri()}"]\n\tinsteadOf = https://127.0.0.1:9/x.git\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{secret_repo.as_uri()}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "https://127.0.0.1:9/x.git")
    plain = subprocess.run(["git", "ls-remote", "https://127.0.0.1:9/x.git"], capture_output=True, text=True)
    assert plain.returncode == 0  # the host's config would have served the tenant a host repository
    response = await client.post(REPOS, json={"name": "x", "url": "https://127.0.0.1:9/x.git"})
    assert response.status_code == 400 and SECRET not in response.text
    env = git_service.git_env()
    assert env["HOME"] != str(home) and env["GIT_CONFIG_GLOBAL"] == os.devnull and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == "" and "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    assert not any("127.0.0.1:9" in value for value in env.values())


@pytest.fixture
def git_host(tmp_path, make_git_repo, monkeypatch):
    """A password-protected HTTPS git host on loopback serving `app.git`; its CA trusted via GIT_SSL_CAINFO."""
    root = tmp_path / "served"
    root.mkdir()
    source = make_git_repo("served-app", branch="trunk")
    git(root, "clone", "-q", "--bare", str(source), str(root / "app.git"))
    password = "tok-" + uuid.uuid4().hex
    host, server = start_git_host(root, tmp_path, "alice", password)
    monkeypatch.setenv("GIT_SSL_CAINFO", str(host.cert))
    yield host
    server.shutdown()


async def test_a_stored_https_credential_still_reaches_the_git_host_as_a_header(client, git_host, settings):
    denied = await client.post(REPOS, json={"name": "no-credential", "url": git_host.url("app.git")})
    assert denied.status_code == 400 and denied.json()["error"] == "Repository is not reachable"
    credential = f"alice:{git_host.password}"
    response = await client.post(REPOS, json={"name": "acme/app", "url": git_host.url("app.git"),
                                              "credential": credential})
    assert response.status_code == 201, response.text
    assert response.json()["repository"]["default_branch"] == "trunk"
    assert git_host.password not in response.text
    repo_id = response.json()["repository"]["id"]
    mirror = await git_service.ensure_mirror(settings.data_dir, repo_id, git_host.url("app.git"), credential)
    assert git(mirror, "rev-parse", "--abbrev-ref", "HEAD").strip() == "trunk"
    assert git_host.password not in (mirror / "config").read_text()


async def test_skill_registries_follow_the_repository_rules(make_org, settings, victim, local_off, make_git_repo):
    """A skills registry is a git URL the server fetches too: never the data dir, no local path when local
    repositories are off."""
    intruder = await make_org()
    for url in (str(victim), victim.as_uri()):
        response = await intruder.client.post("/v1/environments/global/skills-registries", json={"url": url})
        assert response.status_code == 400, response.text
        assert "server's own data" in response.json()["details"] and SECRET not in response.text
    async with local_off.state.sessions() as session:
        org = await auth.get_or_create_organization(session, f"org-{uuid.uuid4().hex[:8]}")
        key = await auth.create_org_key(session, org, name="test")
        await session.commit()
    path = make_git_repo("skills", files={"skills/x/SKILL.md": "---\nname: x\n---\n"})
    async with _client(local_off, key) as client:
        response = await client.post("/v1/environments/global/skills-registries", json={"url": str(path)})
        assert response.status_code == 400, response.text
        assert "REPLICAS_ALLOW_LOCAL_REPOSITORIES" in response.json()["details"]

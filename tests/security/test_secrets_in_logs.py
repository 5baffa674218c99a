"""No secret in any log or audit snapshot: a full scenario through the API with planted values, every
`replicas*` logger captured at DEBUG, the log files under the data dir, the audit log endpoint and the
audit table, all searched for each planted value.

Planted: environment variable values, an environment file's content, an MCP config's token (stdio env and
http header), a repository credential (used for real against a loopback HTTPS git host, and once inside a URL),
an integration's webhook secret, a provider API key, the organization's key and a personal API key.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from replicas.services import provisioning
from replicas.services.principal import Principal
from replicas.store.models import AuditEvent, Organization
from tests.conftest import git
from tests.security.git_http import start_git_host


def _planted(kind: str) -> str:
    return f"planted-{kind}-{uuid.uuid4().hex}"


@pytest.fixture
def git_host(tmp_path, make_git_repo, monkeypatch):
    root = tmp_path / "served"
    root.mkdir()
    git(root, "clone", "-q", "--bare", str(make_git_repo("served-app")), str(root / "app.git"))
    host, server = start_git_host(root, tmp_path, "alice", _planted("repo-credential"))
    monkeypatch.setenv("GIT_SSL_CAINFO", str(host.cert))
    yield host
    server.shutdown()


async def _ok(response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def test_a_full_scenario_leaves_no_planted_value_in_logs_or_audit(org, app, settings, git_host, tmp_path,
                                                                         caplog):
    caplog.set_level(logging.DEBUG)  # every logger, not only replicas*: a driver or a library may log values too
    planted = {kind: _planted(kind) for kind in ("variable", "file", "mcp-env", "mcp-header", "webhook-secret",
                                                 "provider-key", "url-password")}
    planted["repo-credential"] = git_host.password
    planted["org-key"] = org.key
    client = org.client

    repo = (await _ok(await client.post("/v1/replica/repositories", json={
        "name": "acme/app", "url": git_host.url("app.git"), "credential": f"alice:{git_host.password}"})))
    env_id = (await _ok(await client.post("/v1/environments", json={
        "name": "scenario", "repository_id": repo["repository"]["id"]})))["environment"]["id"]
    base = f"/v1/environments/{env_id}"
    await _ok(await client.post(f"{base}/variables", json={"key": "API_TOKEN", "value": planted["variable"]}))
    await _ok(await client.post(f"{base}/files", json={"name": "npmrc", "path": "~/.npmrc",
                                                       "content": f"//registry/:_authToken={planted['file']}"}))
    await _ok(await client.post(f"{base}/mcps", json={"name": "local", "transport": "stdio", "config": {
        "command": "server", "env": {"TOKEN": planted["mcp-env"]}}}))
    await _ok(await client.post(f"{base}/mcps", json={"name": "remote", "transport": "http", "config": {
        "url": "https://mcp.example.invalid/", "headers": {"Authorization": f"Bearer {planted['mcp-header']}"}}}))
    await _ok(await client.put("/v1/integrations/github", json={"secret": planted["webhook-secret"]}), 200)
    await _ok(await client.post("/v1/opencode-go/credentials", json={"api_key": planted["provider-key"]}), 200)
    member = await org.add_user(f"dev-{uuid.uuid4().hex[:6]}@example.com", role="admin")
    planted["api-key"] = (await _ok(await member.post("/v1/user/api-keys", json={"name": "ci"})))["api_key"]["key"]
    await member.aclose()
    # A credential inside a URL, at an address that refuses the connection: git's error must not echo it.
    failed = await client.post("/v1/replica/repositories", json={
        "name": "leaky", "url": f"https://bob:{planted['url-password']}@127.0.0.1:9/x.git"})
    assert failed.status_code == 400 and planted["url-password"] not in failed.text

    # Provisioning: the repository is fetched with its credential, the files and configs are written.
    async with app.state.sessions() as session:
        org_id = await session.scalar(select(Organization.id).where(Organization.name == org.name))
        resolved = await provisioning.resolve_workspace_config(session, app.state.box, Principal.system(org_id),
                                                               env_id)
    home = tmp_path / "home"
    steps: list[dict] = []
    result = await provisioning.provision_home(resolved, home, settings.data_dir,
                                               on_step=lambda name, detail: steps.append(detail))
    assert [r.name for r in result.repos] == ["acme/app"]
    assert planted["file"] in (home / ".npmrc").read_text()  # the value did arrive where it belongs

    audit_pages = [await _ok(await client.get("/v1/audit-log", params={"limit": 100}), 200)]
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(AuditEvent))).all()
    audit_rows = json.dumps([[r.action, r.before, r.after, r.actor_name] for r in rows])
    assert len(rows) >= 7
    log_files = "".join(p.read_text(errors="replace") for p in Path(settings.data_dir).rglob("*.log"))
    haystacks = {
        "logs": "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "log files": log_files,
        "audit endpoint": json.dumps(audit_pages),
        "audit table": audit_rows,
        "provisioning steps": json.dumps(steps, default=str) + json.dumps(result.warnings),
    }
    assert caplog.records, "nothing was logged: the capture is not looking at the right loggers"
    for kind, value in planted.items():
        for where, text in haystacks.items():
            assert value not in text, f"the planted {kind} appears in the {where}"
    # The credential reached the git host as the one header it expects, and nowhere in the mirror's config.
    assert any(auth and auth.startswith("Basic ") for auth in git_host.authorizations)
    mirror = Path(settings.data_dir) / "mirrors" / f"{repo['repository']['id']}.git"
    assert git_host.password not in (mirror / "config").read_text()

"""The team loop signed in as a GitHub App: the organization stores the App's id and private key (no token), the
server signs its JWT and buys installation tokens from GitHub (the stand-in checks the JWT's RS256 signature
with the App's public key, and every other call's token, as GitHub does), and a workspace pushes and opens its
pull request with a token the control plane mints for that one repository, asked for in agent mode over real
HTTP (the app is served on a loopback port, which the workspace gets as REPLICAS_API_URL)."""

from __future__ import annotations

import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from replicas.services.integration_credentials import load
from replicas.services.providers import ProviderError, client_of, github_app
from replicas.store.models import Organization, Workspace
from replicas.testing import Text
from tests.automations.test_receivers import configure, github, post
from tests.integrations.conftest import (
    BRANCH,
    FAST,
    comments_on,
    github_workspaces,
    open_pull_request,
    payload,
)
from tests.live_server import loopback_socket, serving
from tests.replicas.conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.replica_settings(**FAST),
              pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

APP_ID = "424242"
INSTALLATION = 5150
WORKSPACE_SCOPE = {"contents": "write", "pull_requests": "write"}


@pytest.fixture
def api_socket():
    sock = loopback_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(settings, api_socket):
    """The Replica API settings, with the public URL the app is served on (what workspaces call back)."""
    return settings.model_copy(update={"public_url": f"http://127.0.0.1:{api_socket.getsockname()[1]}"})


@pytest.fixture
async def served(app, api_socket):
    async with serving(app, api_socket) as url:
        yield url


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def github_as_app(stand_in, app_key):
    """The stand-in in GitHub App mode, with the App installed on acme/shop; no token kept from another test."""
    stand_in.app_id, stand_in.app_public_key = APP_ID, app_key.public_key()
    stand_in.installations["acme/shop"] = INSTALLATION
    github_app.TOKENS.clear()
    yield stand_in
    github_app.TOKENS.clear()


async def _org_id(app, org) -> uuid.UUID:
    async with app.state.sessions() as session:
        return await session.scalar(select(Organization.id).where(Organization.name == org.name))


async def connect_app(client, stand_in, app_key, **options) -> str:
    path = await configure(client, "github")
    response = await client.put("/v1/integrations/github", json={
        "app_id": int(APP_ID), "private_key": pem(app_key), "api_url": f"{stand_in.url}/github", **options})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["private_key_configured"] is True and body["token_configured"] is False
    assert body["app_id"] == APP_ID and body["installation_id"] == options.get("installation_id")
    assert "private_key" not in body and "BEGIN" not in response.text
    return path


async def test_the_loop_answers_as_the_app_and_the_workspace_pushes_with_a_token_for_its_repository_only(
        app, client, anonymous, replica_env, model, github_as_app, app_key, served):
    stand_in = github_as_app
    # No GitHub variable in the environment: the workspace's token comes from the App, through the control plane.
    path = await connect_app(client, stand_in, app_key, allowed_logins=["octocat"], bot_login="replicas-bot[bot]")
    model.add_turn(open_pull_request(), Text("Done: checkout() now returns 400."))

    mention = payload("github_issue_comment_mention")
    assert (await post(anonymous, path, github(mention, event="issue_comment", delivery="d-app"))).status_code == 202
    [workspace] = await wait_for(lambda: github_workspaces(app), what="the github workspace")

    [comment] = await comments_on(stand_in, 12)
    assert "Pull request: https://github.com/acme/shop/pull/7" in comment["body"]
    # The engine opened the pull request with a token for acme/shop alone, contents and pull requests.
    [opened] = stand_in.made("POST", r"/github/repos/acme/shop/pulls$")
    assert opened.body["head"] == BRANCH
    scoped = stand_in.minted[opened.headers["Authorization"].removeprefix("Bearer ")]
    assert scoped["installation"] == INSTALLATION
    assert scoped["repositories"] == ["shop"] and scoped["permissions"] == WORKSPACE_SCOPE
    # The comment went with the installation's own token (the loop reads and comments on any repository
    # the App is installed on), found through the repository's installation and minted once.
    [posted] = stand_in.made("POST", r"/github/repos/acme/shop/issues/12/comments$")
    loop = stand_in.minted[posted.headers["Authorization"].removeprefix("Bearer ")]
    assert loop["installation"] == INSTALLATION and loop["repositories"] is None
    assert len(stand_in.made("GET", r"/github/repos/acme/shop/installation$")) == 1
    minted = stand_in.made("POST", rf"/github/app/installations/{INSTALLATION}/access_tokens$")
    assert len(minted) == 2  # one for the loop, one for the workspace
    for call in minted:  # each with the App's JWT (the stand-in checked its signature and claims)
        assert call.headers["Authorization"].startswith("Bearer ey") and call.headers["Authorization"].count(".") == 2
    # Nothing long-lived reached the workspace: its env holds no GitHub token at all.
    async with app.state.sessions() as session:
        row = await session.get(Workspace, workspace.id)
    assert not any(token in str(row.snapshot) + str(row.config) for token in stand_in.minted)


async def test_installation_tokens_are_kept_until_near_expiry_and_github_refusals_are_clear(
        app, org, client, settings, github_as_app, app_key):
    stand_in = github_as_app
    await connect_app(client, stand_in, app_key)
    async with app.state.sessions() as session:
        credential = await load(session, app.state.box, await _org_id(app, org), "github")
    assert credential.github_app and credential.token is None

    first = await github_app.installation_token(credential, settings, "acme/shop")
    assert await github_app.installation_token(credential, settings, "acme/shop") == first
    assert len(stand_in.minted) == 1

    # A token that expires within five minutes is replaced before it is used again.
    github_app.TOKENS.clear()
    stand_in.token_lifetime = 200
    short = await github_app.installation_token(credential, settings, "acme/shop")
    renewed = await github_app.installation_token(credential, settings, "acme/shop")
    assert short != renewed and len(stand_in.minted) == 3

    # A kept token GitHub revoked before it expired (the App reinstalled): refused once (401), then a new one.
    github_app.TOKENS.clear()
    stand_in.token_lifetime = 3600
    stand_in.pulls[7] = {"number": 7, "state": "open", "head": {"ref": "x"}}
    async with client_of(credential, settings, "acme/shop") as github:
        await github.pull_request("acme/shop", 7)
        revoked = github.token
        del stand_in.minted[revoked]
        assert (await github.pull_request("acme/shop", 7))["number"] == 7
        assert github.token != revoked and github.token in stand_in.minted
    refusals = [r for r in stand_in.made("GET", r"/pulls/7$") if r.headers["Authorization"] == f"Bearer {revoked}"]
    assert len(refusals) == 2  # the read that worked, and the one refused before the new token

    # A repository the App is not installed on, and a JWT signed with another key: GitHub's refusals, as such.
    with pytest.raises(ProviderError) as missing:
        await github_app.installation_token(credential, settings, "acme/other")
    assert missing.value.status == 404
    stranger = credential.__class__(**{**credential.__dict__, "private_key": pem(
        rsa.generate_private_key(public_exponent=65537, key_size=2048))})
    github_app.TOKENS.clear()
    with pytest.raises(ProviderError) as refused:
        await github_app.installation_token(stranger, settings, "acme/shop")
    assert refused.value.status == 401 and "could not be decoded" in refused.value.detail


async def test_a_bad_private_key_is_refused_and_changes_nothing(app, client, github_as_app, app_key):
    await connect_app(client, github_as_app, app_key, installation_id=str(INSTALLATION))
    for bad, why in (("not a key", "not a PEM private key"), ("", "PEM private key"),
                     (pem(app_key).replace("PRIVATE KEY", "PUBLIC KEY"), "not a PEM private key")):
        response = await client.put("/v1/integrations/github", json={"private_key": bad})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "Invalid request" and why in response.json()["details"]
    for field, value in (("app_id", "12a"), ("installation_id", True), ("app_id", -3)):
        response = await client.put("/v1/integrations/github", json={field: value})
        assert response.status_code == 400 and field in response.json()["details"], response.text
    response = await client.put("/v1/integrations/slack", json={"secret": "s", "private_key": pem(app_key)})
    assert response.status_code == 400 and "not an option of slack" in response.json()["details"]
    [view] = [i for i in (await client.get("/v1/integrations")).json()["integrations"] if i["provider"] == "github"]
    assert view["private_key_configured"] is True and view["app_id"] == APP_ID
    assert view["installation_id"] == str(INSTALLATION)
    # Cleared with null: the GitHub integration then has no App.
    response = await client.put("/v1/integrations/github", json={"private_key": None, "app_id": None})
    assert response.status_code == 200 and response.json()["private_key_configured"] is False


async def test_a_workspace_gets_a_token_only_for_its_own_repositories_in_agent_mode(
        app, org, client, anonymous, github_as_app, app_key):
    org_id = await _org_id(app, org)
    async with app.state.sessions() as session:
        secret = f"engine-{uuid.uuid4().hex}"
        row = Workspace(organization_id=org_id, name="ws", status="active",
                        engine_secret_encrypted=app.state.box.encrypt(secret),
                        repositories=[{"id": "r1", "name": "shop", "url": "https://github.com/acme/shop.git"}])
        session.add(row)
        await session.commit()
    agent = {"Authorization": f"Bearer {secret}", "X-Workspace-Id": str(row.id)}

    async def ask(repository, headers=agent):
        return await anonymous.post("/v1/integrations/github/token", json={"repository": repository},
                                    headers=headers)

    # No GitHub App yet: 404, and the engine pushes as before.
    response = await ask("acme/shop")
    assert response.status_code == 404 and response.json()["error"] == "No GitHub App is configured"
    await connect_app(client, github_as_app, app_key)
    response = await ask("acme/shop")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["api_url"] == f"{github_as_app.url}/github"
    grant = github_as_app.minted[body["token"]]
    assert grant["repositories"] == ["shop"] and grant["permissions"] == WORKSPACE_SCOPE
    assert body["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(grant["expires"]))
    # Another repository of the organization, a malformed name, a wrong secret, an org key: refused.
    response = await ask("acme/billing")
    assert response.status_code == 403 and "not a repository of workspace" in response.json()["details"]
    # The same path on another host is another repository.
    async with app.state.sessions() as session:
        other = Workspace(organization_id=org_id, name="ws2", status="active",
                          engine_secret_encrypted=app.state.box.encrypt(secret),
                          repositories=[{"id": "r2", "name": "shop", "url": "https://gitlab.com/acme/shop.git"}])
        session.add(other)
        await session.commit()
    assert (await ask("acme/shop", {**agent, "X-Workspace-Id": str(other.id)})).status_code == 403
    assert (await ask("not a repo")).status_code == 400 and (await ask("acme/..")).status_code == 400
    assert (await ask("acme/shop", {**agent, "Authorization": "Bearer nope"})).status_code == 401
    assert (await client.post("/v1/integrations/github/token", json={"repository": "acme/shop"})).status_code == 401

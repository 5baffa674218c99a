"""The team loop's credentials and what the receivers refuse, on SQLite and PostgreSQL, with no workspace
started: the token and options stored through `PUT /v1/integrations/{provider}`, a forged delivery, a login not
on the allow-list, and a repository no environment is bound to (answered on the issue)."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

from sqlalchemy import func, select

from replicas.store.models import AuditEvent, Workspace
from replicas.store.team_models import IntegrationCredential, TeamMessage, TeamThread
from tests.automations.test_receivers import github, post
from tests.integrations.conftest import connect
from tests.replicas.conftest import wait_for

PAYLOADS = Path(__file__).parent / "payloads"


def mention() -> dict:
    return json.loads((PAYLOADS / "github_issue_comment_mention.json").read_text())


async def counts(app) -> tuple[int, int, int]:
    async with app.state.sessions() as session:
        return tuple([await session.scalar(select(func.count()).select_from(model)) for model in
                      (TeamThread, TeamMessage, Workspace)])


async def test_the_token_and_options_are_stored_encrypted_and_never_shown(app, client, org, stand_in):
    env = (await client.post("/v1/environments", json={"name": "shop"})).json()["environment"]["id"]
    refused = await client.put("/v1/integrations/slack", json={"token": "xoxb-1"})
    assert refused.status_code == 400 and "secret" in refused.json()["details"]
    await connect(client, stand_in, "slack", bot_user_id="U0BOT00001", default_environment_id=env)
    await client.put("/v1/integrations/slack", json={"token": "xoxb-rotated"})  # the rest is kept
    [listed] = (await client.get("/v1/integrations")).json()["integrations"]
    assert listed["token_configured"] is True and listed["bot_user_id"] == "U0BOT00001"
    assert listed["default_environment_id"] == env and listed["api_url"] == f"{stand_in.url}/slack"
    assert "xoxb" not in json.dumps(listed)
    async with app.state.sessions() as session:
        [row] = [row for row in await session.scalars(select(IntegrationCredential))  # the database is shared
                 if (row.options or {}).get("api_url") == f"{stand_in.url}/slack"]
        audited = [a for a, in await session.execute(select(AuditEvent.after).where(
            AuditEvent.resource_type == "integration"))]
    assert "xoxb" not in row.token_encrypted and "xoxb" not in json.dumps(audited)
    assert app.state.box.decrypt(row.token_encrypted) == "xoxb-rotated"
    assert {"provider": "slack", "changed": ["token"]} in audited

    cleared = await client.put("/v1/integrations/slack", json={"token": None, "default_environment_id": None})
    assert cleared.json()["token_configured"] is False and cleared.json()["default_environment_id"] is None
    for body in ({"allowed_logins": ["x"]}, {"default_environment_id": str(uuid.uuid4())},
                 {"api_url": "http://169.254.169.254/latest"}, {"bot_user_id": ""}):
        response = await client.put("/v1/integrations/slack", json=body)
        assert response.status_code == 400, (body, response.text)
    assert (await client.put("/v1/integrations/sentry", json={"secret": "s", "token": "t"})).status_code == 400
    member = await org.add_user("dev@example.com", role="member")
    assert (await member.put("/v1/integrations/slack", json={"token": "x"})).status_code == 403
    assert (await client.delete("/v1/integrations/slack")).status_code == 200
    async with app.state.sessions() as session:
        assert [row for row in await session.scalars(select(IntegrationCredential))
                if (row.options or {}).get("api_url") == f"{stand_in.url}/slack"] == []


async def test_a_forged_or_unlisted_mention_starts_nothing(app, client, anonymous, stand_in, make_git_repo):
    origin = make_git_repo("shop")
    repo = (await client.post("/v1/replica/repositories", json={"name": "acme/shop", "url": str(origin)})).json()
    await client.post("/v1/environments", json={"name": "shop", "repository_id": repo["repository"]["id"]})
    path = await connect(client, stand_in, "github", allowed_logins=["someone-else"])
    before = await counts(app)
    forged = await post(anonymous, path, github(mention(), event="issue_comment", secret="guessed"))
    assert forged.status_code == 401
    unlisted = await post(anonymous, path, github(mention(), event="issue_comment"))
    assert unlisted.status_code == 202
    bot = copy.deepcopy(mention())
    bot["comment"]["user"] = bot["sender"] = {"login": "someone-else", "id": 2, "type": "Bot"}
    assert (await post(anonymous, path, github(bot, event="issue_comment"))).status_code == 202
    assert await counts(app) == before and stand_in.requests == []


async def test_a_repository_without_an_environment_is_answered_on_the_issue(app, client, anonymous, stand_in):
    path = await connect(client, stand_in, "github", allowed_logins=["octocat"])
    response = await post(anonymous, path, github(mention(), event="issue_comment"))
    assert response.status_code == 202

    async def answered():
        return stand_in.made("POST", r"/github/repos/acme/shop/issues/12/comments$")

    [comment] = await wait_for(answered, timeout=10, what="the answer on the issue")
    assert comment.body["body"] == "I can't start a workspace for this: no environment is bound to acme/shop."
    assert comment.headers["Authorization"] == "Bearer ghs_installation_token"
    org_id = uuid.UUID(path.rsplit("/", 1)[1])
    async with app.state.sessions() as session:
        assert list(await session.scalars(select(Workspace.id).where(Workspace.organization_id == org_id))) == []

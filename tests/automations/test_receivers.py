"""The inbound provider receivers: recorded example payloads (GitHub, GitLab, Slack, Sentry, Linear), signed
here with a test secret the way each provider signs, posted to /v1/integrations/{provider}/webhook/{org}.

The filter and verification tests run on SQLite and PostgreSQL; their automations debounce for an hour,
so a fired event is a recorded `pending` execution and no workspace starts. The tests marked slow start
real workspaces (real Claude Code behind the scripted model) through the same path a live event takes."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from replicas.api.routers import integrations as integrations_router
from replicas.services import integrations as service
from replicas.store.models import AuditEvent, AutomationExecution, Workspace
from replicas.testing.script import Text
from tests.automations.conftest import automation_body, plain_environment
from tests.replicas.conftest import row_of, wait_for

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "It's a Secret to Everybody"
EXECUTIONS = "/v1/automations/{id}/executions"
HOUR = 3600


def recorded(name: str) -> dict:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


@pytest.fixture
async def receivers(wired):
    if not any(getattr(r, "path", None) == "/v1/integrations" for r in wired.routes):
        wired.include_router(integrations_router.router)
    return wired


async def configure(client, provider: str, secret: str = SECRET) -> str:
    """Set the org's secret; returns the receiver's path (from the webhook URL the API hands out)."""
    response = await client.put(f"/v1/integrations/{provider}", json={"secret": secret})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == provider and body["configured"] is True and "secret" not in body
    return urlparse(body["webhook_url"]).path


# -- how each provider signs a delivery ---------------------------------------------------------------


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def github(payload: dict, event: str = "pull_request", delivery: str | None = None, secret: str = SECRET):
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "X-GitHub-Event": event,
                  "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                  "X-Hub-Signature-256": "sha256=" + _hex(secret, body), "User-Agent": "GitHub-Hookshot/044aadd"}


def gitlab(payload: dict, token: str = SECRET, delivery: str | None = None):
    return json.dumps(payload).encode(), {"Content-Type": "application/json", "X-Gitlab-Event": "Merge Request Hook",
                                          "X-Gitlab-Token": token, "X-Gitlab-Event-UUID": delivery or str(uuid.uuid4())}


def slack(payload: dict, secret: str = SECRET, at: int | None = None):
    body, stamp = json.dumps(payload).encode(), str(int(time.time()) if at is None else at)
    return body, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
                  "X-Slack-Signature": "v0=" + _hex(secret, f"v0:{stamp}:".encode() + body)}


def sentry(payload: dict, resource: str, secret: str = SECRET, delivery: str | None = None):
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "Sentry-Hook-Resource": resource,
                  "Sentry-Hook-Timestamp": str(int(time.time())), "Request-ID": delivery or str(uuid.uuid4()),
                  "Sentry-Hook-Signature": _hex(secret, body)}


def linear(payload: dict, secret: str = SECRET):
    payload = {**payload, "webhookTimestamp": int(time.time() * 1000)}
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "Linear-Event": payload["type"],
                  "Linear-Delivery": str(uuid.uuid4()), "Linear-Signature": _hex(secret, body)}


async def post(anonymous, path: str, signed: tuple[bytes, dict]):
    body, headers = signed
    return await anonymous.post(path, content=body, headers=headers)


async def automation(client, env: str, name: str, triggers: list[dict], **fields) -> dict:
    response = await client.post("/v1/automations", json=automation_body(
        env, name=name, prompt=fields.pop("prompt", f"Handle the {name} event."), triggers=triggers, **fields))
    assert response.status_code == 201, response.text
    return response.json()["automation"]


async def executions(client, automation_id: str) -> list[dict]:
    response = await client.get(EXECUTIONS.format(id=automation_id), params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["executions"]


async def stored_prompt(app, execution_id: str) -> str:
    async with app.state.sessions() as session:
        row = await session.get(AutomationExecution, uuid.UUID(execution_id))
    return row.prompt


async def register(client, make_git_repo, name: str) -> str:
    origin = make_git_repo(name.replace("/", "-"))
    response = await client.post("/v1/replica/repositories", json={"name": name, "url": str(origin)})
    assert response.status_code in (200, 201), response.text
    return response.json()["repository"]["id"]


# -- secrets ------------------------------------------------------------------------------------------


async def test_admins_configure_list_and_delete_secrets_audited(receivers, client, org):
    path = await configure(client, "github")
    assert path.startswith("/v1/integrations/github/webhook/")
    await configure(client, "slack", "first")
    await configure(client, "slack", "second")  # replaced
    listed = (await client.get("/v1/integrations")).json()["integrations"]
    assert [i["provider"] for i in listed] == ["github", "slack"] and all("secret" not in i for i in listed)

    member = await org.add_user("dev@example.com", role="member")
    refused = await member.put("/v1/integrations/gitlab", json={"secret": "x"})
    assert refused.status_code == 403 and refused.json()["error"] == "Admin access required"
    assert (await member.get("/v1/integrations")).status_code == 200
    assert (await client.put("/v1/integrations/jira", json={"secret": "x"})).status_code == 404
    assert (await client.put("/v1/integrations/github", json={"secret": ""})).status_code == 400

    assert (await client.delete("/v1/integrations/slack")).json() == {"success": True}
    assert (await client.delete("/v1/integrations/slack")).status_code == 404
    async with receivers.state.sessions() as session:
        audited = list(await session.execute(select(AuditEvent.action, AuditEvent.after, AuditEvent.before)
                                             .where(AuditEvent.resource_type == "integration",
                                                    AuditEvent.organization_id == uuid.UUID(path.rsplit("/", 1)[1]))
                                             .order_by(AuditEvent.created_at)))
    assert [a for a, _, _ in audited] == ["integration.configured", "integration.configured",
                                          "integration.updated", "integration.deleted"]
    assert "first" not in json.dumps([list(r) for r in audited]) and "second" not in json.dumps(
        [list(r) for r in audited])


async def test_unknown_organization_or_unconfigured_provider_is_404(receivers, client, anonymous):
    path = await configure(client, "github")
    org_id = path.rsplit("/", 1)[1]
    payload = recorded("github_pull_request_opened")
    assert (await post(anonymous, f"/v1/integrations/github/webhook/{uuid.uuid4()}", github(payload))
            ).status_code == 404
    assert (await post(anonymous, "/v1/integrations/github/webhook/not-a-uuid", github(payload))).status_code == 404
    assert (await post(anonymous, f"/v1/integrations/gitlab/webhook/{org_id}",
                       gitlab(recorded("gitlab_merge_request_open")))).status_code == 404


# -- verification failures: one per scheme ------------------------------------------------------------


async def _refused(response, app) -> None:
    """401, and nothing recorded for the organization the delivery was addressed to."""
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "Invalid signature"
    org_id = uuid.UUID(response.request.url.path.rsplit("/", 1)[1])
    async with app.state.sessions() as session:
        assert list(await session.scalars(select(AutomationExecution.id).where(
            AutomationExecution.organization_id == org_id))) == []


async def test_github_refuses_a_bad_or_missing_signature(receivers, client, anonymous, caplog):
    env = await plain_environment(client)
    await automation(client, env, "pr-opened", [{"type": "github", "config": {"event": "pull_request.opened"}}],
                     debounce_seconds=HOUR)
    path = await configure(client, "github")
    payload = recorded("github_pull_request_opened")
    await _refused(await post(anonymous, path, github(payload, secret="wrong secret")), receivers)
    body, headers = github(payload)
    tampered = body.replace(b"Update the README", b"Delete the README")
    await _refused(await anonymous.post(path, content=tampered, headers=headers), receivers)
    del headers["X-Hub-Signature-256"]
    await _refused(await anonymous.post(path, content=body, headers=headers), receivers)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3 and all("provider=github" in r and path.rsplit("/", 1)[1] in r for r in refusals)
    assert "does not match" in refusals[0] and "missing X-Hub-Signature-256" in refusals[2]


async def test_gitlab_refuses_a_wrong_token(receivers, client, anonymous):
    env = await plain_environment(client)
    await automation(client, env, "mr", [{"type": "gitlab", "config": {"event": "merge_request.opened"}}],
                     debounce_seconds=HOUR)
    path = await configure(client, "gitlab")
    await _refused(await post(anonymous, path, gitlab(recorded("gitlab_merge_request_open"), token="guess")),
                   receivers)
    body, headers = gitlab(recorded("gitlab_merge_request_open"))
    del headers["X-Gitlab-Token"]
    await _refused(await anonymous.post(path, content=body, headers=headers), receivers)


async def test_slack_refuses_a_bad_signature_and_a_stale_timestamp(receivers, client, anonymous):
    env = await plain_environment(client)
    await automation(client, env, "chat", [{"type": "slack", "config": {"event": "message"}}],
                     debounce_seconds=HOUR)
    path = await configure(client, "slack")
    payload = recorded("slack_message")
    await _refused(await post(anonymous, path, slack(payload, secret="nope")), receivers)
    # Correctly signed, but replayed ten minutes later.
    await _refused(await post(anonymous, path, slack(payload, at=int(time.time()) - 600)), receivers)
    # The signature covers the timestamp: moving it forward breaks the signature.
    body, headers = slack(payload, at=int(time.time()) - 600)
    headers["X-Slack-Request-Timestamp"] = str(int(time.time()))
    await _refused(await anonymous.post(path, content=body, headers=headers), receivers)


async def test_sentry_and_linear_refuse_bad_signatures(receivers, client, anonymous):
    env = await plain_environment(client)
    await automation(client, env, "alerts", [{"type": "sentry", "config": {"event": "issue.created"}}],
                     debounce_seconds=HOUR)
    sentry_path, linear_path = await configure(client, "sentry"), await configure(client, "linear")
    await _refused(await post(anonymous, sentry_path, sentry(recorded("sentry_issue_created"), "issue",
                                                             secret="other")), receivers)
    await _refused(await post(anonymous, linear_path, linear(recorded("linear_issue_create"), secret="other")),
                   receivers)
    # Linear: a correctly signed delivery whose webhookTimestamp is old is a replay.
    old = {**recorded("linear_issue_create"), "webhookTimestamp": int(time.time() * 1000) - 10 * 60 * 1000}
    body = json.dumps(old).encode()
    stale = await anonymous.post(linear_path, content=body, headers={"Linear-Signature": _hex(SECRET, body),
                                                                    "Linear-Delivery": "d-1"})
    await _refused(stale, receivers)


# -- the custom webhook ---------------------------------------------------------------------------------

CUSTOM_BODIES = [  # (what is sent, its content type, the trigger_payload recorded)
    (b"build 42 failed", "text/plain", {"raw": "build 42 failed"}),
    (b"{not json", "application/json", {"raw": "{not json"}),  # broken JSON sent as JSON is wrapped too
    (b"\xff\xfebuild \xc3\x28 failed", "application/octet-stream", {"raw": "\ufffd\ufffdbuild \ufffd( failed"}),
    (b"", "application/json", {"raw": ""}),
    (b"nul \x00 byte", "text/plain", {"raw": "nul \x00 byte"}),
    (b'{"lone": "\\ud800"}', "application/json", {"raw": '{"lone": "\\ud800"}'}),  # not storable parsed
    (b'{"level": NaN}', "application/json", {"raw": '{"level": NaN}'}),
    (b"[" * 150 + b"]" * 150, "application/json", {"raw": "[" * 150 + "]" * 150}),
    (b'{"nul": "a\\u0000b", "n": 1}', "application/json", {"nul": "a\x00b", "n": 1}),  # JSON: kept as JSON
    (b"[1, 2]", "text/plain", {"body": [1, 2]}),  # JSON whatever the content type says
]


@pytest.mark.parametrize(("sent", "content_type", "payload"), CUSTOM_BODIES)
async def test_a_custom_webhook_accepts_any_body_and_the_prompt_shows_it(receivers, client, anonymous, sent,
                                                                         content_type, payload):
    env = await plain_environment(client)
    hook = await automation(client, env, "custom", [{"type": "custom", "config": {}}], debounce_seconds=HOUR,
                            prompt="Look at this.")
    response = await anonymous.post(f"/v1/automations/webhook/{hook['webhook_token']}", content=sent,
                                    headers={"Content-Type": content_type})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": True}
    [execution] = await executions(client, hook["id"])
    assert execution["status"] == "pending" and execution["trigger_type"] == "custom"
    assert execution["trigger_payload"] == payload
    prompt = await stored_prompt(receivers, execution["id"])
    assert prompt.startswith("Look at this.\n\n## Trigger Payload\n```json\n") and prompt.endswith("\n```")
    embedded = json.loads(prompt.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert embedded == (payload["body"] if "body" in payload else payload)


# -- filters --------------------------------------------------------------------------------------------


async def test_github_filters_on_event_repository_and_actor(receivers, client, anonymous, make_git_repo):
    env = await plain_environment(client)
    shop = await register(client, make_git_repo, "acme/shop")
    other = await register(client, make_git_repo, "acme/other")
    only_shop = await automation(client, env, "shop-only", [{"type": "github", "config": {
        "event": "pull_request.opened", "repository_ids": [shop]}}], debounce_seconds=HOUR)
    only_other = await automation(client, env, "other-only", [{"type": "github", "config": {
        "event": "pull_request.opened", "repository_ids": [other]}}], debounce_seconds=HOUR)
    no_bots = await automation(client, env, "no-codertocat", [{"type": "github", "config": {
        "event": "pull_request.opened", "excluded_actors": ["@codertocat"]}}], debounce_seconds=HOUR)
    on_merge = await automation(client, env, "on-merge", [{"type": "github", "config": {
        "event": "pull_request.merged"}}], debounce_seconds=HOUR)
    disabled = await automation(client, env, "disabled", [{"type": "github", "config": {
        "event": "pull_request.opened"}}], debounce_seconds=HOUR, enabled=False)
    path = await configure(client, "github")

    response = await post(anonymous, path, github(recorded("github_pull_request_opened"), delivery="d-opened"))
    assert response.status_code == 202, response.text
    [fired] = response.json()["executions"]
    assert response.json()["accepted"] is True
    [execution] = await executions(client, only_shop["id"])
    assert execution["id"] == fired and execution["status"] == "pending"
    assert execution["trigger_payload"] == recorded("github_pull_request_opened")
    for silent in (only_other, no_bots, on_merge, disabled):
        assert await executions(client, silent["id"]) == [], silent["name"]
    prompt = await stored_prompt(receivers, fired)
    assert prompt.startswith("Handle the shop-only event.\n\n## Trigger Payload\n```json\n")
    summary = json.loads(prompt.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert summary == {"provider": "github", "event": "pull_request.opened", "action": "opened",
                       "repository": "acme/shop", "number": 2, "title": "Update the README with new information.",
                       "url": "https://github.com/acme/shop/pull/2", "actor": "Codertocat", "author": "Codertocat",
                       "state": "open", "draft": False, "merged": False, "head_branch": "changes",
                       "head_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "base_branch": "main",
                       "labels": ["bug"], "body": "This is a pretty simple change that we need to pull into master."}

    # The same delivery again: accepted, the same execution, nothing new.
    again = await post(anonymous, path, github(recorded("github_pull_request_opened"), delivery="d-opened"))
    assert again.status_code == 202 and again.json()["executions"] == [fired]
    assert len(await executions(client, only_shop["id"])) == 1

    # Closed with merged=true is pull_request.merged; a label change fires nothing.
    merged = copy.deepcopy(recorded("github_pull_request_opened"))
    merged["action"], merged["pull_request"]["merged"] = "closed", True
    assert len((await post(anonymous, path, github(merged))).json()["executions"]) == 1
    assert len(await executions(client, on_merge["id"])) == 1
    labeled = {**recorded("github_pull_request_opened"), "action": "labeled"}
    assert (await post(anonymous, path, github(labeled))).json()["executions"] == []
    ping = await post(anonymous, path, github({"zen": "Design for failure.", "hook_id": 1}, event="ping"))
    assert ping.status_code == 200 and ping.json()["ok"] is True


async def test_github_pull_request_command_names_its_automation(receivers, client, anonymous):
    env = await plain_environment(client)
    review = await automation(client, env, "Review PR", [{"type": "github", "config": {
        "event": "pull_request.command"}}], debounce_seconds=HOUR)
    other = await automation(client, env, "deploy", [{"type": "github", "config": {
        "event": "pull_request.command"}}], debounce_seconds=HOUR)
    path = await configure(client, "github")
    response = await post(anonymous, path, github(recorded("github_issue_comment_command"), event="issue_comment"))
    assert response.status_code == 202 and len(response.json()["executions"]) == 1
    [execution] = await executions(client, review["id"])
    assert await executions(client, other["id"]) == []
    prompt = await stored_prompt(receivers, execution["id"])
    assert '"command": "review-pr"' in prompt and '"arguments": "focus on the README wording"' in prompt
    assert '"url": "https://github.com/acme/shop/pull/2"' in prompt
    # A plain comment is no command.
    chatter = copy.deepcopy(recorded("github_issue_comment_command"))
    chatter["comment"]["body"] = "Looks good to me"
    assert (await post(anonymous, path, github(chatter, event="issue_comment"))).json()["executions"] == []


async def test_gitlab_slack_and_sentry_filters(receivers, client, anonymous, make_git_repo):
    env = await plain_environment(client)
    other = await register(client, make_git_repo, "acme/other")
    mr_any = await automation(client, env, "mr-any", [{"type": "gitlab", "config": {
        "event": "merge_request.opened"}}], debounce_seconds=HOUR)
    mr_other = await automation(client, env, "mr-other", [{"type": "gitlab", "config": {
        "event": "merge_request.opened", "repository_ids": [other]}}], debounce_seconds=HOUR)
    mr_not_root = await automation(client, env, "mr-not-root", [{"type": "gitlab", "config": {
        "event": "merge_request.updated", "excluded_actors": ["ROOT"]}}], debounce_seconds=HOUR)
    in_channel = await automation(client, env, "in-channel", [{"type": "slack", "config": {
        "event": "message", "channel_ids": ["C123ABC456"]}}], debounce_seconds=HOUR)
    elsewhere = await automation(client, env, "elsewhere", [{"type": "slack", "config": {
        "event": "message", "channel_ids": ["C999"]}}], debounce_seconds=HOUR)
    errors_fe = await automation(client, env, "errors-fe", [{"type": "sentry", "config": {
        "event": "issue.created", "project_slugs": ["front-end"], "min_level": "error"}}], debounce_seconds=HOUR)
    fatal_only = await automation(client, env, "fatal-only", [{"type": "sentry", "config": {
        "event": "issue.created", "min_level": "fatal"}}], debounce_seconds=HOUR)
    backend = await automation(client, env, "backend", [{"type": "sentry", "config": {
        "event": "event_alert.triggered", "project_slugs": ["back-end"]}}], debounce_seconds=HOUR)
    alerts = await automation(client, env, "alerts", [{"type": "sentry", "config": {
        "event": "event_alert.triggered", "min_level": "fatal"}}], debounce_seconds=HOUR)
    gitlab_path, slack_path = await configure(client, "gitlab"), await configure(client, "slack")
    sentry_path = await configure(client, "sentry")

    assert len((await post(anonymous, gitlab_path, gitlab(recorded("gitlab_merge_request_open")))
                ).json()["executions"]) == 1
    updated = copy.deepcopy(recorded("gitlab_merge_request_open"))
    updated["object_attributes"]["action"] = "update"
    assert (await post(anonymous, gitlab_path, gitlab(updated))).json()["executions"] == []
    [mr] = await executions(client, mr_any["id"])
    assert await executions(client, mr_other["id"]) == [] and await executions(client, mr_not_root["id"]) == []
    prompt = await stored_prompt(receivers, mr["id"])
    assert '"event": "merge_request.opened"' in prompt and '"head_branch": "ms-viewport"' in prompt
    assert '"url": "https://gitlab.example.com/acme/shop/-/merge_requests/1"' in prompt

    challenge = await post(anonymous, slack_path, slack({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9",
                                                         "type": "url_verification"}))
    assert challenge.status_code == 200 and challenge.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9"}
    assert len((await post(anonymous, slack_path, slack(recorded("slack_message")))).json()["executions"]) == 1
    bot = copy.deepcopy(recorded("slack_message"))
    bot["event"].update(subtype="bot_message", bot_id="B123", event_id="Ev999")
    assert (await post(anonymous, slack_path, slack(bot))).json()["executions"] == []
    [message] = await executions(client, in_channel["id"])
    assert await executions(client, elsewhere["id"]) == []
    assert '"text": "The checkout page returns a 500' in await stored_prompt(receivers, message["id"])

    assert len((await post(anonymous, sentry_path, sentry(recorded("sentry_issue_created"), "issue"))
                ).json()["executions"]) == 1
    [issue] = await executions(client, errors_fe["id"])
    assert await executions(client, fatal_only["id"]) == []  # level error is below fatal
    assert '"title": "ZeroDivisionError: division by zero"' in await stored_prompt(receivers, issue["id"])
    assert len((await post(anonymous, sentry_path, sentry(recorded("sentry_event_alert"), "event_alert"))
                ).json()["executions"]) == 1
    [alert] = await executions(client, alerts["id"])
    assert await executions(client, backend["id"]) == []  # project front-end, not back-end
    assert '"rule": "Page the on-call for fatal checkout errors"' in await stored_prompt(receivers, alert["id"])


async def test_linear_fires_a_linear_trigger_filtered_by_team(receivers, app, client, anonymous):
    """`linear` is our trigger type (the contract has none): a verified Issue create fires the automation
    whose team matches, with the issue in the prompt, and not the one watching another team."""
    path = await configure(client, "linear")
    assert (await post(anonymous, path, linear(recorded("linear_issue_create")))).json() == {
        "accepted": True, "executions": []}
    env = await plain_environment(client)
    eng = await automation(client, env, "eng-issues", [{"type": "linear", "config": {
        "event": "issue.created", "team_keys": ["ENG"]}}], debounce_seconds=HOUR)
    ops = await automation(client, env, "ops-issues", [{"type": "linear", "config": {
        "event": "issue.created", "team_keys": ["OPS"]}}], debounce_seconds=HOUR)
    response = await post(anonymous, path, linear(recorded("linear_issue_create")))
    assert response.status_code == 202, response.text
    [fired] = await executions(client, eng["id"])
    assert await executions(client, ops["id"]) == []
    prompt = await stored_prompt(app, fired["id"])
    assert "## Trigger Payload" in prompt and "ENG" in prompt


def test_repository_keys_match_names_and_every_url_form():
    same = {service.repository_key(v) for v in ("https://github.com/Acme/Shop.git", "https://github.com/acme/shop",
                                                "git@github.com:acme/shop.git", "ssh://git@github.com/acme/shop")}
    assert same == {"github.com/acme/shop"}
    assert service.repository_key("Acme/Shop") == "acme/shop"


# -- real workspaces ------------------------------------------------------------------------------------


def _sent_text(model, index: int = 0) -> str:
    texts: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key in ("text", "content"):
                if isinstance(node.get(key), str):
                    texts.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model.model_requests()[index].body.get("messages", []))
    return "\n".join(texts)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_signed_github_pull_request_runs_the_agent_with_the_event(receivers, client, anonymous,
                                                                          replica_env, model):
    model.add_turn(Text("reviewed"))
    review = await automation(client, replica_env.environment_id, "pr-review", [{"type": "github", "config": {
        "event": "pull_request.opened", "repository_ids": [replica_env.repository_id]}}],
        prompt="Review the pull request.")
    path = await configure(client, "github")
    signed = github(recorded("github_pull_request_opened"), delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    response = await post(anonymous, path, signed)
    assert response.status_code == 202, response.text
    [execution_id] = response.json()["executions"]
    assert (await post(anonymous, path, signed)).json()["executions"] == [execution_id]  # a redelivery

    [execution] = await executions(client, review["id"])
    assert execution["id"] == execution_id and execution["workspace_id"]
    workspace = await row_of(receivers, execution["workspace_id"])
    assert workspace.source == "automation" and workspace.config["capabilities"] == {"pr_followups": False}

    async def completed():
        [e] = await executions(client, review["id"])
        return e if e["status"] == "completed" else None

    await wait_for(completed, timeout=120, what="the execution to complete")
    prompt = _sent_text(model)
    assert "Review the pull request.\n\n## Trigger Payload\n```json\n" in prompt
    assert '"title": "Update the README with new information."' in prompt
    assert '"url": "https://github.com/acme/shop/pull/2"' in prompt and '"head_branch": "changes"' in prompt
    assert len(model.model_requests()) == 1
    async with receivers.state.sessions() as session:
        assert len(list(await session.scalars(select(Workspace.id).where(Workspace.source == "automation")))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", ["github-command", "gitlab", "slack", "sentry-issue", "sentry-alert"])
async def test_each_provider_creates_a_workspace_with_the_event_in_its_prompt(case, receivers, client, anonymous,
                                                                              replica_env, model):
    model.add_turn(Text("on it"))
    kinds = {
        "github-command": ("github", {"event": "pull_request.command"}, "review-pr",
                           lambda: github(recorded("github_issue_comment_command"), event="issue_comment"),
                           '"command": "review-pr"'),
        "gitlab": ("gitlab", {"event": "merge_request.opened", "repository_ids": [replica_env.repository_id]},
                   "mr", lambda: gitlab(recorded("gitlab_merge_request_open")), '"title": "MS-Viewport"'),
        "slack": ("slack", {"event": "message", "channel_ids": ["C123ABC456"]}, "chat",
                  lambda: slack(recorded("slack_message")), '"channel": "C123ABC456"'),
        "sentry-issue": ("sentry", {"event": "issue.created", "min_level": "warning"}, "issues",
                         lambda: sentry(recorded("sentry_issue_created"), "issue"), '"project": "front-end"'),
        "sentry-alert": ("sentry", {"event": "event_alert.triggered", "project_slugs": ["front-end"]}, "alert",
                         lambda: sentry(recorded("sentry_event_alert"), "event_alert"), '"level": "fatal"'),
    }
    provider, config, name, sign, expected = kinds[case]
    created = await automation(client, replica_env.environment_id, name,
                               [{"type": provider, "config": config}], prompt="Look into it.")
    path = await configure(client, provider)
    response = await post(anonymous, path, sign())
    assert response.status_code == 202, response.text
    [execution_id] = response.json()["executions"]
    [execution] = await executions(client, created["id"])
    assert execution["id"] == execution_id and execution["status"] in ("running", "completed")
    workspace = await row_of(receivers, execution["workspace_id"])
    assert workspace.source == "automation"
    prompt = await stored_prompt(receivers, execution_id)
    assert prompt.startswith("Look into it.\n\n## Trigger Payload\n```json\n") and expected in prompt


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_group_pr_events_sends_a_later_push_to_the_same_workspace(receivers, client, anonymous, replica_env,
                                                                         model):
    model.add_turn(Text("first review"))
    model.add_turn(Text("second review"))
    grouped = await automation(client, replica_env.environment_id, "grouped", [
        {"type": "github", "config": {"event": "pull_request.opened", "group_pr_events": True}},
        {"type": "github", "config": {"event": "pull_request.synchronize", "group_pr_events": True}}],
        prompt="Review the pull request.")
    path = await configure(client, "github")
    [first] = (await post(anonymous, path, github(recorded("github_pull_request_opened")))).json()["executions"]

    async def done(count: int):
        async def check():
            found = await executions(client, grouped["id"])
            return found if len(found) == count and all(e["status"] == "completed" for e in found) else None
        return check

    await wait_for(await done(1), timeout=120, what="the first run")
    pushed = copy.deepcopy(recorded("github_pull_request_opened"))
    pushed["action"], pushed["pull_request"]["head"]["sha"] = "synchronize", "a" * 40
    [second] = (await post(anonymous, path, github(pushed))).json()["executions"]
    assert second != first
    found = await wait_for(await done(2), timeout=120, what="the follow-up")
    assert len({e["workspace_id"] for e in found}) == 1  # one workspace for the PR
    await wait_for(lambda: _requests(model, 2), timeout=60, what="the follow-up turn")
    assert '"event": "pull_request.synchronize"' in _sent_text(model, -1) and "a" * 40 in _sent_text(model, -1)
    async with receivers.state.sessions() as session:
        assert len(list(await session.scalars(select(Workspace.id).where(Workspace.source == "automation")))) == 1


async def _requests(model, count: int) -> bool:
    return len(model.model_requests()) >= count

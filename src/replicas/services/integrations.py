"""Inbound integrations (spec §6): per-organization webhook secrets, and the receivers that turn a verified
GitHub, GitLab, Slack, Sentry or Linear delivery into automation executions.

    await set_secret(session, box, principal, "github", secret)          # admins; audited, stored encrypted
    result = await receive(app.state, "github", org_id, body, headers)    # verify, parse, match, fire

A delivery is verified with the organization's secret for that provider before anything is parsed:
- GitHub: `X-Hub-Signature-256: sha256=<HMAC-SHA256(secret, body) hex>`.
- GitLab: `X-Gitlab-Token` equal to the secret.
- Slack: `X-Slack-Signature: v0=<HMAC-SHA256(secret, "v0:{X-Slack-Request-Timestamp}:{body}") hex>`, the
  timestamp within `REPLAY_WINDOW_SECONDS` of now.
- Sentry: `Sentry-Hook-Signature: <HMAC-SHA256(client secret, body) hex>`.
- Linear: `Linear-Signature: <HMAC-SHA256(secret, body) hex>`, and `webhookTimestamp` (ms) in the window.
A failure raises `VerificationFailed` (logged with the provider, organization and reason; nothing fires).

A verified event becomes an `InboundEvent`: the trigger event value (`pull_request.opened`, `message` ...)
and what the trigger configs filter on. Every enabled automation of the organization with a matching
trigger is fired with the raw payload (`trigger_payload`), the normalised summary (what the prompt embeds)
and `<provider>:<delivery id>` (so a redelivery fires nothing new). With `group_pr_events` (GitHub, GitLab)
or `group_thread_replies` (Slack), a later event for a PR/MR or thread that already has a live workspace
from that automation goes to it as a follow-up message instead (still recorded as an execution).
Before the automations, GitHub, GitLab, Slack and Linear deliveries go to the team loop (team_loop.py):
mentions that start or steer workspaces, pull request follow-ups, and closing.
Linear has no trigger type in the contract: its deliveries are verified and logged, and fire automations
only once a `linear` trigger type exists (`{event: issue.created|issue.updated|comment.created, team_keys?}`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Forbidden, NotFound, ReplicasError
from replicas.services import audit, integration_credentials, team_loop
from replicas.services import automations as automations_service
from replicas.services.automation_triggers import (
    actor_excluded,
    event_triggers,
    repository_allowed,
    sentry_level_allowed,
)
from replicas.services.environments import parse_uuid
from replicas.services.principal import Principal
from replicas.settings import Settings
from replicas.store.models import (
    Automation,
    AutomationExecution,
    IntegrationSecret,
    Organization,
    Repository,
    Workspace,
    utcnow,
)

log = logging.getLogger("replicas.integrations")

PROVIDERS = ("github", "gitlab", "slack", "sentry", "linear")
REPLAY_WINDOW_SECONDS = 300
MAX_SECRET_LENGTH = 512
MAX_TEXT = 4000  # long PR bodies and messages are cut in the prompt (the raw payload keeps them)
COMMAND = re.compile(r"^\s*(?:/replicas|@replicas)\s+(\S+)(?:[ \t]+(.*))?", re.IGNORECASE | re.DOTALL)
GITHUB_PR_ACTIONS = {"opened": "pull_request.opened", "synchronize": "pull_request.synchronize"}
GITLAB_MR_ACTIONS = {"open": "merge_request.opened", "reopen": "merge_request.opened",
                     "update": "merge_request.updated", "merge": "merge_request.merged",
                     "close": "merge_request.closed"}
SENTRY_RESOURCES = {("event_alert", "triggered"): "event_alert.triggered", ("issue", "created"): "issue.created",
                    ("error", "created"): "error.created"}
LINEAR_EVENTS = {("Issue", "create"): "issue.created", ("Issue", "update"): "issue.updated",
                 ("Comment", "create"): "comment.created"}
GROUPABLE = {"pull_request.opened", "pull_request.synchronize", "pull_request.command",
             "merge_request.opened", "merge_request.updated", "message"}
GROUP_SCAN = 200  # recent executions searched for a PR's or thread's workspace
LIVE = ("preparing", "active", "sleeping", "archived")


class VerificationFailed(Exception):
    """A delivery that does not prove it came from the provider (the reason is logged, never returned)."""


# -- secrets ---------------------------------------------------------------------------------------


def check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise NotFound("Integration not found", f"provider must be one of {', '.join(PROVIDERS)}")
    return provider


def webhook_path(provider: str, organization_id: uuid.UUID | str) -> str:
    return f"/v1/integrations/{provider}/webhook/{organization_id}"


def webhook_url(settings: Settings, provider: str, organization_id: uuid.UUID | str) -> str:
    """Where the provider must send deliveries (REPLICAS_PUBLIC_URL, else the listen address)."""
    base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    return base + webhook_path(provider, organization_id)


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("Admin access required", "only organization admins can configure integrations")


async def _get(session: AsyncSession, organization_id: uuid.UUID, provider: str) -> IntegrationSecret | None:
    return await session.scalar(select(IntegrationSecret).where(
        IntegrationSecret.organization_id == organization_id, IntegrationSecret.provider == provider))


async def set_secret(session: AsyncSession, box: SecretBox, principal: Principal, provider: str,
                     secret: str | None, loop: dict[str, Any] | None = None) -> IntegrationSecret:
    """Create or replace the organization's secret for `provider`, and set the team loop's token and options
    given in `loop` (integration_credentials.py). Admins only; audited, never a secret. The secret may be left
    out once one is stored."""
    _require_admin(principal)
    check_provider(provider)
    row = await _get(session, principal.organization_id, provider)
    if secret is None and row is None:
        raise BadRequest("Invalid request", "secret: required to configure an integration")
    if secret is not None and (not isinstance(secret, str) or not secret.strip() or len(secret) > MAX_SECRET_LENGTH):
        raise BadRequest("Invalid request", f"secret: must be 1 to {MAX_SECRET_LENGTH} characters")
    changed = await integration_credentials.apply(session, box, principal.organization_id, provider, loop or {})
    action = "integration.updated" if row else "integration.configured"
    if row is None:
        # The id is derived from (organization, provider), so two concurrent first PUTs cannot both insert.
        row = IntegrationSecret(id=uuid.uuid5(principal.organization_id, f"integration:{provider}"),
                                organization_id=principal.organization_id, provider=provider)
        session.add(row)
    if secret is not None:
        row.secret_encrypted = box.encrypt(secret)
    row.updated_at = utcnow()
    after = {"provider": provider, **({"changed": changed} if changed else {})}
    audit.record(session, principal, action, "integration", provider, after=after)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return await set_secret(session, box, principal, provider, secret, loop)
    return row


async def list_secrets(session: AsyncSession, principal: Principal) -> list[IntegrationSecret]:
    """The organization's configured providers (any member may see which are configured)."""
    return list(await session.scalars(select(IntegrationSecret).where(
        IntegrationSecret.organization_id == principal.organization_id).order_by(IntegrationSecret.provider)))


async def delete_secret(session: AsyncSession, principal: Principal, provider: str) -> None:
    """Remove the secret (and the team loop's token and options): that provider's deliveries get 404 from
    then on."""
    _require_admin(principal)
    row = await _get(session, principal.organization_id, check_provider(provider))
    if row is None:
        raise NotFound("Integration not configured")
    audit.record(session, principal, "integration.deleted", "integration", provider, before={"provider": provider})
    await session.delete(row)
    credential = await integration_credentials.get_row(session, principal.organization_id, provider)
    if credential is not None:  # the token and the team loop's options go with it
        await session.delete(credential)
    await session.commit()


# -- verification ----------------------------------------------------------------------------------


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(expected: str, given: str | None) -> bool:
    return hmac.compare_digest(expected.encode(), (given or "").strip().encode())


def _fresh(seconds: float, now: float, what: str) -> None:
    if abs(now - seconds) > REPLAY_WINDOW_SECONDS:
        raise VerificationFailed(f"{what} is outside the {REPLAY_WINDOW_SECONDS}s window")


def verify(provider: str, secret: str, body: bytes, headers: Any, now: float | None = None) -> None:
    """Check a delivery's signature (or token) with the organization's secret; VerificationFailed if not."""
    now = time.time() if now is None else now
    if provider == "github":
        given = headers.get("x-hub-signature-256")
        if not given:
            raise VerificationFailed("missing X-Hub-Signature-256")
        if not _same("sha256=" + _hmac_hex(secret, body), given):
            raise VerificationFailed("X-Hub-Signature-256 does not match")
    elif provider == "gitlab":
        if not headers.get("x-gitlab-token"):
            raise VerificationFailed("missing X-Gitlab-Token")
        if not _same(secret, headers.get("x-gitlab-token")):
            raise VerificationFailed("X-Gitlab-Token does not match")
    elif provider == "slack":
        stamp, given = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
        if not stamp or not given:
            raise VerificationFailed("missing X-Slack-Signature or X-Slack-Request-Timestamp")
        try:
            _fresh(int(stamp), now, "X-Slack-Request-Timestamp")
        except ValueError:
            raise VerificationFailed("X-Slack-Request-Timestamp is not a number") from None
        if not _same("v0=" + _hmac_hex(secret, b"v0:" + stamp.encode() + b":" + body), given):
            raise VerificationFailed("X-Slack-Signature does not match")
    elif provider in ("sentry", "linear"):
        name = "Sentry-Hook-Signature" if provider == "sentry" else "Linear-Signature"
        given = headers.get(name.lower())
        if not given:
            raise VerificationFailed(f"missing {name}")
        if not _same(_hmac_hex(secret, body), given):
            raise VerificationFailed(f"{name} does not match")
        if provider == "linear":
            stamp = _json(body).get("webhookTimestamp")
            if not isinstance(stamp, int | float):
                raise VerificationFailed("missing webhookTimestamp")
            _fresh(stamp / 1000, now, "webhookTimestamp")
    else:  # pragma: no cover - check_provider ran first
        raise VerificationFailed(f"unknown provider {provider}")


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


# -- events ----------------------------------------------------------------------------------------


@dataclass
class InboundEvent:
    """A verified delivery, normalised. `event` None: nothing to fire (ignored kinds and actions)."""

    kind: str  # the trigger type its automations use
    event: str | None
    delivery_id: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None
    repositories: list[str] = field(default_factory=list)  # full names and URLs identifying the repository
    channel: str | None = None
    project: str | None = None
    level: str | None = None
    team: str | None = None
    command: str | None = None  # the automation a `/replicas <name>` comment names
    group_key: str | None = None  # the PR, MR or thread later events are grouped by
    reply: dict[str, Any] | None = None  # answered as is (Slack url_verification, GitHub ping)
    ignored: str | None = None  # why nothing fires


def _cut(text: Any) -> Any:
    return text[:MAX_TEXT] + "…" if isinstance(text, str) and len(text) > MAX_TEXT else text


def _login(node: Any, key: str = "login") -> str | None:
    return node.get(key) if isinstance(node, dict) else None


def github_group_key(payload: dict[str, Any]) -> str | None:
    repo = (payload.get("repository") or {}).get("full_name")
    number = (payload.get("pull_request") or {}).get("number") or (payload.get("issue") or {}).get("number")
    return f"github:{repo.lower()}#{number}" if repo and number else None


def gitlab_group_key(payload: dict[str, Any]) -> str | None:
    project = (payload.get("project") or {}).get("path_with_namespace")
    iid = (payload.get("object_attributes") or {}).get("iid")
    return f"gitlab:{project.lower()}!{iid}" if project and iid else None


def slack_group_key(payload: dict[str, Any]) -> str | None:
    event = payload.get("event") or {}
    root = event.get("thread_ts") or event.get("ts")
    return f"slack:{event.get('channel')}:{root}" if root else None


GROUP_KEYS = {"github": github_group_key, "gitlab": gitlab_group_key, "slack": slack_group_key}


def parse_github(headers: Any, payload: dict[str, Any]) -> InboundEvent:
    kind, delivery = headers.get("x-github-event", ""), headers.get("x-github-delivery")
    event = InboundEvent("github", None, delivery)
    if kind == "ping":
        event.reply, event.ignored = {"ok": True, "zen": payload.get("zen")}, "ping"
        return event
    repo = payload.get("repository") or {}
    event.repositories = [v for v in (repo.get("full_name"), repo.get("html_url"), repo.get("clone_url"),
                                      repo.get("ssh_url")) if v]
    event.actor = _login(payload.get("sender"))
    action = payload.get("action")
    if kind == "pull_request":
        pr = payload.get("pull_request") or {}
        if action == "closed":
            event.event = "pull_request.merged" if pr.get("merged") else "pull_request.closed"
        else:
            event.event = GITHUB_PR_ACTIONS.get(action)
        event.summary = {
            "provider": "github", "event": event.event, "action": action, "repository": repo.get("full_name"),
            "number": pr.get("number"), "title": pr.get("title"), "url": pr.get("html_url"),
            "actor": event.actor, "author": _login(pr.get("user")), "state": pr.get("state"),
            "draft": pr.get("draft"), "merged": pr.get("merged"),
            "head_branch": (pr.get("head") or {}).get("ref"), "head_sha": (pr.get("head") or {}).get("sha"),
            "base_branch": (pr.get("base") or {}).get("ref"),
            "labels": [label.get("name") for label in pr.get("labels") or [] if isinstance(label, dict)],
            "body": _cut(pr.get("body"))}
    elif kind == "issue_comment" and action == "created" and (payload.get("issue") or {}).get("pull_request"):
        issue, comment = payload["issue"], payload.get("comment") or {}
        match = COMMAND.match(comment.get("body") or "")
        if match:
            event.event, event.command = "pull_request.command", match.group(1)
            event.summary = {
                "provider": "github", "event": event.event, "repository": repo.get("full_name"),
                "number": issue.get("number"), "title": issue.get("title"),
                "url": (issue.get("pull_request") or {}).get("html_url") or issue.get("html_url"),
                "actor": event.actor, "command": match.group(1), "arguments": (match.group(2) or "").strip(),
                "comment": _cut(comment.get("body")), "comment_url": comment.get("html_url")}
        else:
            event.ignored = "comment without a /replicas command"
    if event.event is None and event.ignored is None:
        event.ignored = f"{kind}.{action}" if action else kind
    event.group_key = github_group_key(payload)
    return event


def parse_gitlab(headers: Any, payload: dict[str, Any]) -> InboundEvent:
    delivery = headers.get("x-gitlab-event-uuid") or headers.get("idempotency-key")
    event = InboundEvent("gitlab", None, delivery)
    if payload.get("object_kind") != "merge_request":
        event.ignored = headers.get("x-gitlab-event") or str(payload.get("object_kind"))
        return event
    mr, project = payload.get("object_attributes") or {}, payload.get("project") or {}
    event.event = GITLAB_MR_ACTIONS.get(mr.get("action"))
    event.ignored = None if event.event else f"merge_request.{mr.get('action')}"
    event.actor = _login(payload.get("user"), "username")
    event.repositories = [v for v in (project.get("path_with_namespace"), project.get("web_url"),
                                      project.get("git_http_url"), project.get("git_ssh_url")) if v]
    event.summary = {
        "provider": "gitlab", "event": event.event, "action": mr.get("action"),
        "repository": project.get("path_with_namespace"), "number": mr.get("iid"), "title": mr.get("title"),
        "url": mr.get("url"), "actor": event.actor, "state": mr.get("state"),
        "head_branch": mr.get("source_branch"), "base_branch": mr.get("target_branch"),
        "head_sha": (mr.get("last_commit") or {}).get("id"),
        "labels": [label.get("title") for label in payload.get("labels") or [] if isinstance(label, dict)],
        "body": _cut(mr.get("description"))}
    event.group_key = gitlab_group_key(payload)
    return event


def parse_slack(headers: Any, payload: dict[str, Any]) -> InboundEvent:
    event = InboundEvent("slack", None, payload.get("event_id"))
    if payload.get("type") == "url_verification":
        event.reply, event.ignored = {"challenge": payload.get("challenge")}, "url_verification"
        return event
    message = payload.get("event") or {}
    if payload.get("type") != "event_callback" or message.get("type") != "message":
        event.ignored = f"{payload.get('type')}.{message.get('type')}"
        return event
    if message.get("subtype") or message.get("bot_id"):
        event.ignored = f"message.{message.get('subtype') or 'bot'}"
        return event
    event.event, event.actor, event.channel = "message", message.get("user"), message.get("channel")
    event.summary = {"provider": "slack", "event": "message", "team_id": payload.get("team_id"),
                     "channel": event.channel, "user": event.actor, "text": _cut(message.get("text")),
                     "ts": message.get("ts"), "thread_ts": message.get("thread_ts")}
    event.group_key = slack_group_key(payload)
    return event


def _sentry_project(node: dict[str, Any]) -> str | None:
    project = node.get("project")
    if isinstance(project, dict):
        return project.get("slug")
    match = re.search(r"/projects/[^/]+/([^/]+)/", node.get("url") or "")
    return match.group(1) if match else None


def parse_sentry(headers: Any, payload: dict[str, Any]) -> InboundEvent:
    resource = headers.get("sentry-hook-resource", "")
    event = InboundEvent("sentry", SENTRY_RESOURCES.get((resource, payload.get("action"))),
                         headers.get("request-id") or payload.get("id"))
    if event.event is None:
        event.ignored = f"{resource}.{payload.get('action')}"
        return event
    data = payload.get("data") or {}
    node = data.get({"event_alert": "event", "issue": "issue", "error": "error"}[resource]) or {}
    event.project, event.level = _sentry_project(node), node.get("level")
    event.actor = _login(payload.get("actor"), "name")
    event.summary = {
        "provider": "sentry", "event": event.event, "project": event.project, "level": event.level,
        "title": node.get("title"), "culprit": node.get("culprit"),
        "url": node.get("web_url") or node.get("permalink") or node.get("url"),
        "issue_id": node.get("issue_id") or node.get("id"), "event_id": node.get("event_id"),
        "rule": data.get("triggered_rule"), "platform": node.get("platform"),
        "message": _cut(node.get("message"))}
    return event


def parse_linear(headers: Any, payload: dict[str, Any]) -> InboundEvent:
    event = InboundEvent("linear", LINEAR_EVENTS.get((payload.get("type"), payload.get("action"))),
                         headers.get("linear-delivery"))
    data = payload.get("data") or {}
    issue = data.get("issue") or data if payload.get("type") == "Comment" else data
    event.team = (issue.get("team") or {}).get("key")
    event.actor = _login(payload.get("actor"), "name")
    event.ignored = None if event.event else f"{payload.get('type')}.{payload.get('action')}"
    event.summary = {"provider": "linear", "event": event.event, "team": event.team,
                     "identifier": issue.get("identifier"), "title": issue.get("title"),
                     "url": payload.get("url") or issue.get("url"), "actor": event.actor,
                     "state": (issue.get("state") or {}).get("name"), "priority": issue.get("priorityLabel"),
                     "body": _cut(data.get("body") or data.get("description"))}
    return event


PARSERS = {"github": parse_github, "gitlab": parse_gitlab, "slack": parse_slack, "sentry": parse_sentry,
           "linear": parse_linear}


# -- matching --------------------------------------------------------------------------------------


def repository_key(value: str) -> str:
    """`owner/repo` names and clone/web URLs (https, ssh, scp-like) in one comparable form."""
    value = value.strip().lower().removesuffix("/").removesuffix(".git")
    scp = re.match(r"^[\w.-]+@([\w.-]+):(.+)$", value)
    if scp:
        return f"{scp.group(1)}/{scp.group(2)}"
    parsed = urlparse(value)
    if parsed.scheme and parsed.hostname:
        return f"{parsed.hostname}{parsed.path}".rstrip("/")
    return value


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


async def matching_repository_ids(session: AsyncSession, organization_id: uuid.UUID,
                                  identifiers: list[str]) -> set[str]:
    """The organization's registered repositories the event's full name or URLs name."""
    wanted = {repository_key(v) for v in identifiers}
    if not wanted:
        return set()
    rows = await session.execute(select(Repository.id, Repository.name, Repository.url)
                                 .where(Repository.organization_id == organization_id))
    return {str(rid) for rid, name, url in rows if {repository_key(name), repository_key(url)} & wanted}


def trigger_admits(config: dict[str, Any], event: InboundEvent, repository_ids: set[str],
                   automation: Automation) -> bool:
    """Whether one trigger config's filters let the event through."""
    if actor_excluded(config, event.actor):
        return False
    if config.get("repository_ids") and not any(repository_allowed(config, rid) for rid in repository_ids):
        return False
    if config.get("channel_ids") and event.channel not in config["channel_ids"]:
        return False
    if config.get("project_slugs") and event.project not in config["project_slugs"]:
        return False
    if event.kind == "sentry" and not sentry_level_allowed(config, event.level):
        return False
    if config.get("team_keys") and (event.team or "").upper() not in {k.upper() for k in config["team_keys"]}:
        return False
    if event.command is not None:
        return event.command.lower() in (automation.name.lower(), slug(automation.name))
    return True


async def matching_automations(session: AsyncSession, organization_id: uuid.UUID,
                               event: InboundEvent) -> list[tuple[Automation, dict[str, Any]]]:
    """The organization's enabled automations with a trigger for this event whose filters admit it."""
    rows = list(await session.scalars(select(Automation).where(
        Automation.organization_id == organization_id, Automation.enabled.is_(True))
        .order_by(Automation.created_at, Automation.id)))
    candidates = [(row, config) for row in rows for config in event_triggers(row.triggers, event.kind, event.event)]
    if not candidates:
        return []
    repository_ids = await matching_repository_ids(session, organization_id, event.repositories)
    return [(row, config) for row, config in candidates if trigger_admits(config, event, repository_ids, row)]


# -- receiving -------------------------------------------------------------------------------------


@dataclass
class Received:
    """What a receiver answers: `reply` as is, else `{accepted: true, executions: [...]}`."""

    reply: dict[str, Any] | None = None
    executions: list[str] = field(default_factory=list)


async def organization_secret(services: Any, provider: str, organization_ref: str) -> tuple[uuid.UUID, str]:
    """The organization's id and decrypted secret; NotFound for an unknown organization or provider."""
    check_provider(provider)
    try:
        organization_id = parse_uuid(organization_ref, "Organization")
    except NotFound:
        raise NotFound("Integration not found") from None
    async with services.sessions() as session:
        org = await session.get(Organization, organization_id)
        row = await _get(session, organization_id, provider) if org is not None else None
    if row is None:
        raise NotFound("Integration not found")
    return organization_id, services.box.decrypt(row.secret_encrypted)


async def receive(services: Any, provider: str, organization_ref: str, body: bytes, headers: Any) -> Received:
    """Verify, parse and dispatch one delivery. Raises NotFound (no such org/integration),
    VerificationFailed (refused: logged here), BadRequest (a verified body that is not a JSON object)."""
    organization_id, secret = await organization_secret(services, provider, organization_ref)
    try:
        verify(provider, secret, body, headers)
    except VerificationFailed as exc:
        log.warning("integration delivery refused provider=%s organization_id=%s reason=%s", provider,
                    organization_id, exc)
        raise
    payload = _payload(provider, body)
    await team_loop.route(services, provider, organization_id, headers, payload)  # mentions, PR follow-ups
    event = PARSERS[provider](headers, payload)
    if event.event is None:
        log.info("integration delivery ignored provider=%s organization_id=%s delivery_id=%s what=%s", provider,
                 organization_id, event.delivery_id, event.ignored)
        return Received(reply=event.reply)
    async with services.sessions() as session:
        matched = await matching_automations(session, organization_id, event)
    delivery = f"{provider}:{event.delivery_id}"[:255] if event.delivery_id else None
    executions = []
    for automation, config in matched:
        execution = await _dispatch(services, automation, config, event, payload, delivery)
        if execution is not None:
            executions.append(str(execution.id))
    log.info("integration delivery accepted provider=%s organization_id=%s delivery_id=%s event=%s fired=%d",
             provider, organization_id, event.delivery_id, event.event, len(executions))
    return Received(executions=executions)


def _payload(provider: str, body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid JSON body", str(exc)) from None
    if not isinstance(value, dict):
        raise BadRequest("Invalid JSON body", f"a {provider} delivery is a JSON object")
    return value


async def _dispatch(services: Any, automation: Automation, config: dict[str, Any], event: InboundEvent,
                    payload: dict[str, Any], delivery: str | None) -> AutomationExecution | None:
    grouped = config.get("group_thread_replies") if event.kind == "slack" else config.get("group_pr_events")
    if grouped and event.event in GROUPABLE and event.group_key:
        followed = await _follow_up(services, automation, event, payload, delivery)
        if followed is not None:
            return followed
    try:
        return await automations_service.fire(services, automation.id, trigger_type=event.event, payload=payload,
                                              delivery_id=delivery, event_summary=_clean(event.summary))
    except (BadRequest, NotFound) as exc:  # disabled or deleted since it was matched
        log.info("integration skipped automation_id=%s: %s", automation.id, exc)
        return None


def _clean(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if v not in (None, "", [])}


async def _follow_up(services: Any, automation: Automation, event: InboundEvent, payload: dict[str, Any],
                     delivery: str | None) -> AutomationExecution | None:
    """Send the event to the live workspace an earlier execution created for the same PR, MR or thread, and
    record it as an execution on that workspace. None when there is none (the caller fires afresh)."""
    if event.kind == "slack" and not (payload.get("event") or {}).get("thread_ts"):
        return None  # a new root message starts its own thread
    key_of = GROUP_KEYS[event.kind]
    async with services.sessions() as session:
        if delivery is not None:
            existing = await session.scalar(select(AutomationExecution).where(
                AutomationExecution.automation_id == automation.id, AutomationExecution.delivery_id == delivery))
            if existing is not None:
                return existing
        earlier = list(await session.scalars(select(AutomationExecution).where(
            AutomationExecution.automation_id == automation.id, AutomationExecution.workspace_id.is_not(None))
            .order_by(AutomationExecution.triggered_at.desc()).limit(GROUP_SCAN)))
        target = next((e.workspace_id for e in earlier if key_of(e.trigger_payload or {}) == event.group_key), None)
        workspace = await session.get(Workspace, target) if target else None
        if workspace is None or workspace.status not in LIVE:
            return None
        principal = await automations_service.owner_principal(session, automation)
        message = automations_service.render_prompt(automation.prompt, _clean(event.summary))
        execution = AutomationExecution(
            automation_id=automation.id, organization_id=automation.organization_id, triggered_at=utcnow(),
            trigger_type=event.event, trigger_payload=payload, delivery_id=delivery, status="running",
            prompt=message, config=automations_service.workspace_config(automation.config),
            workspace_id=workspace.id, fire_at=utcnow())
        session.add(execution)
        try:
            await session.commit()
        except IntegrityError:  # the same delivery, recorded concurrently
            await session.rollback()
            return await session.scalar(select(AutomationExecution).where(
                AutomationExecution.automation_id == automation.id, AutomationExecution.delivery_id == delivery))
    try:
        await services.replicas.send_message(principal, str(workspace.id), message)
    except ReplicasError as exc:
        log.warning("integration follow-up failed execution_id=%s workspace_id=%s: %s", execution.id,
                    workspace.id, exc)
        async with services.sessions() as session:
            row = await session.get(AutomationExecution, execution.id)
            row.status, row.completed_at = "failed", utcnow()
            row.error = exc.error + (f": {exc.details}" if exc.details else "")
            await session.commit()
        return execution
    log.info("integration follow-up sent automation_id=%s workspace_id=%s group=%s", automation.id, workspace.id,
             event.group_key)
    return execution

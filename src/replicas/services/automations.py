"""Automations (spec §3.9, §6): the records, and firing them into fresh workspaces.

    automation = await create_automation(session, box, principal, data)   # CRUD, audited
    execution = await fire(app.state, automation.id, trigger_type="custom", payload=body,
                           delivery_id=request_id)                          # every trigger ends here
    await reconcile_executions(app.state)                                   # running -> completed | failed

`fire` is the one path from any trigger (cron scheduler, webhook receivers, the custom webhook, the
manual trigger) to a workspace. `services` is anything with `.sessions` and `.replicas` (app.state).

An execution goes `pending -> creating -> running -> completed | failed`:
- `pending`: recorded (deduplicated by `(automation, delivery_id)`). With `debounce_seconds`, later
  events update the pending one (latest payload wins) and push its `fire_at` back; the reconciler
  starts it once the window is quiet.
- `creating`: claimed by one conditional UPDATE, so exactly one process creates its workspace.
- `running`: the workspace exists (`replicas.create(..., source="automation")`, booting in the
  background). `completed` once its first turn completed (or it was archived); `failed` when creation
  raised or the workspace went to `error`.
- Circuit breaker: `BREAKER_THRESHOLD` consecutive failed executions disable the automation, with the
  reason in `disabled_reason` (and the audit log); a completed execution resets the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Forbidden, NotFound, ReplicasError
from replicas.services import audit, cron_schedule, loops
from replicas.services.automation_triggers import cron_trigger, event_triggers, has_custom, normalise_triggers
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.services.replica_requests import SUPPORTED_AGENTS, NewReplica
from replicas.storable import unstorable
from replicas.store.models import Automation, AutomationExecution, Repository, User, Workspace, utcnow

log = logging.getLogger("replicas.automations")

BREAKER_THRESHOLD = 5
# A non-debounced execution is started by the process that recorded it; if that process stops first,
# the reconciler starts it after this long.
RECOVERY_SECONDS = 30
# A `creating` execution older than this lost its process mid-create: it is failed.
CREATING_TIMEOUT_SECONDS = 300
PAYLOAD_HEADING = "## Trigger Payload"
LEGACY_POLICIES = {"delete_when_done": "archive_when_done"}  # spec §7.3: automations archive, not delete
_FIELDS = ("description", "prompt", "debounce_seconds", "enabled", "workspace_lifecycle_policy",
           "workspace_auto_stop_minutes", "workspace_size", "config", "agent_provider", "model",
           "thinking_level", "plan_mode", "goal_mode", "fast_mode")


# -- records ---------------------------------------------------------------------------------------


def snapshot(row: Automation) -> dict[str, Any]:
    """The audited view (no token)."""
    return {"name": row.name, "scope": "user" if row.user_id else "org", "environment_id": str(row.environment_id),
            "triggers": row.triggers, "enabled": row.enabled, "disabled_reason": row.disabled_reason,
            **{field: getattr(row, field) for field in _FIELDS if field != "enabled"}}


def webhook_token(box: SecretBox, row: Automation) -> str | None:
    return box.decrypt(row.webhook_token_encrypted) if row.webhook_token_encrypted else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(box: SecretBox, row: Automation) -> str:
    token = secrets.token_urlsafe(32)
    row.webhook_token_hash, row.webhook_token_encrypted = hash_token(token), box.encrypt(token)
    return token


def _visible(principal: Principal):
    if principal.user_id is None:
        return Automation.user_id.is_(None)
    return (Automation.user_id.is_(None)) | (Automation.user_id == principal.user_id)


async def get_automation(session: AsyncSession, principal: Principal, ref: str) -> Automation:
    """An automation the caller may see (org ones, and their own personal ones); 404 otherwise."""
    row = await session.scalar(select(Automation).where(
        Automation.id == parse_uuid(ref, "Automation"), Automation.organization_id == principal.organization_id,
        _visible(principal)))
    if row is None:
        raise NotFound("Automation not found")
    return row


def _derive_schedule(row: Automation, now: datetime | None = None, reset: bool = False) -> None:
    """Set the `cron_*` columns from the cron trigger (cleared without one). `reset` starts from the next
    slot after now (re-enabling: no run for a slot missed while disabled)."""
    cron = cron_trigger(row.triggers)
    if cron is None:
        row.cron_expression = row.cron_timezone = row.cron_next_fire_at = None
        return
    changed = (row.cron_expression, row.cron_timezone) != (cron["schedule"], cron["timezone"])
    row.cron_expression, row.cron_timezone = cron["schedule"], cron["timezone"]
    if changed or reset or row.cron_next_fire_at is None:
        row.cron_next_fire_at = cron_schedule.next_fire_time(cron_schedule.parse(cron["schedule"]),
                                                             cron["timezone"], now or utcnow())


def next_cron_slot(row: Automation, after: datetime) -> datetime | None:
    """The automation's next cron slot strictly after `after` (UTC), or None without a cron trigger."""
    if not row.cron_expression:
        return None
    return cron_schedule.next_fire_time(cron_schedule.parse(row.cron_expression), row.cron_timezone or "UTC",
                                        after)


async def _check_environment(session: AsyncSession, principal: Principal, ref: str, personal: bool) -> uuid.UUID:
    try:
        env = await resolve_environment(session, principal, str(ref))
    except NotFound:
        raise BadRequest("Environment not found", f"environment_id: no environment {ref}") from None
    if env.user_id is not None and not personal:
        raise BadRequest("Invalid request", "environment_id: an org automation needs a team environment")
    return env.id


def _check_overrides(row: Automation) -> None:
    if row.agent_provider is not None and row.agent_provider not in SUPPORTED_AGENTS:
        raise BadRequest("Invalid request", f"agent_provider: {row.agent_provider!r} is not available on this "
                                            f"server (one of {', '.join(SUPPORTED_AGENTS)})")
    if row.model is not None and row.agent_provider is None:
        raise BadRequest("Invalid request", "model: requires agent_provider")
    if not (row.prompt or "").strip():
        raise BadRequest("Invalid request", "prompt: must not be empty")


def _apply(row: Automation, data: dict[str, Any]) -> None:
    for field in _FIELDS:
        if field in data:
            value = data[field]
            if field == "workspace_lifecycle_policy":
                value = LEGACY_POLICIES.get(value or "default", value or "default")
            elif field == "config":
                value = value or {}
            elif field == "plan_mode":
                value = bool(value)
            elif field == "enabled" and value is None:
                continue
            setattr(row, field, value)
    if data.get("enabled"):
        row.consecutive_failures, row.disabled_reason = 0, None  # re-enabled by a person: a fresh start


async def create_automation(session: AsyncSession, box: SecretBox, principal: Principal,
                            data: dict[str, Any]) -> Automation:
    """Create an org (`scope=org`) or personal (`scope=user`, personal keys only) automation."""
    personal = (data.get("scope") or "org") == "user"
    if personal and principal.user_id is None:
        raise Forbidden("Personal automations require user authentication",
                        "use a personal API key to create scope=user automations")
    name = (data.get("name") or "").strip()
    if not name:
        raise BadRequest("Invalid request", "name: must not be blank")
    row = Automation(organization_id=principal.organization_id, name=name,
                     user_id=principal.user_id if personal else None, created_by=principal.user_id,
                     triggers=normalise_triggers(data.get("triggers")),
                     environment_id=await _check_environment(session, principal, data.get("environment_id"),
                                                             personal),
                     enabled=True, workspace_lifecycle_policy="default", config={}, plan_mode=False,
                     consecutive_failures=0)
    _apply(row, data)
    _check_overrides(row)
    if has_custom(row.triggers):
        _new_token(box, row)
    _derive_schedule(row)
    session.add(row)
    await session.flush()
    audit.record(session, principal, "automation.created", "automation", row.id, after=snapshot(row))
    await session.commit()
    return row


async def update_automation(session: AsyncSession, box: SecretBox, principal: Principal, ref: str,
                            data: dict[str, Any]) -> Automation:
    """Apply a PATCH (only the fields sent); `triggers` replaces the whole list."""
    row = await get_automation(session, principal, ref)
    before = snapshot(row)
    if "name" in data:
        name = (data["name"] or "").strip()
        if not name:
            raise BadRequest("Invalid request", "name: must not be blank")
        row.name = name
    if "environment_id" in data:
        row.environment_id = await _check_environment(session, principal, data["environment_id"],
                                                       row.user_id is not None)
    if "triggers" in data:
        row.triggers = normalise_triggers(data["triggers"])
        if not has_custom(row.triggers):
            row.webhook_token_hash = row.webhook_token_encrypted = None
        elif row.webhook_token_hash is None:
            _new_token(box, row)
    reenabled = data.get("enabled") is True and not row.enabled
    _apply(row, data)
    _check_overrides(row)
    _derive_schedule(row, reset=reenabled)
    row.updated_at = utcnow()
    audit.record(session, principal, "automation.updated", "automation", row.id, before=before, after=snapshot(row))
    await session.commit()
    return row


async def delete_automation(session: AsyncSession, principal: Principal, ref: str) -> None:
    """Delete the automation and its execution history (the workspaces it created stay)."""
    row = await get_automation(session, principal, ref)
    audit.record(session, principal, "automation.deleted", "automation", row.id, before=snapshot(row))
    await session.execute(AutomationExecution.__table__.delete().where(AutomationExecution.automation_id == row.id))
    await session.delete(row)
    await session.commit()


async def rotate_webhook_token(session: AsyncSession, box: SecretBox, principal: Principal, ref: str) -> Automation:
    """A new custom-webhook token; the old one stops working at once."""
    row = await get_automation(session, principal, ref)
    if not has_custom(row.triggers):
        raise BadRequest("Automation has no custom trigger", "only automations with a custom trigger have a token")
    _new_token(box, row)
    row.updated_at = utcnow()
    audit.record(session, principal, "automation.webhook_token_rotated", "automation", row.id)
    await session.commit()
    return row


def _page_check(page: int, limit: int) -> None:
    if page < 1 or not 1 <= limit <= 100:
        raise BadRequest("Invalid pagination", "page must be >= 1 and limit between 1 and 100")


async def list_automations(session: AsyncSession, principal: Principal, *, page: int = 1, limit: int = 20,
                           trigger_type: str | None = None, enabled: bool | None = None,
                           search: str | None = None, scope: str = "org") -> tuple[list[Automation], int]:
    """One page, newest first, and the total. `scope=user` with an org key is empty (it owns none)."""
    _page_check(page, limit)
    query = select(Automation).where(Automation.organization_id == principal.organization_id)
    if scope == "org":
        query = query.where(Automation.user_id.is_(None))
    elif scope == "user":
        if principal.user_id is None:
            return [], 0
        query = query.where(Automation.user_id == principal.user_id)
    elif scope == "all":
        query = query.where(_visible(principal))
    else:
        raise BadRequest("Invalid request", "scope: must be one of org, user, all")
    if enabled is not None:
        query = query.where(Automation.enabled == enabled)
    if search and search.strip():
        query = query.where(func.lower(Automation.name).contains(search.strip().lower(), autoescape=True))
    query = query.order_by(Automation.created_at.desc(), Automation.id)
    if trigger_type and trigger_type != "all":
        # Triggers are JSON: filter here (an organization has tens of automations, not millions).
        rows = [row for row in await session.scalars(query)
                if any(t.get("type") == trigger_type for t in row.triggers or [])]
        return rows[(page - 1) * limit: page * limit], len(rows)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.offset((page - 1) * limit).limit(limit))
    return list(rows), int(total or 0)


async def list_executions(session: AsyncSession, principal: Principal, ref: str, *, page: int = 1,
                          limit: int = 20) -> tuple[list[AutomationExecution], int]:
    """An automation's executions, newest first, and the total."""
    _page_check(page, limit)
    row = await get_automation(session, principal, ref)
    where = AutomationExecution.automation_id == row.id
    total = await session.scalar(select(func.count()).select_from(AutomationExecution).where(where))
    rows = await session.scalars(select(AutomationExecution).where(where)
                                 .order_by(AutomationExecution.triggered_at.desc(), AutomationExecution.id)
                                 .offset((page - 1) * limit).limit(limit))
    return list(rows), int(total or 0)


async def find_by_webhook_token(session: AsyncSession, token: str) -> Automation | None:
    """The enabled automation with a custom trigger whose token this is, else None (the three cases a
    caller must not tell apart). The lookup is by SHA-256, so its time does not depend on how much of a
    real token the guess shares; the final comparison is constant-time."""
    digest = hash_token(token)
    row = await session.scalar(select(Automation).where(Automation.webhook_token_hash == digest))
    if row is None or not hmac.compare_digest(row.webhook_token_hash or "", digest):
        return None
    if not row.enabled or not has_custom(row.triggers):
        return None
    return row


def custom_webhook_payload(body: bytes) -> tuple[dict[str, Any], Any]:
    """(the execution's `trigger_payload`, what the prompt embeds) for a custom-webhook body (spec §6).

    JSON is embedded as sent; a JSON value that is not an object is stored as `{"body": value}` (a
    `trigger_payload` is an object). Anything else (plain text, broken JSON whatever its content type, bytes
    that are not UTF-8, an empty body) is wrapped as `{"raw": "<body>"}`, undecodable bytes as U+FFFD: a
    sender's malformed body is still an event the automation should see, and the contract says so. So is
    JSON that could not be stored or shown as parsed (an unpaired surrogate, NaN, absurd nesting: see
    `replicas.storable`); its text keeps what was sent. NUL is fine: the payload is only ever kept as JSON."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        return _wrapped(body)
    if unstorable(value, nul_allowed=True):
        return _wrapped(body)
    if isinstance(value, dict):
        return value, value
    return {"body": value}, value


def _wrapped(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = {"raw": body.decode("utf-8", errors="replace")}
    return raw, raw


# -- firing ----------------------------------------------------------------------------------------


def render_prompt(prompt: str, embedded: Any) -> str:
    """The automation's prompt, with the trigger's data under `## Trigger Payload` as pretty JSON (spec §6).
    Nothing is appended for an empty payload (a manual or cron run without one)."""
    if embedded is None or embedded == {}:
        return prompt
    body = json.dumps(embedded, indent=2, ensure_ascii=False, default=str)
    return f"{prompt}\n\n{PAYLOAD_HEADING}\n```json\n{body}\n```"


def workspace_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The WorkspaceConfig snapshotted onto each workspace: `pr_followups` is off unless set (spec §3.2.1)."""
    config = dict(config or {})
    config["capabilities"] = {"pr_followups": False, **(config.get("capabilities") or {})}
    return config


def _workspace_name(name: str) -> str:
    slug = re.sub(r"\s+", "-", name.strip()) or "automation"
    return slug[:255]


async def owner_principal(session: AsyncSession, row: Automation) -> Principal:
    """Who the workspaces are created as: the owner of a personal automation, else the org's bot."""
    if row.user_id is not None:
        user = await session.get(User, row.user_id)
        if user is None:
            raise NotFound("Automation owner not found")
        return Principal(row.organization_id, None, user.id, user.role, user.display_name)
    return Principal(row.organization_id, None, None, "admin", f"automation:{row.name}")


async def fire(services: Any, automation_id: uuid.UUID | str, *, trigger_type: str, payload: dict[str, Any],
               delivery_id: str | None = None, event_summary: Any = None,
               debounce: bool = True) -> AutomationExecution:
    """Fire an automation: record an execution and create its workspace (source `automation`).

    - `payload` is stored as the execution's `trigger_payload` (the raw event, an object);
      `event_summary`, when given, is what the prompt embeds under `## Trigger Payload` instead (a
      receiver's normalised event: PR number, title, URL, repository, actor ...).
    - `delivery_id` (the provider's delivery id, X-Request-Id ...) deduplicates: a repeat returns the
      execution already recorded for it and fires nothing.
    - With `debounce_seconds` (and `debounce`), the execution stays `pending` and a burst updates it; the
      reconciler starts it. Otherwise the workspace is created now: the execution comes back `running`
      with its `workspace_id`, or `failed` with `error` (which counts towards the circuit breaker).
    - Raises NotFound for an unknown automation and BadRequest for a disabled one: callers filter first.
    """
    automation_id = automation_id if isinstance(automation_id, uuid.UUID) else parse_uuid(str(automation_id),
                                                                                       "Automation")
    now = utcnow()
    async with services.sessions() as session:
        row = await session.get(Automation, automation_id)
        if row is None:
            raise NotFound("Automation not found")
        if not row.enabled:
            raise BadRequest("Automation is disabled", row.disabled_reason)
        if delivery_id is not None:
            existing = await _by_delivery(session, automation_id, delivery_id)
            if existing is not None:
                return existing
        window = (row.debounce_seconds or 0) if debounce else 0
        prompt = render_prompt(row.prompt, payload if event_summary is None else event_summary)
        if window > 0:
            pending = await session.scalar(select(AutomationExecution).where(
                AutomationExecution.automation_id == automation_id, AutomationExecution.status == "pending")
                .order_by(AutomationExecution.triggered_at.desc()).limit(1).with_for_update())
            if pending is not None:
                pending.trigger_type, pending.trigger_payload, pending.prompt = trigger_type, payload, prompt
                pending.delivery_id = delivery_id or pending.delivery_id
                pending.fire_at = now + timedelta(seconds=window)
                row.last_fired_at = now
                if await _commit_or_none(session):
                    return pending
                return await _existing(services, automation_id, delivery_id)
        execution = AutomationExecution(
            automation_id=automation_id, organization_id=row.organization_id, triggered_at=now,
            trigger_type=trigger_type, trigger_payload=payload, delivery_id=delivery_id, status="pending",
            prompt=prompt, config=workspace_config(row.config),
            fire_at=now + timedelta(seconds=window if window > 0 else RECOVERY_SECONDS))
        session.add(execution)
        row.last_fired_at = now
        if not await _commit_or_none(session):
            return await _existing(services, automation_id, delivery_id)
    log.info("automation fired automation_id=%s execution_id=%s trigger=%s delivery_id=%s debounced=%s",
             automation_id, execution.id, trigger_type, delivery_id, window > 0)
    if window > 0:
        return execution
    return await start_execution(services, execution.id)


async def _commit_or_none(session: AsyncSession) -> bool:
    try:
        await session.commit()
        return True
    except IntegrityError:  # the same delivery, recorded concurrently by another request or process
        await session.rollback()
        return False


async def _by_delivery(session: AsyncSession, automation_id: uuid.UUID, delivery_id: str):
    return await session.scalar(select(AutomationExecution).where(
        AutomationExecution.automation_id == automation_id, AutomationExecution.delivery_id == delivery_id))


async def _existing(services: Any, automation_id: uuid.UUID, delivery_id: str | None) -> AutomationExecution:
    async with services.sessions() as session:
        found = await _by_delivery(session, automation_id, delivery_id) if delivery_id else None
    if found is None:  # pragma: no cover - an IntegrityError without the conflicting row
        raise ReplicasError("Could not record the execution")
    return found


async def _load_execution(services: Any, execution_id: uuid.UUID) -> AutomationExecution:
    async with services.sessions() as session:
        execution = await session.get(AutomationExecution, execution_id)
    if execution is None:
        raise NotFound("Execution not found")
    return execution


async def _transition(session: AsyncSession, execution_id: uuid.UUID, source: str, **values: Any) -> bool:
    """Move an execution out of `source`; whether this caller made the move (one winner across processes)."""
    result = await session.execute(
        update(AutomationExecution).where(AutomationExecution.id == execution_id,
                                          AutomationExecution.status == source)
        .values(updated_at=utcnow(), **values).execution_options(synchronize_session=False))
    return result.rowcount == 1


async def start_execution(services: Any, execution_id: uuid.UUID) -> AutomationExecution:
    """Claim a pending execution (`creating`) and create its workspace: `running`, or `failed`. An
    execution someone else claimed first is returned as it is."""
    async with services.sessions() as session:
        claimed = await _transition(session, execution_id, "pending", status="creating")
        await session.commit()
    if not claimed:
        return await _load_execution(services, execution_id)
    execution = await _load_execution(services, execution_id)
    try:
        async with services.sessions() as session:
            row = await session.get(Automation, execution.automation_id)
            if row is None:
                raise NotFound("Automation not found")
            principal = await owner_principal(session, row)
            request = NewReplica(
                name=_workspace_name(row.name), message=execution.prompt, environment_id=str(row.environment_id),
                coding_agent=row.agent_provider or "claude", model=row.model,
                lifecycle_policy=LEGACY_POLICIES.get(row.workspace_lifecycle_policy, row.workspace_lifecycle_policy),
                config=execution.config, size=row.workspace_size or "small", plan_mode=row.plan_mode or None,
                goal_mode=row.goal_mode, fast_mode=row.fast_mode, thinking_level=row.thinking_level)
        workspace = await services.replicas.create(principal, request, wait=False, source="automation",
                                                   auto_stop_minutes=row.workspace_auto_stop_minutes)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded on the execution, and counted by the breaker
        message = exc.error + (f": {exc.details}" if exc.details else "") if isinstance(exc, ReplicasError) \
            else (str(exc) or type(exc).__name__)
        log.warning("automation execution failed to start execution_id=%s error=%s", execution_id, message)
        await _finish(services, execution_id, "creating", "failed", error=message)
        return await _load_execution(services, execution_id)
    async with services.sessions() as session:
        await _transition(session, execution_id, "creating", status="running", workspace_id=workspace.id)
        await session.commit()
    log.info("automation execution running execution_id=%s workspace_id=%s", execution_id, workspace.id)
    return await _load_execution(services, execution_id)


async def _finish(services: Any, execution_id: uuid.UUID, source: str, status: str, *, error: str | None = None,
                  counts: bool = True) -> None:
    """End an execution (`completed` or `failed`) and update the circuit breaker in the same transaction."""
    async with services.sessions() as session:
        if not await _transition(session, execution_id, source, status=status, error=error, completed_at=utcnow()):
            return
        execution = await session.get(AutomationExecution, execution_id)
        row = await session.get(Automation, execution.automation_id, with_for_update=True)
        if row is not None and status == "completed":
            row.consecutive_failures = 0
        elif row is not None and counts:
            row.consecutive_failures = (row.consecutive_failures or 0) + 1
            if row.enabled and row.consecutive_failures >= BREAKER_THRESHOLD:
                before = snapshot(row)
                row.enabled = False
                row.disabled_reason = (f"Disabled after {row.consecutive_failures} consecutive failed executions; "
                                       f"last error: {error}")
                audit.record(session, Principal.system(row.organization_id), "automation.disabled", "automation",
                             row.id, before=before, after=snapshot(row))
                log.warning("automation disabled by the circuit breaker automation_id=%s failures=%d error=%s",
                            row.id, row.consecutive_failures, error)
        await session.commit()


async def trigger_manually(services: Any, principal: Principal, ref: str, payload: dict[str, Any] | None,
                           pr: dict[str, Any] | None) -> AutomationExecution:
    """POST /v1/automations/{id}/trigger: allowed with a cron trigger, or with `pr` and a matching
    `pull_request.command` trigger (spec §6); 400 otherwise. Debounce does not apply."""
    async with services.sessions() as session:
        row = await get_automation(session, principal, ref)
        body: dict[str, Any] = dict(payload or {})
        if pr is not None:
            commands = event_triggers(row.triggers, "github", "pull_request.command")
            repository_id = str(pr["repository_id"])
            if not commands:
                raise BadRequest("Automation cannot be triggered with a pull request",
                                 "pr is only allowed for automations with a GitHub pull_request.command trigger")
            if not any(not c.get("repository_ids") or repository_id in c["repository_ids"] for c in commands):
                raise BadRequest("Automation cannot be triggered with a pull request",
                                 "pr.repository_id is not one of the pull_request.command trigger's repositories")
            repo = await session.scalar(select(Repository).where(
                Repository.id == parse_uuid(repository_id, "Repository"),
                Repository.organization_id == principal.organization_id))
            if repo is None:
                raise BadRequest("Invalid request", "pr.repository_id: no such repository")
            body["pull_request"] = {"repository_id": repository_id, "repository": repo.name,
                                    "number": int(pr["number"]), "url": _pr_url(repo.url, int(pr["number"]))}
            trigger_type = "pull_request.command"
        elif cron_trigger(row.triggers) is None:
            raise BadRequest("Automation cannot be triggered manually",
                             "only automations with a cron trigger (or a pull_request.command trigger, with pr) "
                             "can be triggered")
        else:
            trigger_type = "manual"
        audit.record(session, principal, "automation.triggered", "automation", row.id)
        await session.commit()
    return await fire(services, row.id, trigger_type=trigger_type, payload=body, debounce=False)


def _pr_url(repository_url: str, number: int) -> str | None:
    base = repository_url.removesuffix(".git").rstrip("/")
    return f"{base}/pull/{number}" if base.startswith(("http://", "https://")) else None


# -- reconciling -----------------------------------------------------------------------------------


async def reconcile_executions(services: Any, now: datetime | None = None) -> dict[str, int]:
    """One pass: finish running executions from their workspace's state, start due pending ones (debounce
    windows, or ones whose process stopped), fail ones stuck `creating`. (`workspace_auto_stop_minutes` is the
    workspace's own timer, applied by the lifecycle reaper.)
    Safe to run in several processes at once (every move is a conditional UPDATE); returns counts."""
    now = now or utcnow()
    counts = {"completed": 0, "failed": 0, "started": 0}
    async with services.sessions() as session:
        running = list(await session.execute(
            select(AutomationExecution.id, AutomationExecution.workspace_id, Workspace.status, Workspace.snapshot,
                   Workspace.error_message)
            .outerjoin(Workspace, Workspace.id == AutomationExecution.workspace_id)
            .where(AutomationExecution.status == "running")))
        due = list(await session.scalars(select(AutomationExecution.id).where(
            AutomationExecution.status == "pending", AutomationExecution.fire_at <= now)))
        stuck = list(await session.scalars(select(AutomationExecution.id).where(
            AutomationExecution.status == "creating",
            AutomationExecution.updated_at < now - timedelta(seconds=CREATING_TIMEOUT_SECONDS))))
    for execution_id, _workspace_id, status, snap, error in running:
        if status is None:
            await _finish(services, execution_id, "running", "failed", counts=False,
                          error="The workspace was deleted before the agent finished")
            counts["failed"] += 1
        elif status == "error":
            await _finish(services, execution_id, "running", "failed", error=error or "Workspace setup failed")
            counts["failed"] += 1
        elif int((snap or {}).get("turns_completed", 0)) > 0 or status == "archived":
            await _finish(services, execution_id, "running", "completed")
            counts["completed"] += 1
    for execution_id in stuck:
        await _finish(services, execution_id, "creating", "failed",
                      error="The control plane stopped while the workspace was being created")
        counts["failed"] += 1
    for execution_id in due:
        with contextlib.suppress(NotFound):
            execution = await start_execution(services, execution_id)
            counts["started"] += execution.status != "pending"
    return counts



async def run_reconciler(services: Any, interval: float, owner_id: str) -> None:
    """Reconcile executions every `interval` seconds, in one process at a time (a database lease)."""
    await loops.run_every("automation reconcile", interval, lambda: reconcile_executions(services),
                          lease=loops.Lease(services.sessions, "automation-reconciler", owner_id))


def start_reconciler(state: Any) -> asyncio.Task:
    """Start the reconcile loop for an app (`app.state`: sessions, replicas, settings); cancel it to stop."""
    return asyncio.create_task(run_reconciler(state, state.settings.lifecycle_interval_seconds,
                                              state.replicas.owner_id), name="automation-reconciler")


async def stop_reconciler(task: asyncio.Task | None) -> None:
    await loops.cancel(task)

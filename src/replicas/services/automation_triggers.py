"""Automation triggers (spec §6, contract AutomationTrigger): validation, normalisation, and lookups.

    triggers = normalise_triggers(body["triggers"])      # BadRequest naming the bad trigger
    cron = cron_trigger(triggers)                         # {"schedule", "timezone"} or None
    matching = event_triggers(triggers, "github", "pull_request.opened")

Stored triggers are `{"type": ..., "config": {...}}` with only the contract's fields (GitHub's
undocumented `attach_to_user` is kept, spec §6), defaults filled in (cron `timezone` "UTC", Slack
`group_thread_replies` true), and cron schedules checked (5 fields, IANA timezone, hourly at most).
Receivers use `event_triggers` and the filter helpers to decide whether an event fires an automation.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from replicas.errors import BadRequest
from replicas.services import cron_schedule

# `linear` is ours (the contract has no Linear trigger; the issue asks for one).
TRIGGER_TYPES = ("cron", "github", "gitlab", "slack", "sentry", "custom", "linear")
SENTRY_LEVELS = ("debug", "info", "warning", "error", "fatal")


class _Config(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CronConfig(_Config):
    schedule: str
    timezone: str = "UTC"

    @field_validator("timezone", mode="before")
    @classmethod
    def _default_zone(cls, value):
        return "UTC" if value is None else value


class _RepositoryEvent(_Config):
    repository_ids: list[str] | None = None
    group_pr_events: bool | None = None
    excluded_actors: list[str] | None = None

    @field_validator("repository_ids")
    @classmethod
    def _uuids(cls, value):
        for item in value or []:
            uuid.UUID(item)
        return value


class GitHubConfig(_RepositoryEvent):
    event: Literal["pull_request.opened", "pull_request.synchronize", "pull_request.merged",
                   "pull_request.closed", "pull_request.command"]
    attach_to_user: bool | None = None


class GitLabConfig(_RepositoryEvent):
    event: Literal["merge_request.opened", "merge_request.updated", "merge_request.merged",
                   "merge_request.closed"]


class SlackConfig(_Config):
    event: Literal["message"]
    channel_ids: list[str] | None = None
    group_thread_replies: bool = True


class SentryConfig(_Config):
    event: Literal["event_alert.triggered", "issue.created", "error.created"]
    project_slugs: list[str] | None = None
    min_level: Literal["debug", "info", "warning", "error", "fatal"] | None = None


class LinearConfig(_Config):
    event: Literal["issue.created", "issue.updated", "comment.created"]
    team_keys: list[str] | None = None


class CustomConfig(_Config):
    pass


CONFIGS: dict[str, type[_Config]] = {"cron": CronConfig, "github": GitHubConfig, "gitlab": GitLabConfig,
                                     "slack": SlackConfig, "sentry": SentryConfig, "custom": CustomConfig,
                                     "linear": LinearConfig}


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors())


def normalise_triggers(raw: Any) -> list[dict[str, Any]]:
    """Validate the contract's trigger list and return it normalised; BadRequest otherwise.

    Rules: at least one trigger; each a known `type` with a valid `config`; at most one cron trigger,
    and at most one event trigger per event value (so `pull_request.opened` twice is refused, while
    `pull_request.opened` + `merge_request.opened` is fine); at most one custom trigger (it has one token).
    """
    if not isinstance(raw, list) or not raw:
        raise BadRequest("Invalid request", "triggers: at least one trigger is required")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, trigger in enumerate(raw):
        where = f"triggers.{index}"
        if not isinstance(trigger, dict):
            raise BadRequest("Invalid request", f"{where}: must be an object with type and config")
        kind = trigger.get("type")
        if kind not in TRIGGER_TYPES:
            raise BadRequest("Invalid request", f"{where}.type: must be one of {', '.join(TRIGGER_TYPES)}")
        config = trigger.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise BadRequest("Invalid request", f"{where}.config: must be an object")
        try:
            parsed = CONFIGS[kind].model_validate(config)
        except ValidationError as exc:
            raise BadRequest("Invalid request", f"{where}.config: {_describe(exc)}") from None
        normal = parsed.model_dump(exclude_none=True)
        if kind == "cron":
            try:
                schedule = cron_schedule.validate(normal["schedule"], normal["timezone"])
            except cron_schedule.CronError as exc:
                raise BadRequest("Invalid cron trigger", f"{where}.config: {exc}") from None
            normal["schedule"] = schedule.expression
        key = kind if kind in ("cron", "custom") else f"event:{normal['event']}"
        if key in seen:
            what = "cron trigger" if kind == "cron" else ("custom trigger" if kind == "custom"
                                                         else f"trigger for event {normal['event']!r}")
            raise BadRequest("Duplicate trigger", f"{where}: at most one {what} is allowed")
        seen.add(key)
        out.append({"type": kind, "config": normal})
    return out


def cron_trigger(triggers: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((t["config"] for t in triggers or [] if t.get("type") == "cron"), None)


def has_custom(triggers: list[dict[str, Any]]) -> bool:
    return any(t.get("type") == "custom" for t in triggers or [])


def event_triggers(triggers: list[dict[str, Any]], kind: str, event: str) -> list[dict[str, Any]]:
    """The configs of `kind` triggers listening for `event` (at most one, by the duplicate rule)."""
    return [t["config"] for t in triggers or [] if t.get("type") == kind and t["config"].get("event") == event]


def actor_excluded(config: dict[str, Any], actor: str | None) -> bool:
    """Whether `actor` is on the trigger's `excluded_actors` (case-insensitive, a leading `@` ignored)."""
    if not actor:
        return False
    wanted = actor.lstrip("@").lower()
    return any(item.lstrip("@").lower() == wanted for item in config.get("excluded_actors") or [])


def repository_allowed(config: dict[str, Any], repository_id: str | None) -> bool:
    """Whether the trigger's `repository_ids` filter (omitted = all) admits the repository."""
    ids = config.get("repository_ids")
    return not ids or (repository_id is not None and str(repository_id) in ids)


def sentry_level_allowed(config: dict[str, Any], level: str | None) -> bool:
    """Whether `level` reaches the trigger's `min_level` (inclusive; omitted = every level)."""
    minimum = config.get("min_level")
    if minimum is None:
        return True
    return level in SENTRY_LEVELS and SENTRY_LEVELS.index(level) >= SENTRY_LEVELS.index(minimum)

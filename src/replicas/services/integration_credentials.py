"""What the server needs to answer a provider, beside the inbound signing secret: the API token (stored
encrypted, never shown again) and the team loop's options, set with `PUT /v1/integrations/{provider}`.

- `token` (all four): a GitHub installation or personal token, a GitLab token, the Slack bot token
  (`xoxb-`), a Linear API key.
- `private_key`, `app_id`, `installation_id` (github): a GitHub App instead of a token. The App's private key
  (PEM; stored encrypted, never shown again) signs in as the App, which mints installation tokens
  (providers/github_app.py); `installation_id` is optional (else GitHub names the installation of each
  repository). With both a token and an App, the App answers.
- `api_url` (all four): the API's base URL (GitHub Enterprise, self-managed GitLab, a proxy), checked like
  any tenant URL.
- `allowed_logins` (github, gitlab): who may start or steer a workspace with a mention or a review
  (case-insensitive; empty: nobody).
- `bot_login` (github, gitlab): the login the token comments as; its comments never reach a workspace.
- `bot_user_id` (slack, linear): Slack, the bot's user id (else taken from each delivery); Linear, the
  Replicas user's id (assigning an issue to it starts a workspace).
- `default_environment_id` (slack, linear): the environment when a message names none with `[env:name]`.

    credential = await load(sessions, box, organization_id, "github")
    credential.allows("Octocat")        # on the allow-list?
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from replicas import outbound
from replicas.crypto import SecretBox
from replicas.errors import BadRequest
from replicas.services.environments import parse_uuid
from replicas.services.providers.github_app import load_private_key
from replicas.store.models import Environment, utcnow
from replicas.store.team_models import IntegrationCredential

LOOP_PROVIDERS = ("github", "gitlab", "slack", "linear")
OPTIONS = {"api_url": LOOP_PROVIDERS, "allowed_logins": ("github", "gitlab"), "bot_login": ("github", "gitlab"),
           "bot_user_id": ("slack", "linear"), "default_environment_id": ("slack", "linear"),
           "app_id": ("github",), "installation_id": ("github",)}
SECRETS = ("token", "private_key")
MAX_PRIVATE_KEY = 16384
MAX_LOGINS = 500


@dataclass(frozen=True)
class LoopCredential:
    """An organization's outbound credential for one provider, decrypted (empty when none is set)."""

    provider: str
    token: str | None = None
    api_url: str | None = None
    allowed_logins: frozenset[str] = field(default_factory=frozenset)
    bot_login: str | None = None
    bot_user_id: str | None = None
    default_environment_id: str | None = None
    app_id: str | None = None
    installation_id: str | None = None
    private_key: str | None = field(default=None, repr=False)

    @property
    def github_app(self) -> bool:
        return self.provider == "github" and bool(self.app_id and self.private_key)

    @property
    def can_answer(self) -> bool:
        """Whether the server can call the provider: a token, or a GitHub App."""
        return bool(self.token) or self.github_app

    def allows(self, login: str | None) -> bool:
        return bool(login) and _login(login) in self.allowed_logins

    def is_bot(self, login: str | None) -> bool:
        return bool(login) and bool(self.bot_login) and _login(login) == _login(self.bot_login)


def _login(value: str) -> str:
    return value.strip().lstrip("@").lower()


async def get_row(session: AsyncSession, organization_id: uuid.UUID, provider: str) -> IntegrationCredential | None:
    return await session.scalar(select(IntegrationCredential).where(
        IntegrationCredential.organization_id == organization_id, IntegrationCredential.provider == provider))


async def for_organization(session: AsyncSession, organization_id: uuid.UUID) -> dict[str, IntegrationCredential]:
    rows = await session.scalars(select(IntegrationCredential).where(
        IntegrationCredential.organization_id == organization_id))
    return {row.provider: row for row in rows}


async def load(session: AsyncSession, box: SecretBox, organization_id: uuid.UUID, provider: str) -> LoopCredential:
    row = await get_row(session, organization_id, provider)
    if row is None:
        return LoopCredential(provider)
    options = row.options or {}
    return LoopCredential(
        provider, token=box.decrypt(row.token_encrypted) if row.token_encrypted else None,
        api_url=options.get("api_url"), allowed_logins=frozenset(options.get("allowed_logins") or []),
        bot_login=options.get("bot_login"), bot_user_id=options.get("bot_user_id"),
        default_environment_id=options.get("default_environment_id"), app_id=options.get("app_id"),
        installation_id=options.get("installation_id"),
        private_key=box.decrypt(row.private_key_encrypted) if row.private_key_encrypted else None)


async def apply(session: AsyncSession, box: SecretBox, organization_id: uuid.UUID, provider: str,
                changes: dict[str, Any]) -> list[str]:
    """Validate and store the given fields (`None` clears one) in the caller's transaction; returns the names
    of what changed, for the audit log (never a value: the token is a secret, the rest is configuration)."""
    if not changes:
        return []
    if provider not in LOOP_PROVIDERS:
        raise BadRequest("Invalid request", f"{provider} takes only a secret (the team loop covers "
                                            f"{', '.join(LOOP_PROVIDERS)})")
    options: dict[str, Any] = {}
    for name, value in changes.items():
        if name in SECRETS:
            if name == "private_key" and provider != "github":
                raise BadRequest("Invalid request", f"private_key: not an option of {provider}")
            continue
        if provider not in OPTIONS[name]:
            raise BadRequest("Invalid request", f"{name}: not an option of {provider}")
        options[name] = await _checked(session, organization_id, name, value)
    row = await get_row(session, organization_id, provider)
    if row is None:
        row = IntegrationCredential(id=uuid.uuid5(organization_id, f"integration-credential:{provider}"),
                                    organization_id=organization_id, provider=provider, options={})
        session.add(row)
    if "token" in changes:
        token = changes["token"]
        if token is not None and (not isinstance(token, str) or not token.strip() or len(token) > 4096):
            raise BadRequest("Invalid request", "token: must be 1 to 4096 characters")
        row.token_encrypted = box.encrypt(token.strip()) if token else None
    if "private_key" in changes:
        row.private_key_encrypted = box.encrypt(_private_key(changes["private_key"])) \
            if changes["private_key"] is not None else None
    merged = {**(row.options or {}), **options}
    row.options = {key: value for key, value in merged.items() if value not in (None, [], "")}
    row.updated_at = utcnow()
    return sorted(changes)


async def _checked(session: AsyncSession, organization_id: uuid.UUID, name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "api_url":
        return outbound.check_url(str(value)).rstrip("/")
    if name == "allowed_logins":
        if not isinstance(value, list) or len(value) > MAX_LOGINS or not all(isinstance(v, str) for v in value):
            raise BadRequest("Invalid request", f"allowed_logins: a list of at most {MAX_LOGINS} logins")
        return sorted({_login(v) for v in value if _login(v)})
    if name in ("app_id", "installation_id"):
        text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        if not text.isdigit() or len(text) > 20:
            raise BadRequest("Invalid request", f"{name}: GitHub's numeric id")
        return text
    if name == "default_environment_id":
        env = await session.get(Environment, parse_uuid(str(value), "Environment"))
        if env is None or env.organization_id != organization_id or env.user_id is not None:
            raise BadRequest("Invalid request", "default_environment_id: not a team environment of this organization")
        return str(env.id)
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise BadRequest("Invalid request", f"{name}: must be 1 to 255 characters")
    return value.strip()


def _private_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PRIVATE_KEY:
        raise BadRequest("Invalid request", f"private_key: the GitHub App's PEM private key, at most "
                                            f"{MAX_PRIVATE_KEY} characters")
    try:
        load_private_key(value)
    except ValueError as exc:
        raise BadRequest("Invalid request", f"private_key: {exc}") from None
    return value.strip()


def view(row: IntegrationCredential | None) -> dict[str, Any]:
    """The options as they are shown: never the token or private key, only whether one is set."""
    options = (row.options if row is not None else None) or {}
    return {"token_configured": bool(row is not None and row.token_encrypted),
            "private_key_configured": bool(row is not None and row.private_key_encrypted),
            **{name: options.get(name) for name in OPTIONS}}

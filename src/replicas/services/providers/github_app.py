"""Signing in as a GitHub App: the App's JWT (RS256, signed with its private key) buys an installation access
token, which is what every GitHub call of the team loop then sends. An installation token lives one hour; a token
is kept until five minutes before it expires, then a new one is minted (per process, in memory only).

    token = await installation_token(credential, settings, "acme/shop")     # the loop's token for that repository
    scoped = await scoped_token(credential, settings, "acme/shop")          # a workspace's: that repository only,
                                                                            # contents and pull requests (write)

The installation is the credential's `installation_id` when set, else the one GitHub names for the repository
(`GET /repos/{owner}/{repo}/installation`, remembered). Calls go through `GitHubClient` (retries, the outbound
policy, the configurable API URL); a failure raises ProviderError like any other provider call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from replicas.services.providers.base import ProviderError
from replicas.services.providers.github import DEFAULT_API_URL, GitHubClient

JWT_LIFETIME = 540  # GitHub refuses a JWT that lives over 10 minutes
CLOCK_SKEW = 60  # issued a minute in the past, as GitHub advises, for clocks that drift
REFRESH_BEFORE = 300  # a kept token is replaced this long before it expires
WORKSPACE_PERMISSIONS = {"contents": "write", "pull_requests": "write"}


class AppCredential(Protocol):
    api_url: str | None
    app_id: str | None
    installation_id: str | None
    private_key: str | None


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The App's private key (the PEM GitHub lets one download); ValueError when it is not an RSA private key."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a GitHub App's private key is an RSA key")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def app_jwt(app_id: str, private_key_pem: str, now: float | None = None) -> str:
    """The App's JSON Web Token: RS256, `iss` the App's id, issued a minute ago, expiring in nine minutes."""
    issued = int(now if now is not None else time.time()) - CLOCK_SKEW
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"iat": issued, "exp": issued + CLOCK_SKEW + JWT_LIFETIME, "iss": str(app_id)},
                             separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = load_private_key(private_key_pem).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{claims}.{_b64(signature)}"


@dataclass(frozen=True)
class InstallationToken:
    token: str
    expires_at: str  # as GitHub wrote it (ISO 8601)
    expires: float  # epoch seconds


class _Tokens:
    """The process's installation tokens and repositories' installations, by App."""

    def __init__(self) -> None:
        self.tokens: dict[tuple, InstallationToken] = {}
        self.installations: dict[tuple[str, str, str], str] = {}
        self.locks: dict[tuple, asyncio.Lock] = {}

    def clear(self) -> None:
        self.tokens.clear()
        self.installations.clear()


TOKENS = _Tokens()


def _client(credential: AppCredential, settings: Any) -> GitHubClient:
    if not (credential.app_id and credential.private_key):
        raise ProviderError("github", "app sign-in", None, "no GitHub App (app_id and private_key) is configured")
    return GitHubClient(credential.api_url or DEFAULT_API_URL, app_jwt(credential.app_id, credential.private_key),
                        timeout=settings.provider_timeout_seconds, retry_delays=settings.provider_retry_delays)


async def installation_id(credential: AppCredential, settings: Any, repository: str | None) -> str:
    """The installation that covers `repository` (`owner/name`): the configured one, else GitHub's answer."""
    if credential.installation_id:
        return str(credential.installation_id)
    if not repository:
        raise ProviderError("github", "app installation", None,
                            "no installation_id is configured and no repository names one")
    key = (credential.api_url or DEFAULT_API_URL, str(credential.app_id), repository.lower())
    if key not in TOKENS.installations:
        async with _client(credential, settings) as app:
            answer = (await app.call("GET", f"/repos/{repository}/installation", "app installation")).json()
        TOKENS.installations[key] = str(answer["id"])
    return TOKENS.installations[key]


async def _mint(credential: AppCredential, settings: Any, repository: str | None,
                scope: dict[str, Any] | None, refused: str | None = None) -> InstallationToken:
    installation = await installation_id(credential, settings, repository)
    key = (credential.api_url or DEFAULT_API_URL, str(credential.app_id), installation,
           json.dumps(scope, sort_keys=True) if scope else None)
    lock = TOKENS.locks.setdefault(key, asyncio.Lock())
    async with lock:
        kept = TOKENS.tokens.get(key)
        if kept is not None and kept.expires - REFRESH_BEFORE > time.time() and kept.token != refused:
            return kept
        async with _client(credential, settings) as app:
            answer = (await app.call("POST", f"/app/installations/{installation}/access_tokens",
                                     "installation token", json=scope or None)).json()
        try:
            expires = datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00")).timestamp()
            minted = InstallationToken(answer["token"], answer["expires_at"], expires)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError("github", "installation token", 200, f"unexpected answer ({exc})") from None
        TOKENS.tokens[key] = minted
        return minted


async def installation_token(credential: AppCredential, settings: Any, repository: str | None, *,
                             refused: str | None = None) -> str:
    """The token the team loop answers with on `repository` (the installation's, all its permissions); a new one
    when the kept one is `refused` (GitHub answered 401: the App was reinstalled, the token revoked)."""
    return (await _mint(credential, settings, repository, None, refused)).token


async def scoped_token(credential: AppCredential, settings: Any, repository: str) -> InstallationToken:
    """A token for one workspace's push and pull request: `repository` only, contents and pull requests (write)."""
    name = repository.split("/", 1)[1]
    return await _mint(credential, settings, repository,
                       {"repositories": [name], "permissions": WORKSPACE_PERMISSIONS})

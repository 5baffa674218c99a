"""The one small HTTP client every provider client is built on: a configurable API base URL, the token's
header, the outbound policy (the base URL is a tenant's setting, so every connection is checked like a
webhook's), and retries with backoff.

    async with GitHubClient("https://api.github.com", token, timeout=15, retry_delays=[1, 5, 30]) as github:
        comment = await github.comment("acme/shop", 12, "Opened https://github.com/acme/shop/pull/7")

Connection errors, 5xx and 429 are retried after each of `retry_delays` (a 429's `Retry-After` is honoured up
to the longest delay); any other 4xx is final, except a 401 when the token comes from a source (a GitHub
App's installation token): a new one is asked for once, for a token revoked before it expired. Exhausted or
final, the call raises `ProviderError`, which the caller records: a provider that is down never blocks a workspace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from replicas import outbound

log = logging.getLogger("replicas.providers")


class ProviderError(Exception):
    """A provider call that failed for good: `status` (None: no answer) and what the provider said."""

    def __init__(self, provider: str, what: str, status: int | None, detail: str):
        super().__init__(f"{provider} {what} failed" + (f" ({status})" if status else "") + f": {detail}")
        self.provider, self.status, self.detail = provider, status, detail


class ProviderClient:
    """Base of the provider clients: `headers()` says how the token is sent; `call` does the rest."""

    provider = "provider"

    def __init__(self, base_url: str, token: str | None | Callable[[str | None], Awaitable[str]], *,
                 timeout: float = 15.0, retry_delays: list[float] | None = None):
        """`token` is the token, or an async function that gives it at each call (a GitHub App's installation
        token, which expires): called with None, or once with the token the provider just refused (401) for a
        new one."""
        self.base_url = base_url.rstrip("/")
        self._token_source = token if callable(token) else None
        self.token = None if callable(token) else token
        self.retry_delays = list(retry_delays if retry_delays is not None else [1.0, 5.0, 30.0])
        self._client = outbound.guarded_client(timeout=timeout, headers={"User-Agent": "replicas-server"})

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._client.aclose()

    def headers(self) -> dict[str, str]:
        return {}

    async def call(self, method: str, path: str, what: str, *, json: Any = None, params: dict | None = None,
                   follow_redirects: bool = False) -> httpx.Response:
        """One API call, retried (see the module docstring); the final answer, or ProviderError."""
        if self._token_source is not None:
            self.token = await self._token_source(None)
        if not self.token:
            raise ProviderError(self.provider, what, None, "no API token is configured for this integration")
        url = path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"
        delays = [*self.retry_delays, None]
        renewed = self._token_source is None
        for attempt, delay in enumerate(delays, start=1):
            status, detail, retry_after = None, "", None
            try:
                response = await self._client.request(method, url, json=json, params=params, headers=self.headers(),
                                                      follow_redirects=follow_redirects)
            except outbound.OutboundRefused as exc:
                raise ProviderError(self.provider, what, None, exc.reason) from None
            except httpx.HTTPError as exc:
                detail = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                status, detail = response.status_code, response.text[:500]
                if status == 401 and not renewed:  # a kept token revoked before it expired: a new one, once
                    renewed, self.token = True, await self._token_source(self.token)
                    log.warning("provider token refused, renewed provider=%s what=%s", self.provider, what)
                    continue
                if status < 500 and status != 429:
                    raise ProviderError(self.provider, what, status, detail)
                retry_after = _seconds(response.headers.get("retry-after"))
            if delay is None:
                raise ProviderError(self.provider, what, status, detail)
            wait = min(retry_after, max(self.retry_delays)) if retry_after is not None else delay
            log.warning("provider call retried provider=%s what=%s attempt=%d status=%s wait=%.1f", self.provider,
                        what, attempt, status, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the last delay is None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def tail(text: str, lines: int = 60, limit: int = 6000) -> str:
    """The end of a log: its last `lines` lines, at most `limit` characters."""
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept[-limit:]

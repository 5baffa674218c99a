"""Where the server is and who is calling: the parts the sync and async clients share.

Two ways to authenticate (spec §2.2):

    Credentials("http://127.0.0.1:8321", api_key="sk_replicas_...")          # a person or a script
    Credentials(url, engine_secret=secret, workspace_id=id)                    # agent mode, in a workspace

`Credentials.from_env()` reads `REPLICAS_API_URL` and `REPLICAS_API_KEY`; without a key, inside a workspace
(`REPLICAS_ENGINE_SECRET` and `WORKSPACE_ID`, which the engine gives its agents), it is agent mode.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from replicas.client.errors import APIConnectionError, error_from_response, retry_after_seconds

DEFAULT_URL = "http://127.0.0.1:8321"
API_VERSION = "2026-05-17"
USER_AGENT = "replicas-python"
WORKSPACE_ID_HEADER = "X-Workspace-Id"


@dataclass(frozen=True)
class Credentials:
    """The server's base URL and either an API key or a workspace's agent-mode secret."""

    base_url: str = DEFAULT_URL
    api_key: str | None = None
    engine_secret: str | None = None
    workspace_id: str | None = None

    @property
    def agent_mode(self) -> bool:
        return self.api_key is None and bool(self.engine_secret and self.workspace_id)

    def headers(self) -> dict[str, str]:
        if self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        if self.agent_mode:
            return {"Authorization": f"Bearer {self.engine_secret}", WORKSPACE_ID_HEADER: str(self.workspace_id)}
        return {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, base_url: str | None = None,
                 api_key: str | None = None) -> Credentials:
        """From the environment; `base_url` and `api_key`, when given, are the fallbacks (a stored login)."""
        env = os.environ if environ is None else environ
        url = env.get("REPLICAS_API_URL") or base_url or DEFAULT_URL
        key = env.get("REPLICAS_API_KEY") or api_key
        if key:
            return cls(url, api_key=key)
        workspace = env.get("WORKSPACE_ID") or env.get("REPLICAS_WORKSPACE_ID")
        return cls(url, engine_secret=env.get("REPLICAS_ENGINE_SECRET") or None, workspace_id=workspace or None)


@dataclass(frozen=True)
class RetryPolicy:
    """Retry what the server refused for now (429 too many requests, 503 overloaded or waking): at most
    `max_retries` more attempts, each after `Retry-After` when the server says (capped at `max_delay`),
    else after an exponential back-off with jitter. A refused request did nothing, so even a POST is safe
    to repeat."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None when `response` is final."""
        if response.status_code not in self.statuses or attempt >= self.max_retries:
            return None
        advised = retry_after_seconds(response.headers)
        if advised is not None:
            return min(advised, self.max_delay)
        return min(self.base_delay * 2 ** attempt, self.max_delay) * (0.5 + random.random() / 2)


def client_options(credentials: Credentials, timeout: float | httpx.Timeout | None,
                   api_version: str | None) -> dict[str, Any]:
    """The keyword arguments of the httpx client: base URL, auth headers, the pinned API version."""
    headers = {"User-Agent": USER_AGENT, **credentials.headers()}
    if api_version:
        headers["X-Replicas-Api-Version"] = api_version
    return {"base_url": credentials.base_url.rstrip("/"), "headers": headers, "timeout": timeout}


def decode(response: httpx.Response) -> Any:
    """The JSON of a successful answer, or the matching `ReplicasError`."""
    if response.is_error:
        raise error_from_response(response)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise APIConnectionError("Invalid response", f"the server answered {response.status_code} "
                                 f"with a body that is not JSON") from None


def connection_error(exc: httpx.TransportError, base_url: str) -> APIConnectionError:
    """A transport failure, named with the server it was talking to."""
    kind = "Timed out talking to" if isinstance(exc, httpx.TimeoutException) else "Cannot reach"
    return APIConnectionError(f"{kind} the Replicas server at {base_url}", str(exc) or type(exc).__name__)

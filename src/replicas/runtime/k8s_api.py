"""A thin client of the Kubernetes API for the `kubernetes` backend: plain JSON in and out.

Built on kubernetes-asyncio, the async (aiohttp) port of the official client, for what it gets right and
we would not want to write: kubeconfig loading (contexts, client certificates, exec and OIDC plugins,
token refresh), the in-cluster service account, and the websocket upgrade of pods/exec. lightkube
was the other candidate; it has no pods/exec, which both the upload of a staged home and `exec` need.

The generated per-kind methods and models are not used: the builders (k8s_objects.py) make manifests as
dicts, so requests send dicts and answers come back as dicts (`request`), read with the same code the
builders' tests check. Watches are read as the API sends them, one JSON event a line (`watch`).

    api = KubernetesApi(kubeconfig=None, context=None)      # in-cluster, else KUBECONFIG / ~/.kube/config
    pod = await api.request("GET", "/api/v1/namespaces/ws/pods/ws-abc-12345678")
    async for kind, obj in api.watch("/api/v1/namespaces/ws/pods", {"fieldSelector": "metadata.name=x"}, rv):
        ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.stream import WsApiClient

from replicas.runtime.base import RuntimeFailure

_JSON = {"Accept": "application/json", "Content-Type": "application/json"}
_ANSWERS = {200: "object", 201: "object", 202: "object"}
EXEC_PROTOCOL = "v4.channel.k8s.io"


class ApiError(RuntimeFailure):
    """The API server refused a request; `code` is its HTTP status (404, 409 AlreadyExists, 403, ...)."""

    default_message = "Kubernetes API error"

    def __init__(self, code: int, message: str):
        super().__init__(self.default_message, f"{code}: {message[:500]}")
        self.code = code


def _error(exc: ApiException) -> ApiError:
    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
    try:
        body = json.loads(body).get("message") or body
    except (ValueError, AttributeError):
        pass
    return ApiError(int(exc.status or 0), body)


class KubernetesApi:
    """One API server, reached with a kubeconfig (`kubeconfig`, `context`) or the pod's service account.

    The aiohttp session belongs to the event loop that first used it; another loop gets its own."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        self.kubeconfig, self.context = kubeconfig, context
        self._configuration: Configuration | None = None
        self._clients: tuple[asyncio.AbstractEventLoop, ApiClient, WsApiClient] | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> Configuration:
        configuration = Configuration()
        try:
            if self.kubeconfig is None:
                try:
                    kube_config.load_incluster_config(client_configuration=configuration)
                    return configuration
                except ConfigException:
                    pass  # not in a pod: the user's kubeconfig
            await kube_config.load_kube_config(config_file=self.kubeconfig, context=self.context,
                                               client_configuration=configuration, persist_config=False)
        except (ConfigException, OSError, TypeError) as exc:
            raise RuntimeFailure("Kubernetes configuration not found", str(exc)[:500]) from None
        return configuration

    async def clients(self) -> tuple[ApiClient, WsApiClient]:
        loop = asyncio.get_running_loop()
        if self._clients is None or self._clients[0] is not loop:
            if self._configuration is None:
                self._configuration = await self._load()
            self._clients = (loop, ApiClient(self._configuration), WsApiClient(self._configuration))
        return self._clients[1], self._clients[2]

    async def close(self) -> None:
        if self._clients is not None and self._clients[0] is asyncio.get_running_loop():
            await self._clients[1].close()
            await self._clients[2].close()
        self._clients = None

    async def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                      query: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One call; the answer's JSON. Raises `ApiError` with the server's status and message."""
        api, _ = await self.clients()
        try:
            return await api.call_api(path, method, query_params=list((query or {}).items()), header_params=dict(_JSON),
                                      body=dict(body) if body is not None else None, response_types_map=_ANSWERS,
                                      auth_settings=["BearerToken"], _return_http_data_only=True)
        except ApiException as exc:
            raise _error(exc) from None
        except (TimeoutError, OSError) as exc:
            raise RuntimeFailure("Kubernetes API unreachable", str(exc)[:500] or type(exc).__name__) from None

    async def watch(self, path: str, query: Mapping[str, Any], resource_version: str,
                    timeout_seconds: int) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The events of a list (ADDED, MODIFIED, DELETED, ERROR) after `resource_version`, as the API streams
        them: one JSON object a line. Ends when the server ends the watch (after `timeout_seconds`)."""
        api, _ = await self.clients()
        params = {**query, "watch": "true", "resourceVersion": resource_version,
                  "timeoutSeconds": str(timeout_seconds), "allowWatchBookmarks": "false"}
        try:
            response = await api.call_api(path, "GET", query_params=list(params.items()), header_params=dict(_JSON),
                                          auth_settings=["BearerToken"], _preload_content=False,
                                          _request_timeout=timeout_seconds + 10)
        except (TimeoutError, OSError) as exc:
            raise RuntimeFailure("Kubernetes API unreachable", str(exc)[:500] or type(exc).__name__) from None
        async with response:
            if response.status != 200:
                raise ApiError(response.status, (await response.read()).decode(errors="replace"))
            pending = b""
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield event.get("type", ""), event.get("object") or {}

    async def exec_socket(self, namespace: str, pod: str, container: str, command: list[str]):
        """The websocket of a pods/exec call (stdin, stdout and stderr attached, no TTY), to be entered
        with `async with`. Channels: the first byte of each binary message (k8s_exec.py)."""
        _, ws_api = await self.clients()
        query = [("container", container), ("stdin", "true"), ("stdout", "true"), ("stderr", "true"),
                 ("tty", "false"), *(("command", part) for part in command)]
        try:
            return await ws_api.call_api(f"/api/v1/namespaces/{namespace}/pods/{pod}/exec", "GET",
                                         query_params=query, header_params={"sec-websocket-protocol": EXEC_PROTOCOL},
                                         auth_settings=["BearerToken"], _preload_content=False)
        except ApiException as exc:
            raise _error(exc) from None

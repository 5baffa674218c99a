"""`AsyncReplicas`: the asyncio client, method for method the same as `Replicas` (sync.py), awaited.

    from replicas.client import AsyncReplicas

    async with AsyncReplicas("http://127.0.0.1:8321", api_key="sk_replicas_...") as client:
        page = await client.replicas.list(limit=20)
        async with client.replicas.events(page.items[0].id) as events:
            async for event in events:
                print(event.type)

A server can serve its own API to it in-process: `AsyncReplicas(url, api_key=key,
transport=httpx.ASGITransport(app))`.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from replicas.client import calls, flows
from replicas.client.calls import Call
from replicas.client.connection import (
    API_VERSION,
    Credentials,
    RetryPolicy,
    client_options,
    connection_error,
    decode,
)
from replicas.client.errors import APIConnectionError, ReplicasError, error_from_response
from replicas.client.models import (
    Event,
    HookTestEvent,
    ReplicaDetails,
    RepositoryStatus,
)
from replicas.client.namespaces import (
    EnvironmentsOps,
    ReplicasOps,
    WarmHookOps,
    attach_namespaces,
    resolve_credentials,
)
from replicas.client.streams import (
    MAX_RECONNECTS,
    RECONNECT_DELAY,
    STREAM_READ_TIMEOUT,
    EventCursor,
    hook_test_event,
    is_last_hook_event,
)

T = TypeVar("T")


class ReplicasAPI(ReplicasOps):
    __doc__ = ReplicasOps.__doc__

    async def wake(self, replica_id: str) -> ReplicaDetails:
        """Wake a sleeping or archived replica (reading it does: `waking` is then true)."""
        return await self._client.run(calls.get_replica(replica_id))

    async def diff(self, replica_id: str) -> builtins.list[RepositoryStatus]:
        """Each repository's status with its full diff against the default branch."""
        return (await self._client.run(calls.get_replica(replica_id, include=["diffs"]))).repository_statuses

    def events(self, replica_id: str, *, after: int | None = None, snapshot: bool = True,
               reconnect: bool = True) -> AsyncEventStream:
        """The replica's live events: `after` a sequence number (0: from its first), else from now."""
        return AsyncEventStream(self._client, replica_id, EventCursor(after, snapshot), reconnect=reconnect)


class WarmHookAPI(WarmHookOps):
    async def test_stream(self, environment: str, content: str, *,
                          save: bool = False) -> AsyncIterator[HookTestEvent]:
        """Run `content` as the warm hook in a throwaway sandbox and yield its events as they come
        (`progress`, `output` chunks, then `complete` or `error`); `save=True` keeps it if it succeeds."""
        body = {"content": content, "mode": "save_test" if save else "test_only"}
        response = await self._client.open_stream("POST", calls.warm_hook_stream_path(environment), json=body,
                                                  read_timeout=None)
        try:
            async for sse in EventSource(response).aiter_sse():
                event = hook_test_event(sse)
                if event is not None:
                    yield event
                    if is_last_hook_event(event):
                        return
        except httpx.TransportError as exc:
            raise connection_error(exc, self._client.credentials.base_url) from None
        finally:
            await response.aclose()


class EnvironmentsAPI(EnvironmentsOps):
    __doc__ = EnvironmentsOps.__doc__
    warm_hook_api = WarmHookAPI


class AsyncReplicas:
    """An asyncio client of a Replicas server; the same constructor as `Replicas`."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 engine_secret: str | None = None, workspace_id: str | None = None,
                 credentials: Credentials | None = None, timeout: float | httpx.Timeout | None = 60.0,
                 retry: RetryPolicy | None = None, api_version: str | None = API_VERSION,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.credentials = resolve_credentials(base_url, api_key, engine_secret, workspace_id, credentials)
        self.retry = retry or RetryPolicy()
        self.http = httpx.AsyncClient(transport=transport, **client_options(self.credentials, timeout, api_version))
        attach_namespaces(self, ReplicasAPI, EnvironmentsAPI)

    # -- running calls -----------------------------------------------------------------------------

    async def run(self, step: Call[T] | flows.Flow[T]) -> T:
        """Run one call, or drive a flow through its calls."""
        if isinstance(step, Call):
            return step.parse(await self._send(step))
        call = next(step)
        while True:
            try:
                value, error = await self.run(call), None
            except ReplicasError as exc:
                value, error = None, exc
            try:
                call = step.throw(error) if error is not None else step.send(value)
            except StopIteration as stop:
                return stop.value

    async def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        """Any endpoint, with the same errors and retries: its answer's JSON."""
        return await self.run(calls.raw(method, path, params=params, json=json))

    async def paginate(self, page_call: Callable[[int], Call[Any]]) -> AsyncIterator[Any]:
        """The items of every page, from page 1 until the last (`page_call(n)` builds page n's call)."""
        page = 1
        while True:
            current = await self.run(page_call(page))
            for item in current.items:
                yield item
            if not current.items or not current.has_next:
                return
            page += 1

    async def _send(self, call: Call[Any]) -> Any:
        attempt = 0
        while True:
            try:
                response = await self.http.request(call.method, call.path, params=call.params, json=call.json,
                                                   headers=call.headers or None)
            except httpx.TransportError as exc:
                raise connection_error(exc, self.credentials.base_url) from None
            delay = self.retry.delay(attempt, response)
            if delay is None:
                return decode(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def open_stream(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                          json: Any = None, read_timeout: float | None = STREAM_READ_TIMEOUT) -> httpx.Response:
        """An open streaming response (the caller closes it), after the same retries; errors raised."""
        attempt = 0
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        while True:
            request = self.http.build_request(method, path, headers={"Accept": "text/event-stream",
                                                                     **(headers or {})},
                                              json=json, timeout=timeout)
            try:
                response = await self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise connection_error(exc, self.credentials.base_url) from None
            delay = self.retry.delay(attempt, response)
            if delay is None and not response.is_error:
                return response
            await response.aread()
            await response.aclose()
            if delay is None:
                raise error_from_response(response)
            attempt += 1
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncReplicas:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncEventStream:
    """A replica's events as an async iterator that reconnects; see `sync.EventStream`."""

    def __init__(self, client: AsyncReplicas, replica_id: str, cursor: EventCursor, *, reconnect: bool = True):
        self._client, self._replica_id, self.cursor, self._reconnect = client, replica_id, cursor, reconnect
        self._response: httpx.Response | None = None
        self._closed = False

    @property
    def last_event_id(self) -> int | None:
        return self.cursor.last_seq

    async def connect(self) -> None:
        if self._response is None:
            self._response = await self._client.open_stream("GET", calls.events_path(self._replica_id),
                                                            headers=self.cursor.request_headers())

    async def __aenter__(self) -> AsyncEventStream:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: the iteration ends instead of reconnecting."""
        self._closed = True
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._response is not None:
            response, self._response = self._response, None
            await response.aclose()

    async def __aiter__(self) -> AsyncIterator[Event]:
        failures = 0
        while not self._closed:
            try:
                await self.connect()
                failures = 0
                assert self._response is not None
                async for sse in EventSource(self._response).aiter_sse():
                    event = self.cursor.accept(sse)
                    if event is not None:
                        yield event
            except (httpx.TransportError, APIConnectionError):
                if self._closed:
                    return
                failures += 1
                if not self._reconnect or failures > MAX_RECONNECTS:
                    raise APIConnectionError("The event stream broke off",
                                             f"{failures} attempt(s) to reconnect failed") from None
            except Exception:
                if self._closed:  # closed from another thread while reading: whatever the read raised
                    return
                raise
            finally:
                await self._disconnect()
            if not self._reconnect or self._closed:
                return
            await asyncio.sleep(RECONNECT_DELAY)

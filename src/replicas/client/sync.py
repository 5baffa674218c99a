"""`Replicas`: the blocking client.

    from replicas.client import Replicas

    with Replicas("http://127.0.0.1:8321", api_key="sk_replicas_...") as client:
        replica = client.replicas.create(name="fix-auth", environment_id=env_id, message="Fix the login bug")
        with client.replicas.events(replica.id, after=0) as events:
            for event in events:
                if event.type == "chat.turn.completed":
                    break
        print(client.replicas.diff(replica.id))

Each method is one call of `calls` (or one flow of `flows`) run here; see those modules for the parameters.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator
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

    def wake(self, replica_id: str) -> ReplicaDetails:
        """Wake a sleeping or archived replica (reading it does: `waking` is then true)."""
        return self._client.run(calls.get_replica(replica_id))

    def diff(self, replica_id: str) -> builtins.list[RepositoryStatus]:
        """Each repository's status with its full diff against the default branch."""
        return self._client.run(calls.get_replica(replica_id, include=["diffs"])).repository_statuses

    def events(self, replica_id: str, *, after: int | None = None, snapshot: bool = True,
               reconnect: bool = True) -> EventStream:
        """The replica's live events: `after` a sequence number (0: from its first), else from now."""
        return EventStream(self._client, replica_id, EventCursor(after, snapshot), reconnect=reconnect)


class WarmHookAPI(WarmHookOps):
    def test_stream(self, environment: str, content: str, *, save: bool = False) -> Iterator[HookTestEvent]:
        """Run `content` as the warm hook in a throwaway sandbox and yield its events as they come
        (`progress`, `output` chunks, then `complete` or `error`); `save=True` keeps it if it succeeds."""
        body = {"content": content, "mode": "save_test" if save else "test_only"}
        response = self._client.open_stream("POST", calls.warm_hook_stream_path(environment), json=body,
                                            read_timeout=None)
        try:
            for sse in EventSource(response).iter_sse():
                event = hook_test_event(sse)
                if event is not None:
                    yield event
                    if is_last_hook_event(event):
                        return
        except httpx.TransportError as exc:
            raise connection_error(exc, self._client.credentials.base_url) from None
        finally:
            response.close()


class EnvironmentsAPI(EnvironmentsOps):
    __doc__ = EnvironmentsOps.__doc__
    warm_hook_api = WarmHookAPI


class Replicas:
    """A blocking client of a Replicas server. `Replicas()` alone reads the environment
    (`Credentials.from_env`); `transport` (an httpx transport) lets tests or an app in the same process
    route the requests elsewhere."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 engine_secret: str | None = None, workspace_id: str | None = None,
                 credentials: Credentials | None = None, timeout: float | httpx.Timeout | None = 60.0,
                 retry: RetryPolicy | None = None, api_version: str | None = API_VERSION,
                 transport: httpx.BaseTransport | None = None):
        self.credentials = resolve_credentials(base_url, api_key, engine_secret, workspace_id, credentials)
        self.retry = retry or RetryPolicy()
        self.http = httpx.Client(transport=transport, **client_options(self.credentials, timeout, api_version))
        attach_namespaces(self, ReplicasAPI, EnvironmentsAPI)

    # -- running calls -----------------------------------------------------------------------------

    def run(self, step: Call[T] | flows.Flow[T]) -> T:
        """Run one call, or drive a flow through its calls."""
        if isinstance(step, Call):
            return step.parse(self._send(step))
        call = next(step)
        while True:
            try:
                value, error = self.run(call), None
            except ReplicasError as exc:
                value, error = None, exc
            try:
                call = step.throw(error) if error is not None else step.send(value)
            except StopIteration as stop:
                return stop.value

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        """Any endpoint, with the same errors and retries: its answer's JSON."""
        return self.run(calls.raw(method, path, params=params, json=json))

    def paginate(self, page_call: Callable[[int], Call[Any]]) -> Iterator[Any]:
        """The items of every page, from page 1 until the last (`page_call(n)` builds page n's call)."""
        page = 1
        while True:
            current = self.run(page_call(page))
            yield from current.items
            if not current.items or not current.has_next:
                return
            page += 1

    def _send(self, call: Call[Any]) -> Any:
        attempt = 0
        while True:
            try:
                response = self.http.request(call.method, call.path, params=call.params, json=call.json,
                                             headers=call.headers or None)
            except httpx.TransportError as exc:
                raise connection_error(exc, self.credentials.base_url) from None
            delay = self.retry.delay(attempt, response)
            if delay is None:
                return decode(response)
            attempt += 1
            time.sleep(delay)

    def open_stream(self, method: str, path: str, *, headers: dict[str, str] | None = None, json: Any = None,
                    read_timeout: float | None = STREAM_READ_TIMEOUT) -> httpx.Response:
        """An open streaming response (the caller closes it), after the same retries; errors raised."""
        attempt = 0
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        while True:
            request = self.http.build_request(method, path, headers={"Accept": "text/event-stream",
                                                                     **(headers or {})},
                                              json=json, timeout=timeout)
            try:
                response = self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise connection_error(exc, self.credentials.base_url) from None
            delay = self.retry.delay(attempt, response)
            if delay is None and not response.is_error:
                return response
            response.read()
            response.close()
            if delay is None:
                raise error_from_response(response)
            attempt += 1
            time.sleep(delay)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventStream:
    """A replica's events as an iterator that reconnects. Use it as a context manager to connect first
    (events that happen after `__enter__` are not missed, such as the answer to a message sent next):

        with client.replicas.events(replica_id) as events:
            client.replicas.send(replica_id, "Add tests")
            for event in events: ...

    A reconnection resumes after the last event seen (`Last-Event-ID`); the stream ends with the replica
    (its deletion answers 404: `NotFoundError`) or after MAX_RECONNECTS attempts that reached no server."""

    def __init__(self, client: Replicas, replica_id: str, cursor: EventCursor, *, reconnect: bool = True):
        self._client, self._replica_id, self.cursor, self._reconnect = client, replica_id, cursor, reconnect
        self._response: httpx.Response | None = None
        self._closed = False

    @property
    def last_event_id(self) -> int | None:
        return self.cursor.last_seq

    def connect(self) -> None:
        if self._response is None:
            self._response = self._client.open_stream("GET", calls.events_path(self._replica_id),
                                                      headers=self.cursor.request_headers())

    def __enter__(self) -> EventStream:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop: the iteration ends instead of reconnecting (callable from another thread)."""
        self._closed = True
        self._disconnect()

    def _disconnect(self) -> None:
        if self._response is not None:
            response, self._response = self._response, None
            response.close()

    def __iter__(self) -> Iterator[Event]:
        failures = 0
        while not self._closed:
            try:
                self.connect()
                failures = 0
                assert self._response is not None
                for sse in EventSource(self._response).iter_sse():
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
                self._disconnect()
            if not self._reconnect or self._closed:
                return
            time.sleep(RECONNECT_DELAY)

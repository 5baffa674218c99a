"""`replicas.client`: the Python SDK of the Replica API (this server's, or any compatible one).

    from replicas.client import Replicas, NotFoundError

    client = Replicas("http://127.0.0.1:8321", api_key="sk_replicas_...")   # or Replicas(): from the env
    env = client.environments.find("shop")
    replica = client.replicas.create(name="fix-auth", environment_id=env.id, message="Fix the login bug")
    with client.replicas.events(replica.id, after=0) as events:
        for event in events:
            if event.type == "chat.turn.completed":
                break
    for status in client.replicas.diff(replica.id):
        print(status.repository, status.git_diff.added, status.git_diff.removed)

`AsyncReplicas` is the same client for asyncio. The namespaces are `replicas`, `repositories`,
`repository_sets`, `environments` (with `variables`, `files`, `warm_hook`, `warm_pool`), `automations`,
`previews` and `user`; `request(method, path)` reaches any other endpoint.

Layout: `calls` holds every endpoint (path, parameters, how to read the answer) with no I/O, `flows` the
operations of several calls, `sync` and `aio` run them over httpx with retries on 429/503, `streams` reads
Server-Sent Events, `models` the resources, `errors` the exception tree. The SDK imports nothing of the
server (`replicas.api`, `replicas.services`, `replicas.store`): it runs where only the client is installed.
"""

from replicas.client.aio import AsyncEventStream, AsyncReplicas
from replicas.client.connection import Credentials, RetryPolicy
from replicas.client.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReplicasError,
    ServerError,
)
from replicas.client.models import (
    Automation,
    Chat,
    Environment,
    EnvironmentFile,
    EnvironmentMcp,
    EnvironmentSkill,
    EnvironmentVariable,
    Event,
    Execution,
    History,
    HistoryEvent,
    HookRecord,
    HookTestEvent,
    HookTestResult,
    McpTestResult,
    Page,
    Preview,
    Profile,
    Replica,
    ReplicaDetails,
    ReplicaHooks,
    Repository,
    RepositorySet,
    RepositoryStatus,
    SendResult,
    SkillSearchResult,
    TriggerResult,
    WarmHookState,
    WarmPool,
)
from replicas.client.sync import EventStream, Replicas

__all__ = [
    "APIConnectionError", "AsyncEventStream", "AsyncReplicas", "AuthenticationError", "Automation",
    "BadRequestError", "Chat", "ConflictError", "Credentials", "Environment", "EnvironmentFile", "EnvironmentMcp",
    "EnvironmentSkill", "EnvironmentVariable", "Event", "EventStream", "Execution", "History", "HistoryEvent",
    "HookRecord", "HookTestEvent", "HookTestResult", "McpTestResult", "NotFoundError", "Page",
    "PermissionDeniedError", "Preview", "Profile", "RateLimitError", "Replica", "ReplicaDetails", "ReplicaHooks",
    "Replicas", "ReplicasError", "Repository", "RepositorySet", "RepositoryStatus", "RetryPolicy", "SendResult",
    "ServerError", "SkillSearchResult", "TriggerResult", "WarmHookState", "WarmPool",
]

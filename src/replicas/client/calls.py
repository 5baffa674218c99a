"""Every REST call the SDK makes, written once, with no I/O: each function returns a `Call` (method, path,
query, body, and how to read the answer), which the sync client runs with `httpx.Client` and the async one
with `httpx.AsyncClient`. This module is the only place that knows the API's paths and shapes.

    call = get_replica("3f2c...", include=["diffs"])
    call.method, call.path, call.params      # "GET", "/v1/replica/3f2c...", {"include": "diffs"}
    details = call.parse(response_json)      # ReplicaDetails
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from replicas.client.models import (
    Automation,
    Chat,
    Environment,
    EnvironmentFile,
    EnvironmentMcp,
    EnvironmentSkill,
    EnvironmentVariable,
    Execution,
    History,
    HookRecord,
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
    SendResult,
    SkillSearchResult,
    TriggerResult,
    WarmHookState,
    WarmPool,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the reading of its JSON answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _segment(value: str | int) -> str:
    """A path segment: an id from a user is quoted, so it cannot walk to another path."""
    return quote(str(value), safe="")


def _query(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _body(**values: Any) -> dict[str, Any]:
    """A request body without the fields left out (None): the server applies its defaults to those."""
    return {key: value for key, value in values.items() if value is not None}


def _success(_body: Any) -> bool:
    return True


def _raw(body: Any) -> Any:
    return body


# --- replicas ---------------------------------------------------------------------------------------

def list_replicas(*, page: int = 1, limit: int = 10, user_id: str | None = None, source: str | None = None,
                  status: str | None = None) -> Call[Page[Replica]]:
    """A page of the organization's replicas, newest first."""
    return Call("GET", "/v1/replica", lambda body: Page.parse(body, "replicas", Replica),
                params=_query(page=page, limit=limit, user_id=user_id, source=source, status=status))


def get_replica(replica_id: str, *, include: Iterable[str] = ()) -> Call[ReplicaDetails]:
    """A replica's details; `include` takes `environment` and `diffs`. Reading a sleeping replica wakes it."""
    wanted = ",".join(include)
    return Call("GET", f"/v1/replica/{_segment(replica_id)}",
                lambda body: ReplicaDetails.model_validate(body["replica"]),
                params=_query(include=wanted or None))


def create_replica(*, name: str, message: str, environment_id: str | None = None,
                   coding_agent: str | None = None, model: str | None = None, plan_mode: bool | None = None,
                   thinking_level: str | None = None, lifecycle_policy: str | None = None,
                   size: str | None = None, webhook_url: str | dict | None = None,
                   repository_ids: list[str] | None = None, repository_set_id: str | None = None,
                   images: list[dict] | None = None, **extra: Any) -> Call[Replica]:
    """Create a replica with its first message; it answers `preparing` at once (the SDK pins the API
    version), and the message is delivered once the workspace is up."""
    return Call("POST", "/v1/replica", lambda body: Replica.model_validate(body["replica"]),
                json=_body(name=name, message=message, environment_id=environment_id, coding_agent=coding_agent,
                           model=model, plan_mode=plan_mode, thinking_level=thinking_level,
                           lifecycle_policy=lifecycle_policy, size=size, webhook_url=webhook_url,
                           repository_ids=repository_ids, repository_set_id=repository_set_id, images=images,
                           **extra))


def send_message(replica_id: str, message: str, *, chat_id: str | None = None, coding_agent: str | None = None,
                 model: str | None = None, plan_mode: bool | None = None, thinking_level: str | None = None,
                 images: list[dict] | None = None, **extra: Any) -> Call[SendResult]:
    """Send a message: `sent`, `queued` behind a busy agent, or `waking` a sleeping replica."""
    return Call("POST", f"/v1/replica/{_segment(replica_id)}/messages", SendResult.model_validate,
                json=_body(message=message, chat_id=chat_id, coding_agent=coding_agent, model=model,
                           plan_mode=plan_mode, thinking_level=thinking_level, images=images, **extra))


def read_history(replica_id: str, *, chat_id: str | None = None, limit: int | None = None,
                 offset: int | None = None) -> Call[History]:
    """A page of a chat's events taken from the end (`offset` counts back from the newest)."""
    return Call("GET", f"/v1/replica/{_segment(replica_id)}/history", History.model_validate,
                params=_query(chat_id=chat_id, limit=limit, offset=offset))


def delete_replica(replica_id: str) -> Call[bool]:
    """Stop the replica and remove its workspace."""
    return Call("DELETE", f"/v1/replica/{_segment(replica_id)}", _success)


def sleep_replica(replica_id: str) -> Call[bool]:
    """Stop its processes now and keep its disk (no-op when already asleep; 409 while preparing)."""
    return Call("POST", f"/v1/workspaces/{_segment(replica_id)}/sleep", _success)


def archive_replica(replica_id: str) -> Call[bool]:
    """Archive it: asleep, out of the default lists, woken again by a read or a message."""
    return Call("POST", f"/v1/workspaces/{_segment(replica_id)}/archive", _success)


def list_chats(replica_id: str) -> Call[list[Chat]]:
    """The replica's chats (this wakes a sleeping replica)."""
    return Call("GET", f"/v1/replica/{_segment(replica_id)}/chats",
                lambda body: [Chat.model_validate(chat) for chat in body["chats"]])


def create_chat(replica_id: str, *, provider: str, title: str | None = None) -> Call[Chat]:
    return Call("POST", f"/v1/replica/{_segment(replica_id)}/chats", Chat.model_validate,
                json=_body(provider=provider, title=title))


def delete_chat(replica_id: str, chat_id: str) -> Call[bool]:
    return Call("DELETE", f"/v1/replica/{_segment(replica_id)}/chats/{_segment(chat_id)}", _success)


def get_hooks(replica_id: str) -> Call[ReplicaHooks]:
    """The warm and start hook logs (served asleep without waking)."""
    return Call("GET", f"/v1/replica/{_segment(replica_id)}/hooks", ReplicaHooks.model_validate)


def events_path(replica_id: str) -> str:
    return f"/v1/replica/{_segment(replica_id)}/events"


# --- repositories -----------------------------------------------------------------------------------

def list_repositories() -> Call[list[Repository]]:
    return Call("GET", "/v1/replica/repositories",
                lambda body: [Repository.model_validate(r) for r in body["repositories"]])


def create_repository(*, name: str, url: str, default_branch: str | None = None,
                      credential: str | None = None) -> Call[Repository]:
    """Register a git repository (self-hosted extension; the server checks it with `git ls-remote`)."""
    return Call("POST", "/v1/replica/repositories", lambda body: Repository.model_validate(body["repository"]),
                json=_body(name=name, url=url, default_branch=default_branch, credential=credential))


def delete_repository(repository_id: str) -> Call[bool]:
    return Call("DELETE", f"/v1/replica/repositories/{_segment(repository_id)}", _success)


def list_repository_sets() -> Call[list[RepositorySet]]:
    return Call("GET", "/v1/replica/repository-sets",
                lambda body: [RepositorySet.model_validate(s) for s in body["repository_sets"]])


def create_repository_set(*, name: str, repository_ids: list[str],
                          description: str | None = None) -> Call[RepositorySet]:
    return Call("POST", "/v1/replica/repository-sets",
                lambda body: RepositorySet.model_validate(body["repository_set"]),
                json=_body(name=name, repository_ids=repository_ids, description=description))


def delete_repository_set(set_id: str) -> Call[bool]:
    return Call("DELETE", f"/v1/replica/repository-sets/{_segment(set_id)}", _success)


# --- environments -----------------------------------------------------------------------------------

def _env(environment: str) -> str:
    return f"/v1/environments/{_segment(environment)}"


def list_environments(*, scope: str | None = None) -> Call[list[Environment]]:
    """The organization's environments (Global included); `scope` is `org`, `user` or `all`."""
    return Call("GET", "/v1/environments",
                lambda body: [Environment.model_validate(e) for e in body["environments"]],
                params=_query(scope=scope))


def get_environment(environment: str) -> Call[Environment]:
    """An environment by id, or `global`."""
    return Call("GET", _env(environment), lambda body: Environment.model_validate(body["environment"]))


def create_environment(*, name: str, description: str | None = None, repository_id: str | None = None,
                       repository_set_id: str | None = None, system_prompt: str | None = None,
                       scope: str | None = None, **extra: Any) -> Call[Environment]:
    return Call("POST", "/v1/environments", lambda body: Environment.model_validate(body["environment"]),
                json=_body(name=name, description=description, repository_id=repository_id,
                           repository_set_id=repository_set_id, system_prompt=system_prompt, scope=scope, **extra))


def update_environment(environment: str, **fields: Any) -> Call[Environment]:
    """PATCH the fields given (a None value clears that field, as the API reads it)."""
    return Call("PATCH", _env(environment), lambda body: Environment.model_validate(body["environment"]),
                json=fields)


def delete_environment(environment: str) -> Call[bool]:
    return Call("DELETE", _env(environment), _success)


def list_variables(environment: str) -> Call[list[EnvironmentVariable]]:
    return Call("GET", f"{_env(environment)}/variables",
                lambda body: [EnvironmentVariable.model_validate(v) for v in body["environment_variables"]])


def create_variable(environment: str, *, key: str, value: str,
                    personal_override_allowed: bool | None = None) -> Call[EnvironmentVariable]:
    return Call("POST", f"{_env(environment)}/variables",
                lambda body: EnvironmentVariable.model_validate(body["environment_variable"]),
                json=_body(key=key, value=value, personal_override_allowed=personal_override_allowed))


def update_variable(environment: str, variable_id: str, **fields: Any) -> Call[EnvironmentVariable]:
    return Call("PATCH", f"{_env(environment)}/variables/{_segment(variable_id)}",
                lambda body: EnvironmentVariable.model_validate(body["environment_variable"]), json=fields)


def delete_variable(environment: str, variable_id: str) -> Call[bool]:
    return Call("DELETE", f"{_env(environment)}/variables/{_segment(variable_id)}", _success)


def list_files(environment: str) -> Call[list[EnvironmentFile]]:
    return Call("GET", f"{_env(environment)}/files",
                lambda body: [EnvironmentFile.model_validate(f) for f in body["environment_files"]])


def create_file(environment: str, *, path: str, content: str, name: str | None = None) -> Call[EnvironmentFile]:
    """A file written into each workspace at `path` (under `~/`); `name` defaults to its file name."""
    return Call("POST", f"{_env(environment)}/files",
                lambda body: EnvironmentFile.model_validate(body["environment_file"]),
                json={"name": name or path.rstrip("/").rsplit("/", 1)[-1], "path": path, "content": content})


def update_file(environment: str, file_id: str, **fields: Any) -> Call[EnvironmentFile]:
    return Call("PATCH", f"{_env(environment)}/files/{_segment(file_id)}",
                lambda body: EnvironmentFile.model_validate(body["environment_file"]), json=fields)


def delete_file(environment: str, file_id: str) -> Call[bool]:
    return Call("DELETE", f"{_env(environment)}/files/{_segment(file_id)}", _success)


def list_mcps(environment: str) -> Call[list[EnvironmentMcp]]:
    return Call("GET", f"{_env(environment)}/mcps",
                lambda body: [EnvironmentMcp.model_validate(m) for m in body["environment_mcps"]])


def create_mcp(environment: str, *, name: str, transport: str, config: dict[str, Any]) -> Call[EnvironmentMcp]:
    """An MCP server for each workspace: stdio `config={command, args, env}`, http/sse `{url, headers}`."""
    return Call("POST", f"{_env(environment)}/mcps",
                lambda body: EnvironmentMcp.model_validate(body["environment_mcp"]),
                json={"name": name, "transport": transport, "config": config})


def update_mcp(environment: str, mcp_id: str, **fields: Any) -> Call[EnvironmentMcp]:
    return Call("PATCH", f"{_env(environment)}/mcps/{_segment(mcp_id)}",
                lambda body: EnvironmentMcp.model_validate(body["environment_mcp"]), json=fields)


def delete_mcp(environment: str, mcp_id: str) -> Call[bool]:
    return Call("DELETE", f"{_env(environment)}/mcps/{_segment(mcp_id)}", _success)


def test_mcp(environment: str, mcp_id: str) -> Call[McpTestResult]:
    """Start the saved server in a throwaway sandbox and ask it for its tools."""
    return Call("POST", f"{_env(environment)}/mcps/{_segment(mcp_id)}/test",
                lambda body: McpTestResult.model_validate(body["test"]))


def search_skills(query: str = "") -> Call[list[SkillSearchResult]]:
    """The skills catalog (an empty query: the popular ones)."""
    return Call("GET", "/v1/environment-skills/search",
                lambda body: [SkillSearchResult.model_validate(s) for s in body["skills"]], params={"q": query})


def list_skills(environment: str) -> Call[list[EnvironmentSkill]]:
    return Call("GET", f"{_env(environment)}/skills",
                lambda body: [EnvironmentSkill.model_validate(s) for s in body["environment_skills"]])


def enable_skill(environment: str, *, name: str, slug: str, source: str) -> Call[EnvironmentSkill]:
    return Call("POST", f"{_env(environment)}/skills",
                lambda body: EnvironmentSkill.model_validate(body["environment_skill"]),
                json={"name": name, "slug": slug, "source": source})


def disable_skill(environment: str, skill_id: str) -> Call[bool]:
    return Call("DELETE", f"{_env(environment)}/skills/{_segment(skill_id)}", _success)


def get_warm_hook(environment: str) -> Call[WarmHookState]:
    """The active warm hook and the warm pool (each None until first configured)."""
    return Call("GET", f"{_env(environment)}/warm-hooks", WarmHookState.model_validate)


def save_warm_hook(environment: str, content: str) -> Call[HookRecord]:
    """Save a new version of the warm hook (it expires the pool's ready workspaces)."""
    return Call("POST", f"{_env(environment)}/warm-hooks/save",
                lambda body: HookRecord.model_validate(body["warm_hook"]), json={"content": content})


def test_warm_hook(environment: str, content: str) -> Call[HookTestResult]:
    """Run a script as the warm hook in a throwaway sandbox, without saving it."""
    return Call("POST", f"{_env(environment)}/warm-hooks/test",
                lambda body: HookTestResult.model_validate(body["test"]), json={"content": content})


def warm_hook_stream_path(environment: str) -> str:
    return f"{_env(environment)}/warm-hooks/save-test/stream"


def get_warm_pool(environment: str) -> Call[WarmPool | None]:
    return Call("GET", f"{_env(environment)}/warm-hooks",
                lambda body: WarmPool.model_validate(body["warm_pool"]) if body.get("warm_pool") else None)


def put_warm_pool(environment: str, *, enabled: bool, target_size: int | None = None) -> Call[WarmPool]:
    """Enable or disable the pool; `target_size` (0-20) is this server's extension."""
    return Call("PUT", f"{_env(environment)}/warm-pools", lambda body: WarmPool.model_validate(body["warm_pool"]),
                json=_body(enabled=enabled, target_size=target_size))


# --- automations ------------------------------------------------------------------------------------

def list_automations(*, page: int = 1, limit: int = 20, trigger_type: str | None = None,
                     enabled: bool | None = None, search: str | None = None,
                     scope: str | None = None) -> Call[Page[Automation]]:
    return Call("GET", "/v1/automations", lambda body: Page.parse(body, "automations", Automation),
                params=_query(page=page, limit=limit, trigger_type=trigger_type,
                              enabled=None if enabled is None else str(enabled).lower(), search=search,
                              scope=scope))


def get_automation(automation_id: str) -> Call[Automation]:
    return Call("GET", f"/v1/automations/{_segment(automation_id)}",
                lambda body: Automation.model_validate(body["automation"]))


def create_automation(*, name: str, prompt: str, environment_id: str, triggers: list[dict],
                      **fields: Any) -> Call[Automation]:
    """`fields` are the rest of CreateAutomationRequest (`scope`, `enabled`, `workspace_lifecycle_policy`,
    `workspace_auto_stop_minutes`, `agent_provider`, ...); None values are left out."""
    return Call("POST", "/v1/automations", lambda body: Automation.model_validate(body["automation"]),
                json=_body(name=name, prompt=prompt, environment_id=environment_id, triggers=triggers, **fields))


def update_automation(automation_id: str, **fields: Any) -> Call[Automation]:
    return Call("PATCH", f"/v1/automations/{_segment(automation_id)}",
                lambda body: Automation.model_validate(body["automation"]), json=fields)


def run_automation(automation_id: str, *, payload: dict | None = None) -> Call[TriggerResult]:
    """Run it now: a new execution (and workspace)."""
    return Call("POST", f"/v1/automations/{_segment(automation_id)}/trigger", TriggerResult.model_validate,
                json=_body(payload=payload))


def delete_automation(automation_id: str) -> Call[bool]:
    return Call("DELETE", f"/v1/automations/{_segment(automation_id)}", _success)


def list_executions(automation_id: str, *, page: int = 1, limit: int = 20) -> Call[Page[Execution]]:
    return Call("GET", f"/v1/automations/{_segment(automation_id)}/executions",
                lambda body: Page.parse(body, "executions", Execution), params=_query(page=page, limit=limit))


# --- previews ---------------------------------------------------------------------------------------

def _previews(workspace_id: str | None) -> str:
    """Agent mode addresses its own workspace's previews (`/v1/previews`); a key names the workspace."""
    return "/v1/previews" if workspace_id is None else f"/v1/workspaces/{_segment(workspace_id)}/previews"


def create_preview(port: int, *, authenticated: bool = False, workspace_id: str | None = None) -> Call[Preview]:
    """Publish a port of the workspace at a public URL (an existing one is answered as is)."""
    return Call("POST", _previews(workspace_id), Preview.model_validate,
                json={"port": port, "authenticated": authenticated})


def list_previews(*, workspace_id: str | None = None) -> Call[list[Preview]]:
    return Call("GET", _previews(workspace_id), lambda body: [Preview.model_validate(p) for p in body["previews"]])


def delete_preview(port: int, *, workspace_id: str | None = None) -> Call[bool]:
    return Call("DELETE", f"{_previews(workspace_id)}/{int(port)}", _success)


# --- the user ---------------------------------------------------------------------------------------

def get_profile() -> Call[Profile]:
    """The caller's profile (`GET /v1/user/profile`)."""
    return Call("GET", "/v1/user/profile", lambda body: Profile.model_validate(body["profile"]))


def update_profile(*, displayName: str, avatarUrl: str | None) -> Call[Profile]:  # noqa: N803 - wire names
    return Call("PUT", "/v1/user/profile", lambda body: Profile.model_validate(body["profile"]),
                json={"displayName": displayName, "avatarUrl": avatarUrl})


def raw(method: str, path: str, *, params: dict | None = None, json: Any = None) -> Call[Any]:
    """Any other endpoint: the answer's JSON as is."""
    return Call(method, path, _raw, params=params, json=json)

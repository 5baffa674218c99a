"""The namespaces both clients share: each is a table of operations, one call of `calls` (or one flow of
`flows`) per method, run by the client it belongs to. `Replicas.run` returns the answer and
`AsyncReplicas.run` a coroutine of it, so one `op` serves both; what differs (streams, the methods that
read the answer further) is in `sync` and `aio`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from replicas.client import calls, flows
from replicas.client.connection import Credentials

P = ParamSpec("P")


def op(step: Callable[P, Any]) -> Callable[Concatenate[Any, P], Any]:
    """A namespace method that runs the call (or flow) `step` builds (awaitable on the async client)."""

    @functools.wraps(step)
    def method(self: Namespace, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self._client.run(step(*args, **kwargs))

    return method


class Namespace:
    def __init__(self, client: Any):
        self._client = client


class ReplicasOps(Namespace):
    """`/v1/replica`: replicas, their messages, chats, history and events."""

    list = op(calls.list_replicas)
    get = op(calls.get_replica)
    create = op(calls.create_replica)
    send = op(calls.send_message)
    history = op(calls.read_history)
    delete = op(calls.delete_replica)
    sleep = op(calls.sleep_replica)
    archive = op(calls.archive_replica)
    chats = op(calls.list_chats)
    create_chat = op(calls.create_chat)
    delete_chat = op(calls.delete_chat)
    hooks = op(calls.get_hooks)

    def iterate(self, *, limit: int = 100, **filters: Any) -> Any:
        """Every replica (`user_id`, `source`, `status` filter), page after page."""
        return self._client.paginate(lambda page: calls.list_replicas(page=page, limit=limit, **filters))


class RepositoriesAPI(Namespace):
    list = op(calls.list_repositories)
    create = op(calls.create_repository)
    delete = op(calls.delete_repository)
    find = op(flows.find_repository)


class RepositorySetsAPI(Namespace):
    list = op(calls.list_repository_sets)
    create = op(calls.create_repository_set)
    delete = op(calls.delete_repository_set)


class VariablesAPI(Namespace):
    list = op(calls.list_variables)
    create = op(calls.create_variable)
    update = op(calls.update_variable)
    delete = op(calls.delete_variable)
    find = op(flows.find_variable)
    set = op(flows.upsert_variable)


class FilesAPI(Namespace):
    list = op(calls.list_files)
    create = op(calls.create_file)
    update = op(calls.update_file)
    delete = op(calls.delete_file)
    find = op(flows.find_file)
    set = op(flows.upsert_file)


class McpsAPI(Namespace):
    list = op(calls.list_mcps)
    create = op(calls.create_mcp)
    update = op(calls.update_mcp)
    delete = op(calls.delete_mcp)
    test = op(calls.test_mcp)
    find = op(flows.find_mcp)
    set = op(flows.upsert_mcp)


class SkillsAPI(Namespace):
    search = op(calls.search_skills)
    list = op(calls.list_skills)
    enable = op(calls.enable_skill)
    delete = op(calls.disable_skill)
    find = op(flows.find_skill)
    add = op(flows.add_skill)


class WarmHookOps(Namespace):
    get = op(calls.get_warm_hook)
    save = op(calls.save_warm_hook)
    test = op(calls.test_warm_hook)


class WarmPoolAPI(Namespace):
    get = op(calls.get_warm_pool)
    put = op(calls.put_warm_pool)


class EnvironmentsOps(Namespace):
    """`/v1/environments` and what hangs under one: variables, files, MCP servers, skills, the warm hook and the
    warm pool."""

    warm_hook_api: type[WarmHookOps] = WarmHookOps

    list = op(calls.list_environments)
    get = op(calls.get_environment)
    create = op(calls.create_environment)
    update = op(calls.update_environment)
    delete = op(calls.delete_environment)
    find = op(flows.find_environment)

    def __init__(self, client: Any):
        super().__init__(client)
        self.variables = VariablesAPI(client)
        self.files = FilesAPI(client)
        self.mcps = McpsAPI(client)
        self.skills = SkillsAPI(client)
        self.warm_hook = self.warm_hook_api(client)
        self.warm_pool = WarmPoolAPI(client)


class AutomationsAPI(Namespace):
    list = op(calls.list_automations)
    get = op(calls.get_automation)
    create = op(calls.create_automation)
    update = op(calls.update_automation)
    run = op(calls.run_automation)
    delete = op(calls.delete_automation)
    executions = op(calls.list_executions)

    def iterate(self, *, limit: int = 100, **filters: Any) -> Any:
        """Every automation, page after page (an iterator; an async one on the async client)."""
        return self._client.paginate(lambda page: calls.list_automations(page=page, limit=limit, **filters))

    def iterate_executions(self, automation_id: str, *, limit: int = 100) -> Any:
        return self._client.paginate(lambda page: calls.list_executions(automation_id, page=page, limit=limit))


class PreviewsAPI(Namespace):
    """Previews: in agent mode of the caller's own workspace (leave `workspace_id` out), else name it."""

    create = op(calls.create_preview)
    list = op(calls.list_previews)
    delete = op(calls.delete_preview)


class UserAPI(Namespace):
    profile = op(calls.get_profile)
    update_profile = op(calls.update_profile)


def resolve_credentials(base_url: str | None, api_key: str | None, engine_secret: str | None,
                        workspace_id: str | None, credentials: Credentials | None) -> Credentials:
    """The client's credentials: given, else built from the arguments, else (none given) from the env."""
    if credentials is not None:
        return credentials
    if base_url is None and api_key is None and engine_secret is None:
        return Credentials.from_env()
    return Credentials(base_url or Credentials().base_url, api_key=api_key, engine_secret=engine_secret,
                       workspace_id=workspace_id)


def attach_namespaces(client: Any, replicas: type[ReplicasOps], environments: type[EnvironmentsOps]) -> None:
    """Give `client` its namespaces, `replicas` and `environments` of its own flavour."""
    client.replicas = replicas(client)
    client.repositories = RepositoriesAPI(client)
    client.repository_sets = RepositorySetsAPI(client)
    client.environments = environments(client)
    client.automations = AutomationsAPI(client)
    client.previews = PreviewsAPI(client)
    client.user = UserAPI(client)

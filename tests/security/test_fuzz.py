"""No input makes the server answer 5xx: a schema fuzzer (schemathesis) over the contract, against the real
app served by uvicorn on loopback with a bootstrap org key.

Every operation of `tests/contract/replicas-openapi-2.0.0.json` but those in EXCLUDED gets a few positive
examples (valid for the contract: huge integers, odd strings) and a few negative ones (invalid: wrong types,
out-of-range values, missing fields). Where a path names something seeded (an environment bound to a real
git repository, its variable, file and MCP server, a custom-webhook automation), the examples use the real
ids, so bodies and queries reach the code behind the lookup; the negative examples also go out with the
fuzzer's own path values. Only `not_a_server_error` is checked: the contract and our server may legitimately
differ on the rest. Generation is derandomized, so a failure reproduces; every 5xx is listed with its curl
command (the key filtered out). Two databases, under a minute in all on two cores.

Operations the server does not serve are fuzzed too: they must answer 404, not 5xx. Nothing the fuzzer sends
may make the server reach out: the server runs with the egress allow-list `REPLICAS_OUTBOUND_ALLOWED_HOSTS`
set to loopback only, so a fuzzed webhook, registry or repository URL is refused before any DNS lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

from replicas.api.app import create_app
from replicas.crypto import new_api_key
from tests.contract import CONTRACT_PATH

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

EXAMPLES = 3  # per operation, generation mode and source of path parameters
# Paged lists get more valid examples: a page*limit beyond SQL's 64-bit OFFSET is where they broke (issue),
# and Hypothesis draws an integer that large only after a few dozen.
PAGED_EXAMPLES = 50
PAGING = {"page", "limit", "offset"}

# Operations not fuzzed, and why. Everything else in the contract is.
EXCLUDED = {
    # Long-running event streams: a fuzzed request that succeeds holds the connection open.
    "streamTestEnvironmentStartHook": "SSE stream that runs the start hook script",
    "streamWarmPoolWorkspace": "SSE stream of a warm-pool workspace's provisioning",
    "streamReplicaEvents": "SSE stream of a replica's events",
    "streamWorkspaceTerminalSession": "SSE stream of a terminal session",
    # Operations that provision real agent workspaces.
    "createReplica": "provisions a workspace (sandbox, clone, agent CLI)",
    "triggerAutomation": "runs the automation now: a new workspace (a fuzzed PATCH may add a cron trigger)",
    # Hook tests run the saved script in a scratch workspace.
    "testEnvironmentWarmHook": "runs the warm hook script",
    "saveAndTestEnvironmentWarmHook": "saves, then runs the warm hook script",
    "testEnvironmentStartHook": "runs the start hook script",
}


@dataclass
class Seeded:
    """Ids of real resources, so fuzzed requests can reach past the lookup."""

    environment_id: str
    variable_id: str
    file_id: str
    mcp_id: str
    automation_id: str  # fuzzed PATCHes may change anything about it, debounce included
    fired_id: str  # another automation, which nothing changes: its webhook never starts a workspace
    webhook_token: str

    def path_parameters(self, path: str) -> dict[str, str] | None:
        """The real ids for `path`'s parameters, or None when nothing real can be named there."""
        env = {"environmentId": self.environment_id}
        known = {
            "/v1/environments/{id}": {"id": self.environment_id},
            "/v1/environments/{environmentId}/variables/{id}": {**env, "id": self.variable_id},
            "/v1/environments/{environmentId}/files/{id}": {**env, "id": self.file_id},
            "/v1/environments/{environmentId}/mcps/{id}": {**env, "id": self.mcp_id},
            "/v1/automations/{id}": {"id": self.automation_id},
            "/v1/automations/{id}/executions": {"id": self.automation_id},
            "/v1/automations/webhook/{token}": {"token": self.webhook_token},
        }
        if path in known:
            return known[path]
        if path.startswith("/v1/environments/{environmentId}/"):
            return env  # the rest (skill, registry ids) are made up by the fuzzer
        return None


@dataclass
class Findings:
    server_errors: list[str] = field(default_factory=list)
    requests: int = 0


class LiveServer:
    """The app served by uvicorn on a free loopback port, in a thread with its own event loop."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                                    log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, name="fuzz-uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_server(settings) -> Iterator[tuple[str, str]]:
    """(base URL, bootstrap org key) of the real app on loopback, reaching out to loopback only."""
    key = new_api_key()
    # No cron scheduler: a fuzzed PATCH may legitimately give the seeded automation a cron trigger that fires
    # every minute, and on a slow run the scheduler then starts real workspaces.
    app = create_app(settings.model_copy(update={"bootstrap_api_key": key, "cron_enabled": False,
                                                 "outbound_allowed_hosts": ["127.0.0.1", "localhost", "::1"]}))
    with LiveServer(app) as base_url:
        yield base_url, key


def _created(response: httpx.Response, key: str) -> str:
    assert response.status_code in (200, 201), response.text
    return response.json()[key]["id"]


def seed(client: httpx.Client, origin) -> Seeded:
    repository = _created(client.post("/v1/replica/repositories", json={"name": "fuzz/repo", "url": str(origin)}),
                          "repository")
    env = _created(client.post("/v1/environments", json={"name": "fuzzed", "repository_id": repository}),
                   "environment")
    base = f"/v1/environments/{env}"
    variable = _created(client.post(f"{base}/variables", json={"key": "FUZZ", "value": "1"}),
                        "environment_variable")
    file = _created(client.post(f"{base}/files", json={"name": "notes", "path": "~/notes.txt", "content": "x"}),
                    "environment_file")
    mcp = _created(client.post(f"{base}/mcps", json={"name": "fuzz", "transport": "stdio",
                                                    "config": {"command": "true"}}), "environment_mcp")
    # Debounced for an hour: a fired webhook records a pending execution and starts no workspace.
    automations = []
    for name in ("edited", "fired"):
        response = client.post("/v1/automations", json={
            "name": name, "prompt": "Handle it.", "environment_id": env, "debounce_seconds": 3600,
            "triggers": [{"type": "custom", "config": {}}]})
        assert response.status_code == 201, response.text
        automations.append(response.json()["automation"])
    edited, fired = automations
    return Seeded(env, variable, file, mcp, edited["id"], fired["id"], fired["webhook_token"])


def fuzz_operation(operation, base_url: str, key: str, path_parameters: dict | None,
                   mode: GenerationMode, findings: Findings) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    paged = mode is GenerationMode.POSITIVE and any(parameter.name in PAGING for parameter in operation.query)

    @settings(max_examples=PAGED_EXAMPLES if paged else EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case) -> None:
        findings.requests += 1
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except (AssertionError, FailureGroup):
            findings.server_errors.append(f"{operation.label} ({mode.value}) -> {response.status_code} "
                                          f"{response.text[:300]}\n    {case.as_curl_command()}")

    try:
        run()
    except Unsatisfiable:  # negative mode for an operation with nothing to get wrong (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no positive example could be generated"


def test_no_input_makes_the_server_answer_5xx(live_server, make_git_repo):
    base_url, key = live_server
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        seeded = seed(client, make_git_repo("fuzz"))
    schema = schemathesis.openapi.from_path(CONTRACT_PATH)
    # Every request carries the key: a fuzzed-away Authorization header only ever proves the 401.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if op.definition.raw.get("operationId") not in EXCLUDED]
    assert len(operations) - len(fuzzed) == len(EXCLUDED), "an excluded operationId is not in the contract"
    # Deletions last, so the other operations still find the seeded resources.
    fuzzed.sort(key=lambda op: op.method.upper() == "DELETE")

    findings = Findings()
    for operation in fuzzed:
        real = seeded.path_parameters(operation.path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if real:
                fuzz_operation(operation, base_url, key, real, mode, findings)
            if not real or mode is GenerationMode.NEGATIVE:  # made-up ids that are valid only prove the 404
                fuzz_operation(operation, base_url, key, None, mode, findings)
    assert findings.requests > len(fuzzed) * 2
    assert not findings.server_errors, "\n".join(findings.server_errors)
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        assert client.get("/v1/replica").json()["total"] == 0, "a fuzzed request started a workspace"
        executions = client.get(f"/v1/automations/{seeded.fired_id}/executions").json()["executions"]
    assert [e["status"] for e in executions] == ["pending"]  # fired, debounced, never started

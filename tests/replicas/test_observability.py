"""A real `replicas serve` with JSON logs: `/metrics` parses with prometheus_client's own parser and its values
move when work happens (requests by route template, a create timed, the workspace counted, an open stream, the
lease that pumps it); every log line is one JSON object carrying the request's id, organization and replica,
and no secret (the API key, a variable's value, the engine's secret) appears anywhere in the log.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from replicas.testing.script import Text
from tests.replicas.test_events_restart import KEY, auth, running_server, setup_environment
from tests.replicas.test_many_processes import wait_active

pytestmark = [pytest.mark.slow]
SECRET_VALUE = "sv-" + "q7" * 20


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


async def test_metrics_move_and_json_logs_carry_context_and_no_secret(tmp_path, agent_tools, model, make_git_repo):
    async with running_server(tmp_path, agent_tools, REPLICAS_LOG_FORMAT="json", REPLICAS_CRON_ENABLED="false",
                              REPLICAS_POOL_ENABLED="false") as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            before = samples((await client.get("/metrics")).text)
            env_id = await setup_environment(client, make_git_repo, model)
            added = await client.post(f"/v1/environments/{env_id}/variables",
                                      json={"key": "DEPLOY_TOKEN", "value": SECRET_VALUE})
            assert added.status_code == 201, added.text
            model.add_turn(Text("Observed."))
            created = await client.post("/v1/replica", json={"name": "seen", "environment_id": env_id,
                                                              "message": "hello"}, headers={"X-Request-Id": "req-42"})
            assert created.headers["x-request-id"] == "req-42"
            replica_id = created.json()["replica"]["id"]
            await wait_active(client, replica_id)
            async with client.stream("GET", f"/v1/replica/{replica_id}/events") as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()  # held: a dropped iterator closes the response
                await anext(lines)
                during = samples((await client.get("/metrics")).text)
            for _ in range(3):
                assert (await client.get(f"/v1/replica/{replica_id}")).status_code == 200
            await asyncio.sleep(0.2)
            after = samples((await client.get("/metrics")).text)

        route = "/v1/replica/{replica_id}"
        assert value(after, "replicas_http_requests_total", route=route, status="200") >= \
            value(before, "replicas_http_requests_total", route=route, status="200") + 3
        assert value(after, "replicas_http_request_duration_seconds_count", route=route) >= 3
        assert value(after, "replicas_transition_duration_seconds_count", kind="create") == \
            value(before, "replicas_transition_duration_seconds_count", kind="create") + 1
        assert value(during, "replicas_workspaces", status="active", backend="local") == 1
        assert value(during, "replicas_sse_clients") >= 1
        assert value(during, "replicas_leases", lease="pump") == 1
        assert value(after, "replicas_event_store_delay_seconds_count") > 0
        assert ("replicas_event_pump_lag_events", (("workspace_id", replica_id),)) in during

        lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
        parsed = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all({"ts", "level", "logger", "message"} <= set(entry) for entry in parsed)
        create_lines = [e for e in parsed if e.get("request_id") == "req-42"]
        assert create_lines and all(e.get("organization_id") for e in create_lines if e["logger"] == "replicas.access")
        replica_lines = [e for e in parsed if e.get("logger") == "replicas.access" and e.get("route") == route]
        assert replica_lines and all(e.get("replica_id") == replica_id for e in replica_lines)
        log_text = server.log_path.read_text()
        for secret in (KEY, SECRET_VALUE):
            assert secret not in log_text, "a secret reached the log"

"""Firing automations into real workspaces: the custom webhook end to end (real Claude Code CLI behind the
scripted model), the manual trigger, delivery-id dedupe, debounce, and the circuit breaker (provisioning
that really fails). SQLite only: these start real workspaces; the records are covered on both databases
in test_automations_api.py."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from sqlalchemy import select

from replicas.services import automations as service
from replicas.store.models import AutomationExecution, Workspace
from replicas.testing.script import Text
from tests.automations.conftest import automation_body
from tests.contract import assert_contract
from tests.replicas.conftest import row_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

EXECUTIONS = "/v1/automations/{id}/executions"


def _sent_text(model) -> str:
    """Every text block of the conversation the agent sent to the model for its first prompt."""
    texts: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                texts.append(node["text"])
            if isinstance(node.get("content"), str):
                texts.append(node["content"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model.model_requests()[0].body.get("messages", []))
    return "\n".join(texts)


async def _executions(client, automation_id: str) -> list[dict]:
    response = await client.get(EXECUTIONS.format(id=automation_id), params={"limit": 100})
    return assert_contract(response, EXECUTIONS)["executions"]


def _execution_in(client, automation_id: str, *statuses: str):
    async def check():
        executions = await _executions(client, automation_id)
        return executions if executions and all(e["status"] in statuses for e in executions) else None
    return check


async def test_custom_webhook_creates_a_workspace_whose_agent_gets_the_payload(wired, client, anonymous,
                                                                               replica_env, model):
    model.add_turn(Text("triaged"))
    created = await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="triage", prompt="Triage the incoming alert.",
        triggers=[{"type": "custom", "config": {}}], workspace_lifecycle_policy="sleep_when_done",
        thinking_level="low", config={"preferences": {"keep_open_on_pr_close": True}}))
    automation = assert_contract(created, "/v1/automations")["automation"]
    url = f"/v1/automations/webhook/{automation['webhook_token']}"
    alert = {"alert": "disk full", "host": "db-1", "nested": {"severity": 3}}

    response = await anonymous.post(url, json=alert, headers={"X-Delivery-Id": "delivery-1"})
    assert response.status_code == 202 and response.json() == {"accepted": True}
    assert_contract(response, "/v1/automations/webhook/{token}")
    [execution] = await _executions(client, automation["id"])
    assert execution["status"] in ("running", "completed") and execution["workspace_id"]
    assert execution["trigger_payload"] == alert and execution["error"] is None
    assert execution["config"] == {"preferences": {"keep_open_on_pr_close": True},
                                   "capabilities": {"pr_followups": False}}

    workspace = await row_of(wired, execution["workspace_id"])
    assert workspace.source == "automation" and workspace.user_id is None
    assert workspace.lifecycle_policy == "sleep_when_done" and workspace.coding_agent == "claude"
    assert workspace.config["capabilities"] == {"pr_followups": False}
    listed = (await client.get("/v1/replica", params={"source": "automation"})).json()
    assert [r["id"] for r in listed["replicas"]] == [execution["workspace_id"]]

    # A redelivery (same X-Delivery-Id) is accepted and fires nothing new.
    again = await anonymous.post(url, json={"other": True}, headers={"X-Delivery-Id": "delivery-1"})
    assert again.status_code == 202

    [done] = await wait_for(_execution_in(client, automation["id"], "completed"), timeout=120,
                            what="the execution to complete")
    assert done["completed_at"] and done["id"] == execution["id"]
    prompt = _sent_text(model)
    assert "Triage the incoming alert.\n\n## Trigger Payload\n```json\n" in prompt
    assert json.dumps(alert, indent=2) in prompt
    assert len(model.model_requests()) == 1  # the redelivery did not start a second workspace
    async with wired.state.sessions() as session:
        count = len(list(await session.scalars(select(Workspace.id).where(Workspace.source == "automation"))))
    assert count == 1


async def test_a_non_json_body_is_wrapped_and_a_json_array_is_embedded(wired, client, anonymous, replica_env,
                                                                       model):
    model.add_turn(Text("ok"))
    model.add_turn(Text("ok"))
    automation = (await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="raw", prompt="Handle it.",
        triggers=[{"type": "custom", "config": {}}]))).json()["automation"]
    url = f"/v1/automations/webhook/{automation['webhook_token']}"
    plain = await anonymous.post(url, content=b"build 42 failed", headers={"content-type": "text/plain",
                                                                          "X-Request-Id": "r-1"})
    assert plain.status_code == 202
    listed = await anonymous.post(url, json=[1, 2, 3], headers={"X-Request-Id": "r-2"})
    assert listed.status_code == 202
    executions = await _executions(client, automation["id"])
    payloads = sorted((e["trigger_payload"] for e in executions), key=json.dumps)
    assert payloads == [{"body": [1, 2, 3]}, {"raw": "build 42 failed"}]
    async with wired.state.sessions() as session:
        prompts = sorted(await session.scalars(select(AutomationExecution.prompt).where(
            AutomationExecution.automation_id == uuid.UUID(automation["id"]))))
    assert prompts[0].endswith('```json\n[\n  1,\n  2,\n  3\n]\n```')
    assert '"raw": "build 42 failed"' in prompts[1]
    await wait_for(_execution_in(client, automation["id"], "completed"), timeout=120, what="both to complete")


async def test_manual_trigger_of_a_cron_automation(wired, client, replica_env, model):
    model.add_turn(Text("nightly done"))
    automation = (await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="nightly run", prompt="Run the nightly checks.", workspace_size="large",
        plan_mode=True))).json()["automation"]
    response = await client.post(f"/v1/automations/{automation['id']}/trigger",
                                 json={"payload": {"reason": "manual check"}})
    body = assert_contract(response, "/v1/automations/{id}/trigger")
    assert body["workspace_id"]
    workspace = await row_of(wired, body["workspace_id"])
    assert workspace.source == "automation" and workspace.size == "large" and workspace.name == "nightly-run"
    [execution] = await wait_for(_execution_in(client, automation["id"], "completed"), timeout=120,
                                 what="the execution to complete")
    assert execution["id"] == body["execution_id"] and execution["trigger_payload"] == {"reason": "manual check"}
    assert "Run the nightly checks." in _sent_text(model)
    assert '"reason": "manual check"' in _sent_text(model)


async def test_debounce_runs_the_latest_payload_once(wired, client, anonymous, replica_env, model):
    model.add_turn(Text("once"))
    automation = (await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="bursty", prompt="Summarise the burst.", debounce_seconds=1,
        triggers=[{"type": "custom", "config": {}}]))).json()["automation"]
    url = f"/v1/automations/webhook/{automation['webhook_token']}"
    for n in range(3):
        assert (await anonymous.post(url, json={"event": n})).status_code == 202
    [pending] = await _executions(client, automation["id"])
    assert pending["status"] == "pending" and pending["workspace_id"] is None
    assert pending["trigger_payload"] == {"event": 2}
    [done] = await wait_for(_execution_in(client, automation["id"], "completed"), timeout=120,
                            what="the debounced run")
    assert done["id"] == pending["id"] and done["workspace_id"]
    assert '"event": 2' in _sent_text(model)
    assert len(model.model_requests()) == 1


async def test_five_failed_runs_trip_the_circuit_breaker(wired, client, settings, replica_env, model):
    automation = (await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="doomed", prompt="Never runs."))).json()["automation"]
    # The repository's origin is gone: every workspace fails to provision (status `error`).
    shutil.rmtree(replica_env.origin)
    shutil.rmtree(settings.data_dir / "mirrors", ignore_errors=True)
    for n in range(service.BREAKER_THRESHOLD):
        response = await client.post(f"/v1/automations/{automation['id']}/trigger")
        assert response.status_code == 200, response.text
        await wait_for(_execution_in(client, automation["id"], "failed"), timeout=60,
                       what=f"failure {n + 1}")
        if n < service.BREAKER_THRESHOLD - 1:
            current = (await client.get(f"/v1/automations/{automation['id']}")).json()["automation"]
            assert current["enabled"] is True and current["consecutive_failures"] == n + 1
    executions = await _executions(client, automation["id"])
    assert len(executions) == service.BREAKER_THRESHOLD
    assert all(e["error"] and e["completed_at"] and e["workspace_id"] for e in executions)
    record = (await client.get(f"/v1/automations/{automation['id']}")).json()["automation"]
    assert record["enabled"] is False
    assert "5 consecutive failed executions" in record["disabled_reason"]
    refused = await client.post(f"/v1/automations/{automation['id']}/trigger")
    assert refused.status_code == 400 and refused.json()["error"] == "Automation is disabled"
    # Re-enabling by hand starts the count afresh.
    enabled = await client.patch(f"/v1/automations/{automation['id']}", json={"enabled": True})
    assert enabled.json()["automation"]["consecutive_failures"] == 0
    assert enabled.json()["automation"]["disabled_reason"] is None


async def test_deleting_an_automation_removes_its_executions(wired, client, replica_env, model):
    model.add_turn(Text("ok"))
    automation = (await client.post("/v1/automations", json=automation_body(
        replica_env.environment_id, name="short-lived"))).json()["automation"]
    triggered = (await client.post(f"/v1/automations/{automation['id']}/trigger")).json()
    assert (await client.delete(f"/v1/automations/{automation['id']}")).status_code == 200
    async with wired.state.sessions() as session:
        left = await session.get(AutomationExecution, uuid.UUID(triggered["execution_id"]))
    assert left is None
    # The workspace it created stays (it is the user's to keep or delete).
    assert await row_of(wired, triggered["workspace_id"]) is not None

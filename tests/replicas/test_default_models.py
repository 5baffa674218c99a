"""Default models through the Replica API: the environment's REPLICAS_DEFAULT_MODEL_<AGENT> wins over the
server's setting, which wins over the shipped default; a model the request names wins over all. What
reaches the scripted model says which ran. A warning Codex reports (a model without metadata) is an
event of the turn, in the replica's history."""

from __future__ import annotations

import pytest

from replicas.testing import Text
from tests.contract import validate_schema
from tests.replicas.conftest import create, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def warnings_in(history: dict) -> list[str]:
    return [event["payload"]["message"] for event in history["events"]
            if event["type"] == "event_msg" and event["payload"].get("type") == "warning"]


@pytest.mark.replica_settings(default_model_codex="gpt-5.4")
async def test_environment_beats_server_setting_and_a_codex_warning_reaches_the_history(
        app, client, replica_env, model):
    model.add_turn(Text("Hello from the server's default."))
    first = (await create(client, replica_env, "hello", name="server-default", coding_agent="codex"))["id"]
    await wait_for(lambda: settled(app, first), what="the first replica's turn")
    assert model.model_requests()[-1].model == "gpt-5.4"

    # gpt-5.4 is not in the pinned Codex's model catalog: it says so, and the history shows it.
    history = (await client.get(f"/v1/replica/{first}/history")).json()
    warnings = warnings_in(history)
    assert len(warnings) == 1 and "gpt-5.4" in warnings[0] and "metadata" in warnings[0], history["events"]
    for event in history["events"]:
        if event["payload"].get("type") != "warning":  # Codex's own shape; the contract has no warning type
            validate_schema(event, "AgentEvent")

    response = await client.post(f"/v1/environments/{replica_env.environment_id}/variables",
                                 json={"key": "REPLICAS_DEFAULT_MODEL_CODEX", "value": "gpt-5.5"})
    assert response.status_code == 201, response.text
    model.add_turn(Text("Hello from the environment's default."))
    second = (await create(client, replica_env, "hello", name="environment-default", coding_agent="codex"))["id"]
    await wait_for(lambda: settled(app, second), what="the second replica's turn")
    assert model.model_requests()[-1].model == "gpt-5.5"
    assert warnings_in((await client.get(f"/v1/replica/{second}/history")).json()) == []

    model.add_turn(Text("Hello from the model asked for."))
    response = await client.post(f"/v1/replica/{second}/messages", json={"message": "again", "model": "gpt-5"})
    assert response.status_code == 200, response.text
    await wait_for(lambda: settled(app, second, turns=2), what="the asked-for model's turn")
    assert model.model_requests()[-1].model == "gpt-5"
    assert model.exhausted == []

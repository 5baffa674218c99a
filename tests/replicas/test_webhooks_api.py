"""Webhooks of a replica, received by a real HTTP server on loopback and verified with hmac."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil

import pytest

from replicas.testing import Text
from tests.contract import assert_contract, validate_schema
from tests.replicas.conftest import Receiver, create, replica, settled, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
SECRET = "whsec-test"


@pytest.fixture
def receiver():
    server = Receiver(fail_first=1)
    yield server
    server.close()


async def test_ready_turn_completed_deleted_signed_and_retried(app, client, replica_env, model, receiver):
    model.add_turn(Text("All done here."))
    created = await create(client, replica_env, "do it", name="hooked",
                           webhook_url={"url": receiver.url, "secret": SECRET})
    rid = created["id"]
    await wait_for(lambda: settled(app, rid), what="turn 1")
    ready = (await receiver.wait("replica.ready"))[0]
    completed = (await receiver.wait("replica.turn_completed"))[0]
    assert receiver.answered[0] == 500  # the first attempt failed, and was retried

    chat = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"][0]["id"]
    assert ready["replica"]["id"] == rid and ready["replica"]["status"] == "active"
    validate_schema(ready["replica"], "ReplicaListItem")
    assert completed["data"]["chat_id"] == chat and completed["data"]["is_complete"] is True
    assert completed["data"]["last_assistant_message"] == "All done here."
    assert completed["data"]["repository_statuses"][0]["repository"] == "shop"
    assert completed["data"]["pr_urls"] == []
    for headers, body in receiver.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Replicas-Signature"], expected)
        event = json.loads(body)
        assert headers["X-Replicas-Event"] == event["type"] and headers["X-Replicas-Delivery"] == event["id"]
        assert set(event) == {"id", "type", "created_at", "replica", "data"}
    assert len({e["id"] for e in receiver.events()}) == len(receiver.events())

    # Asleep and woken by a message: one more turn_completed, no second ready.
    await client.post(f"/v1/workspaces/{rid}/sleep")
    model.add_turn(Text("Back again."))
    assert (await client.post(f"/v1/replica/{rid}/messages", json={"message": "again"})).json()["status"] == "waking"
    second = (await receiver.wait("replica.turn_completed", count=2))[1]
    assert second["data"]["last_assistant_message"] == "Back again." and second["replica"]["status"] == "active"

    assert (await client.delete(f"/v1/replica/{rid}")).json() == {"success": True}
    deleted = (await receiver.wait("replica.deleted"))[0]
    assert deleted["replica"]["id"] == rid
    response = await client.get(f"/v1/replica/{rid}")
    assert response.status_code == 404
    assert_contract(response, "/v1/replica/{id}")
    assert [e["type"] for e in receiver.events()].count("replica.ready") == 1


async def test_setup_failure_is_an_error_replica_with_a_webhook(app, client, settings, replica_env, model,
                                                                receiver):
    shutil.rmtree(replica_env.origin)
    shutil.rmtree(settings.data_dir / "mirrors", ignore_errors=True)
    created = await create(client, replica_env, "never delivered", name="doomed", webhook_url=receiver.url)
    assert created["status"] == "preparing"
    failed = (await receiver.wait("replica.error"))[0]
    assert failed["replica"]["id"] == created["id"] and failed["replica"]["status"] == "error"
    print("provisioning error:", failed["data"]["message"])
    assert "shop" in failed["data"]["message"] or "git" in failed["data"]["message"].lower()
    headers, _ = receiver.received[-1]
    assert "X-Replicas-Signature" not in headers  # no secret, no signature

    details = await replica(client, created["id"])
    assert details["status"] == "error"
    response = await client.get(f"/v1/replica/{created['id']}")
    assert_contract(response, "/v1/replica/{id}")
    assert details["config"]["provisioning_error"]["message"] == failed["data"]["message"]
    listed = (await client.get("/v1/replica", params={"status": "error"})).json()
    assert [r["id"] for r in listed["replicas"]] == [created["id"]]
    for path in (f"/v1/workspaces/{created['id']}/sleep", f"/v1/workspaces/{created['id']}/archive"):
        response = await client.post(path)
        assert response.status_code == 409, response.text
        assert_contract(response, path.replace(created["id"], "{workspaceId}"))

    # Legacy create (no version header) blocks until the outcome: here, `error`.
    response = await client.post("/v1/replica", json={"name": "doomed-too", "message": "hi",
                                                      "environment_id": replica_env.environment_id})
    legacy = assert_contract(response, "/v1/replica")["replica"]
    assert response.status_code == 201 and legacy["status"] == "error"

    response = await client.post(f"/v1/replica/{created['id']}/messages", json={"message": "hello?"})
    assert response.status_code == 409
    assert_contract(response, "/v1/replica/{id}/messages")
    assert model.model_requests() == []


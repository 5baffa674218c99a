"""Validation, listing and paging, and organization isolation of /v1/replica (both databases; no agent
runs: listed replicas are records made by the workspace manager, in the statuses a user would see)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from replicas.services.principal import Principal
from replicas.store.models import User, utcnow
from replicas.testing import Text
from tests.contract import assert_contract
from tests.replicas.conftest import VERSIONED, row_of, set_row, settled, wait_for


async def _org_id(app, client) -> uuid.UUID:
    from replicas.store.models import Environment

    async with app.state.sessions() as session:
        env = await session.get(Environment, uuid.UUID((await client.get("/v1/environments/global")).json()
                                                       ["environment"]["id"]))
        return env.organization_id


async def _record(app, env, org_id, name: str, *, status: str, source: str = "api", user_id=None,
                  age_minutes: float = 0) -> str:
    principal = Principal(org_id, None, user_id, "admin", "test")
    row = await app.state.replicas.manager.create_record(principal, env.environment_id, name=name, source=source)
    at = utcnow() - timedelta(minutes=age_minutes)
    await set_row(app, str(row.id), status=status, created_at=at, last_activity_at=at)
    return str(row.id)


async def _post(client, body, headers=VERSIONED):
    return await client.post("/v1/replica", headers=headers, json=body)


async def test_create_validation(client, replica_env):
    base = {"name": "ok", "environment_id": replica_env.environment_id, "message": "hi"}
    cases = [
        ({**base, "name": "fix auth bug"}, 400, None),
        ({**base, "coding_agent": "gpt"}, 400, None),
        ({**base, "coding_agent": "pi"}, 400, "not available"),
        ({**base, "lifecycle_policy": "forever"}, 400, None),
        ({**base, "message": ""}, 400, None),
        ({**base, "message": "/plan"}, 400, "empty"),
        ({**base, "webhook_url": "ftp://example.com"}, 400, None),
        ({**base, "size": "huge"}, 400, None),
        ({k: v for k, v in base.items() if k != "environment_id"}, 400, "environment_id is required"),
        ({**base, "environment_id": str(uuid.uuid4())}, 404, None),
        ({**base, "environment_id": "not-a-uuid"}, None, None),
        ({k: v for k, v in base.items() if k != "environment_id"} | {"repository_ids": [str(uuid.uuid4())]},
         404, "Repository or repository set not found"),
    ]
    for body, status, text in cases:
        response = await _post(client, body)
        if status is None:
            assert response.status_code in (400, 404), response.text
        else:
            assert response.status_code == status, (body, response.text)
        error = assert_contract(response, "/v1/replica")
        if text:
            assert text in error["error"] + " " + str(error.get("details")), error
    response = await client.post("/v1/replica", headers={"X-Replicas-Api-Version": "1999-01-01"}, json=base)
    assert response.status_code == 400
    assert (await client.get("/v1/replica")).json()["total"] == 0  # nothing was created by a refusal


@pytest.mark.slow
async def test_deprecated_repository_ids_resolve_to_the_bound_environment(app, client, replica_env, model):
    model.add_turn(Text("ok"))
    response = await client.post("/v1/replica", headers=VERSIONED, json={
        "name": "legacy-selector", "message": "hi", "repository_ids": [replica_env.repository_id]})
    created = assert_contract(response, "/v1/replica")["replica"]
    assert created["repositories"][0]["id"] == replica_env.repository_id
    assert str((await row_of(app, created["id"])).environment_id) == replica_env.environment_id
    await wait_for(lambda: settled(app, created["id"]), what="the first message")
    assert "hi" in model.model_requests()[0].conversation_text()


async def test_list_filters_paging_and_includes(app, client, org, replica_env):
    org_id = await _org_id(app, client)
    await org.add_user("dev@example.com")
    async with app.state.sessions() as session:
        user_id = await session.scalar(select(User.id).where(User.email == "dev@example.com"))
    ids = {}
    ids["old"] = await _record(app, replica_env, org_id, "old", status="sleeping", age_minutes=50)
    ids["slack"] = await _record(app, replica_env, org_id, "from-slack", status="sleeping", source="slack",
                                 age_minutes=40)
    ids["mine"] = await _record(app, replica_env, org_id, "mine", status="sleeping", user_id=user_id,
                                age_minutes=30)
    ids["err"] = await _record(app, replica_env, org_id, "broken", status="error", age_minutes=20)
    ids["arch"] = await _record(app, replica_env, org_id, "filed", status="archived", age_minutes=10)

    everything = assert_contract(await client.get("/v1/replica"), "/v1/replica")
    assert [r["id"] for r in everything["replicas"]] == [ids[k] for k in ("arch", "err", "mine", "slack", "old")]
    assert (everything["total"], everything["page"], everything["limit"], everything["total_pages"]) == (5, 1, 10, 1)

    page2 = assert_contract(await client.get("/v1/replica", params={"limit": 2, "page": 2}), "/v1/replica")
    assert [r["id"] for r in page2["replicas"]] == [ids["mine"], ids["slack"]]
    assert (page2["total"], page2["page"], page2["limit"], page2["total_pages"]) == (5, 2, 2, 3)
    page3 = assert_contract(await client.get("/v1/replica", params={"limit": 2, "page": 3}), "/v1/replica")
    assert [r["id"] for r in page3["replicas"]] == [ids["old"]]
    beyond = assert_contract(await client.get("/v1/replica", params={"limit": 2, "page": 9}), "/v1/replica")
    assert beyond["replicas"] == [] and beyond["total"] == 5

    by_source = assert_contract(await client.get("/v1/replica", params={"source": "slack"}), "/v1/replica")
    assert [r["id"] for r in by_source["replicas"]] == [ids["slack"]]
    by_status = assert_contract(await client.get("/v1/replica", params={"status": "error"}), "/v1/replica")
    assert [r["id"] for r in by_status["replicas"]] == [ids["err"]]
    by_user = assert_contract(await client.get("/v1/replica", params={"user_id": str(user_id)}), "/v1/replica")
    assert [r["id"] for r in by_user["replicas"]] == [ids["mine"]]

    # Archived: by last activity (falling back to creation), newest first.
    await set_row(app, ids["old"], status="archived", last_activity_at=utcnow())
    archived = assert_contract(await client.get("/v1/replica", params={"status": "archived"}), "/v1/replica")
    assert [r["id"] for r in archived["replicas"]] == [ids["old"], ids["arch"]]

    nobody = assert_contract(await client.get("/v1/replica", params={"user_id": str(uuid.uuid4())}), "/v1/replica")
    assert nobody["replicas"] == [] and nobody["total"] == 0 and nobody["total_pages"] == 0
    for params in ({"page": 0}, {"limit": 0}, {"limit": 101}, {"status": "dead"}, {"source": "fax"},
                   {"user_id": "me"}, {"page": "x"}):
        response = await client.get("/v1/replica", params=params)
        assert response.status_code == 400, (params, response.text)
        assert_contract(response, "/v1/replica")

    # include: unknown values are refused; a replica in error is readable, with its config.
    response = await client.get(f"/v1/replica/{ids['err']}", params={"include": "environment,bogus"})
    assert response.status_code == 400
    details = assert_contract(await client.get(f"/v1/replica/{ids['err']}", params={"include": "environment"}),
                              "/v1/replica/{id}")["replica"]
    assert details["status"] == "error" and details["waking"] is False
    assert details["environment"]["env_vars_set"]


async def test_other_organizations_cannot_see_a_replica(app, client, make_org, replica_env):
    org_id = await _org_id(app, client)
    rid = await _record(app, replica_env, org_id, "private", status="error")
    other = (await make_org()).client
    listed = assert_contract(await other.get("/v1/replica"), "/v1/replica")
    assert listed["replicas"] == [] and listed["total"] == 0
    for method, path, body in (("GET", f"/v1/replica/{rid}", None), ("DELETE", f"/v1/replica/{rid}", None),
                               ("GET", f"/v1/replica/{rid}/history", None), ("GET", f"/v1/replica/{rid}/chats", None),
                               ("POST", f"/v1/replica/{rid}/messages", {"message": "hi"}),
                               ("GET", f"/v1/replica/{rid}/hooks", None),
                               ("POST", f"/v1/workspaces/{rid}/sleep", None)):
        response = await other.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        contract_path = path.replace(rid, "{id}").replace("/v1/workspaces/{id}", "/v1/workspaces/{workspaceId}")
        assert_contract(response, contract_path)
    for path in ("/v1/replica/not-a-uuid", f"/v1/replica/{uuid.uuid4()}"):
        response = await client.get(path)
        assert response.status_code == 404, response.text
        assert_contract(response, "/v1/replica/{id}")
    assert (await client.get(f"/v1/replica/{rid}")).status_code == 200


async def test_message_validation(app, client, replica_env):
    org_id = await _org_id(app, client)
    rid = await _record(app, replica_env, org_id, "broken", status="error")
    for body in ({"message": ""}, {"message": "hi", "coding_agent": "pi"}, {"message": "hi", "thinking_level": "x"},
                 {"message": "hi", "images": [{"type": "image", "source": {"type": "base64"}}]}, {}):
        response = await client.post(f"/v1/replica/{rid}/messages", json=body)
        assert response.status_code == 400, (body, response.text)
        assert_contract(response, "/v1/replica/{id}/messages")
    response = await client.post(f"/v1/replica/{rid}/messages", json={"message": "hi"})
    assert response.status_code == 409
    assert_contract(response, "/v1/replica/{id}/messages")
    response = await client.post(f"/v1/replica/{rid}/chats", json={"provider": "gpt"})
    assert response.status_code == 400
    assert_contract(response, "/v1/replica/{id}/chats")


async def test_concurrent_creates_at_the_limit_admit_exactly_one(app, client, replica_env):
    # The limit is global; the PostgreSQL database is shared with other tests: leave room for one more.
    from replicas.services.replicas import AWAKE
    from replicas.store.models import Workspace

    async with app.state.sessions() as session:
        awake = await session.scalar(select(func.count()).select_from(Workspace).where(Workspace.status.in_(AWAKE)))
    app.state.replicas.settings.max_active_workspaces = awake + 1
    body = {"name": "racer", "environment_id": replica_env.environment_id, "message": "go"}
    responses = await asyncio.gather(*(client.post("/v1/replica", headers=VERSIONED, json=body) for _ in range(4)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 429, 429, 429], [r.text for r in responses]
    [winner] = [r.json()["replica"]["id"] for r in responses if r.status_code == 201]
    listed = (await client.get("/v1/replica")).json()
    assert [r["id"] for r in listed["replicas"]] == [winner]

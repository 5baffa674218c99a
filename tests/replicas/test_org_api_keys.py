"""Org API keys over /v1/api-keys (our addition; SQLite and PostgreSQL): org admins mint them (shown once),
list and delete them; every change is audit-logged; a deleted key stops working and its dashboard sessions end;
members get 403 in the error shape and change nothing; other organizations' and personal keys are 404 here."""

from __future__ import annotations

import uuid

import httpx
import pytest

KEYS = "/v1/api-keys"


def bearer(app, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replicas.test",
                             headers={"Authorization": f"Bearer {key}"})


async def audit_actions(client: httpx.AsyncClient, resource_id: str) -> list[tuple[str, dict | None, dict | None]]:
    events = (await client.get("/v1/audit-log", params={"resource_type": "api_key", "limit": 100})).json()
    return [(e["action"], e["before"], e["after"]) for e in events["audit_events"] if e["resource_id"] == resource_id]


async def test_an_admin_mints_an_org_key_shown_once_that_acts_for_the_organization(app, org, client):
    created = await client.post(KEYS, json={"name": "ci"})
    assert created.status_code == 201, created.text
    api_key = created.json()["api_key"]
    assert set(api_key) == {"id", "name", "key", "key_prefix", "created_at", "last_used_at"}
    assert api_key["name"] == "ci" and api_key["key"].startswith("sk_replicas_")
    assert api_key["key"].startswith(api_key["key_prefix"]) and api_key["last_used_at"] is None

    listed = (await client.get(KEYS)).json()
    assert listed["total"] == 2 and listed["page"] == 1 and listed["limit"] == 10 and listed["total_pages"] == 1
    assert [k["name"] for k in listed["api_keys"]] == ["ci", "test"]  # newest first
    assert all("key" not in k for k in listed["api_keys"])
    assert api_key["key"] not in (await client.get(KEYS)).text

    async with bearer(app, api_key["key"]) as ci:
        made = await ci.post("/v1/environments", json={"name": "from-ci"})
        assert made.status_code == 201, made.text
        assert (await client.get(f"/v1/environments/{made.json()['environment']['id']}")).status_code == 200
        # An org key is an admin, so it may manage org keys too.
        assert (await ci.get(KEYS)).json()["total"] == 2
    used = next(k for k in (await client.get(KEYS)).json()["api_keys"] if k["id"] == api_key["id"])
    assert used["last_used_at"] is not None

    actions = await audit_actions(client, api_key["id"])
    assert actions == [("api_key.created", None, {"name": "ci", "key_prefix": api_key["key_prefix"], "scope": "org"})]
    events = (await client.get("/v1/audit-log", params={"action": "api_key.created"})).json()["audit_events"]
    assert next(e for e in events if e["resource_id"] == api_key["id"])["actor_name"] == "api_key:test"
    assert api_key["key"] not in (await client.get("/v1/audit-log")).text


async def test_a_deleted_org_key_stops_working_and_ends_its_dashboard_sessions(app, client):
    api_key = (await client.post(KEYS, json={"name": "laptop"})).json()["api_key"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replicas.test") as browser:
        signed_in = await browser.post("/auth/session", json={"api_key": api_key["key"]})
        assert signed_in.status_code == 200
        assert (await browser.get("/v1/environments")).status_code == 200

        deleted = await client.delete(f"{KEYS}/{api_key['id']}")
        assert deleted.status_code == 200 and deleted.json() == {"success": True}

        ended = await browser.get("/v1/environments")
        assert ended.status_code == 401 and set(ended.json()) == {"error", "details"}
        assert (await browser.get("/auth/session")).status_code == 401
    async with bearer(app, api_key["key"]) as gone:
        refused = await gone.get("/v1/environments")
        assert refused.status_code == 401 and refused.json()["error"] == "Invalid token"
    assert [k["name"] for k in (await client.get(KEYS)).json()["api_keys"]] == ["test"]
    assert [a for a, _, _ in await audit_actions(client, api_key["id"])] == ["api_key.deleted", "api_key.created"]
    again = await client.delete(f"{KEYS}/{api_key['id']}")
    assert again.status_code == 404 and again.json() == {"error": "API key not found", "details": None}


async def test_a_member_gets_403_and_changes_nothing_while_an_admin_member_may(app, org, client):
    existing = (await client.post(KEYS, json={"name": "deploy"})).json()["api_key"]
    async with await org.add_user("member@example.com") as member:
        for response in (await member.get(KEYS), await member.post(KEYS, json={"name": "mine"}),
                         await member.delete(f"{KEYS}/{existing['id']}")):
            assert response.status_code == 403, response.text
            assert response.json() == {"error": "Admin access required",
                                       "details": "only organization admins manage org API keys"}
    assert [k["name"] for k in (await client.get(KEYS)).json()["api_keys"]] == ["deploy", "test"]
    async with bearer(app, existing["key"]) as deploy:
        assert (await deploy.get("/v1/environments")).status_code == 200

    async with await org.add_user("boss@example.com", role="admin") as admin:
        made = await admin.post(KEYS, json={"name": "by-boss"})
        assert made.status_code == 201, made.text
        events = (await client.get("/v1/audit-log", params={"action": "api_key.created"})).json()["audit_events"]
        assert next(e for e in events if e["resource_id"] == made.json()["api_key"]["id"])["actor_name"] == \
            "boss@example.com"
        # The admin's own personal keys are not org keys: not listed here, not deletable here.
        personal = (await admin.get("/v1/user/api-keys")).json()["api_keys"][0]
        assert personal["id"] not in [k["id"] for k in (await admin.get(KEYS)).json()["api_keys"]]
        assert (await admin.delete(f"{KEYS}/{personal['id']}")).status_code == 404
        assert (await admin.get("/v1/user/profile")).status_code == 200


async def test_another_organizations_keys_are_not_found(make_org):
    first, second = await make_org(), await make_org()
    theirs = (await second.client.post(KEYS, json={"name": "theirs"})).json()["api_key"]
    assert [k["name"] for k in (await first.client.get(KEYS)).json()["api_keys"]] == ["test"]
    refused = await first.client.delete(f"{KEYS}/{theirs['id']}")
    assert refused.status_code == 404 and refused.json()["error"] == "API key not found"
    assert theirs["id"] in [k["id"] for k in (await second.client.get(KEYS)).json()["api_keys"]]


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "   "}, {"name": "x" * 256}, {}, {"name": 7}])
async def test_a_bad_name_is_400_and_mints_nothing(client, body):
    response = await client.post(KEYS, json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "details"} and "name" in response.json()["details"]
    assert (await client.get(KEYS)).json()["total"] == 1


async def test_a_malformed_id_is_404(client):
    for key_id in ("nope", str(uuid.uuid4())):
        response = await client.delete(f"{KEYS}/{key_id}")
        assert response.status_code == 404 and response.json()["error"] == "API key not found"

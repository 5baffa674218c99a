"""Personal API keys: minted once, listed without secrets, deletable only by their owner."""

from __future__ import annotations

import uuid

from tests.conftest import _client
from tests.contract import assert_contract, validate_schema

KEYS = "/v1/user/api-keys"
KEY = "/v1/user/api-keys/{apiKeyId}"
NOT_FOUND = "API key not found or does not belong to this user"


async def _mint(client, name: str = "laptop") -> dict:
    response = await client.post(KEYS, json={"name": name})
    assert_contract(response, KEYS)
    assert response.status_code == 201, response.text
    return response.json()["api_key"]


async def test_a_minted_key_authenticates_and_is_listed_without_its_secret(org, app):
    alice = await org.add_user("alice@example.com")
    created = await _mint(alice)
    assert set(created) == {"id", "name", "key", "key_prefix", "created_at", "last_used_at"}
    assert created["name"] == "laptop" and created["last_used_at"] is None
    assert created["key"].startswith("sk_replicas_") and len(created["key"]) >= len("sk_replicas_") + 32
    assert created["key"].startswith(created["key_prefix"]) and created["key_prefix"] != created["key"]
    async with _client(app, created["key"]) as laptop:
        response = await laptop.get(KEYS)
    body = assert_contract(response, KEYS)
    assert response.status_code == 200 and created["key"] not in response.text
    assert body["total"] == 2 and body["page"] == 1 and body["limit"] == 10 and body["total_pages"] == 1
    listed = {k["id"]: k for k in body["api_keys"]}
    assert set(listed[created["id"]]) == {"id", "name", "key_prefix", "created_at", "last_used_at"}
    assert listed[created["id"]]["last_used_at"] is not None  # it was just used for this very request
    assert listed[created["id"]]["created_at"] == created["created_at"]


async def test_the_list_is_paged_and_newest_first(org):
    alice = await org.add_user("alice@example.com")
    for name in ("one", "two", "three"):
        await _mint(alice, name)
    page = (await alice.get(KEYS, params={"page": 1, "limit": 2})).json()
    assert [k["name"] for k in page["api_keys"]] == ["three", "two"]
    assert (page["total"], page["page"], page["limit"], page["total_pages"]) == (4, 1, 2, 2)
    last = (await alice.get(KEYS, params={"page": 2, "limit": 2})).json()
    assert [k["name"] for k in last["api_keys"]] == ["one", "test"]
    for params in ({"page": 0}, {"limit": 0}, {"limit": 101}, {"page": "x"}):
        bad = await alice.get(KEYS, params=params)
        assert bad.status_code == 400, params
        validate_schema(bad.json(), "Error")


async def test_another_user_cannot_delete_it_and_a_deleted_key_gets_401(org, make_org, app):
    alice, bob = await org.add_user("alice@example.com"), await org.add_user("bob@example.com")
    outsider = await (await make_org()).add_user("eve@example.com")
    created = await _mint(alice)
    for stranger in (bob, outsider):
        refused = await stranger.delete(f"{KEYS}/{created['id']}")
        assert refused.status_code == 404
        assert assert_contract(refused, KEY, "delete")["error"] == NOT_FOUND
    async with _client(app, created["key"]) as laptop:
        assert (await laptop.get(KEYS)).status_code == 200
        deleted = await alice.delete(f"{KEYS}/{created['id']}")
        assert assert_contract(deleted, KEY, "delete") == {"success": True}
        gone = await laptop.get(KEYS)
        assert gone.status_code == 401 and assert_contract(gone, KEYS)["error"] == "Invalid token"
    assert created["id"] not in {k["id"] for k in (await alice.get(KEYS)).json()["api_keys"]}
    for ref in (created["id"], str(uuid.uuid4()), "not-a-uuid"):
        missing = await alice.delete(f"{KEYS}/{ref}")
        assert missing.status_code == 404 and missing.json()["error"] == NOT_FOUND


async def test_org_keys_have_no_user_and_get_403(client, org):
    alice = await org.add_user("alice@example.com")
    created = await _mint(alice)
    for call in (client.post(KEYS, json={"name": "bot"}), client.get(KEYS),
                 client.delete(f"{KEYS}/{created['id']}")):
        response = await call
        assert response.status_code == 403
        validate_schema(response.json(), "Error")
    assert created["id"] in {k["id"] for k in (await alice.get(KEYS)).json()["api_keys"]}


async def test_the_name_is_required_and_not_blank(org):
    alice = await org.add_user("alice@example.com")
    for body in ({}, {"name": ""}, {"name": "   "}, {"name": "n" * 256}, {"name": 5}):
        response = await alice.post(KEYS, json=body)
        assert response.status_code == 400, body
        assert "name" in assert_contract(response, KEYS)["details"]
    assert (await alice.get(KEYS)).json()["total"] == 1


async def test_unauthenticated_calls_are_401(anonymous):
    for call in (anonymous.get(KEYS), anonymous.post(KEYS, json={"name": "x"}),
                 anonymous.delete(f"{KEYS}/{uuid.uuid4()}")):
        response = await call
        assert response.status_code == 401
        assert_contract(response, KEYS if response.request.method != "DELETE" else KEY)

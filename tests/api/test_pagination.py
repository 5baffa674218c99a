"""Every list endpoint's `page`, `limit` and `offset` take any integer: out of range (huge, negative, zero)
answers 400 in the contract's error body naming the field, never a 500 from a 64-bit SQL OFFSET; a page past
the last one is an empty page. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from tests.contract import assert_contract, contract

HUGE = [322274570748594560, 2**63, 2**64 + 1, 10**30, -(2**63) - 1, -1, 0]
LISTS = [  # (path, contract path or None, the key of the items)
    ("/v1/replica", "/v1/replica", "replicas"),
    ("/v1/automations", "/v1/automations", "automations"),
    ("/v1/user/api-keys", "/v1/user/api-keys", "api_keys"),
    ("/v1/audit-log", None, "audit_events"),
]


def _refused(response, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "details"} and body["error"] == "Invalid request"
    assert body["details"].startswith(f"{field}:"), body


@pytest.fixture
async def member(org):
    """A member with a personal key: personal API keys need a user (an org key gets 403)."""
    return await org.add_user("pager@example.com")


@pytest.mark.parametrize(("path", "contract_path", "items"), LISTS)
async def test_out_of_range_page_and_limit_answer_400(client, member, path, contract_path, items):
    caller = member if path == "/v1/user/api-keys" else client
    for value in HUGE:
        page = await caller.get(path, params={"page": value, "limit": 99})
        _refused(page, "page")
        limit = await caller.get(path, params={"limit": value})
        _refused(limit, "limit")
        if contract_path and "400" in _documented(contract_path):
            assert_contract(page, contract_path)
    _refused(await caller.get(path, params={"limit": 101}), "limit")
    _refused(await caller.get(path, params={"page": "1e3"}), "page")


def _documented(contract_path: str) -> set[str]:
    return set(contract()["paths"][contract_path]["get"]["responses"])


async def test_the_issue_request_answers_400_not_500(client):
    response = await client.get("/v1/automations", params={"page": 322274570748594560, "limit": 99})
    _refused(response, "page")
    assert_contract(response, "/v1/automations")


@pytest.mark.parametrize(("path", "contract_path", "items"), LISTS)
async def test_a_page_past_the_last_is_empty_with_the_totals(client, member, path, contract_path, items):
    caller = member if path == "/v1/user/api-keys" else client
    first = await caller.get(path)
    assert first.status_code == 200, first.text
    total = first.json()["total"]
    far = await caller.get(path, params={"page": 10**12, "limit": 100})
    assert far.status_code == 200, far.text
    body = far.json()
    pages = body.get("total_pages", body.get("totalPages"))
    assert body[items] == [] and body["total"] == total and body["page"] == 10**12 and body["limit"] == 100
    assert pages == (total + 99) // 100
    if contract_path:
        assert_contract(far, contract_path)


async def test_an_empty_list_has_zero_pages(client):
    body = assert_contract(await client.get("/v1/automations", params={"limit": 1}), "/v1/automations")
    assert body == {"automations": [], "total": 0, "page": 1, "limit": 1, "totalPages": 0}


async def test_executions_history_and_events_bounds_are_checked_before_the_lookup(client):
    """The query is validated first: a bad page is 400 even for an unknown automation or replica."""
    unknown = uuid.uuid4()
    executions = f"/v1/automations/{unknown}/executions"
    for value in HUGE:
        _refused(await client.get(executions, params={"page": value}), "page")
        _refused(await client.get(executions, params={"limit": value}), "limit")
    assert (await client.get(executions, params={"page": 10**12})).status_code == 404

    history = f"/v1/replica/{unknown}/history"
    for value in [10**16, 2**63, 10**30, -1]:
        _refused(await client.get(history, params={"offset": value}), "offset")
    for value in [0, 501, 2**63, -5]:
        _refused(await client.get(history, params={"limit": value}), "limit")
    assert assert_contract(await client.get(history, params={"offset": 10**15}),
                           "/v1/replica/{id}/history")["error"]
    # The event stream's cursor too (its stream would break mid-way on the 64-bit overflow).
    for value in [10**16, 2**63, -1]:
        _refused(await client.get(f"/v1/replica/{unknown}/events", params={"after": value}), "after")

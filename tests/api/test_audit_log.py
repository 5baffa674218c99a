"""The audit log: changes made through the API, redacted, filtered, for org admins of that org only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tests.contract import validate_schema

AUDIT = "/v1/audit-log"
EVENT_FIELDS = {"id", "created_at", "actor_type", "actor_id", "actor_name", "action", "resource_type",
                "resource_id", "before", "after"}
TOKEN = "ghp_" + "AuditSecret" * 3


async def _changes(org, make_git_repo) -> dict:
    """Make a few changes through the API: a repository with a credential, a set, a personal key."""
    path = make_git_repo("app")
    repo = (await org.client.post("/v1/replica/repositories", json={
        "name": "acme/app", "url": str(path), "credential": TOKEN})).json()["repository"]
    await org.client.post("/v1/replica/repository-sets", json={"name": "s", "repository_ids": [repo["id"]]})
    await org.client.post("/v1/environments", json={"name": "staging", "repository_id": repo["id"]})
    member = await org.add_user("dev@example.com")
    key = (await member.post("/v1/user/api-keys", json={"name": "laptop"})).json()["api_key"]
    return {"repo": repo, "member": member, "key": key}


async def test_changes_made_through_the_api_appear_with_secrets_redacted(org, make_git_repo):
    made = await _changes(org, make_git_repo)
    response = await org.client.get(AUDIT)
    assert response.status_code == 200
    body = response.json()
    assert TOKEN not in response.text and made["key"]["key"] not in response.text
    assert set(body) == {"audit_events", "total", "page", "limit", "totalPages"}
    assert (body["page"], body["limit"], body["totalPages"]) == (1, 20, 1)
    events = body["audit_events"]
    assert body["total"] == len(events)
    assert all(set(e) == EVENT_FIELDS for e in events)
    by_action = {e["action"]: e for e in events}
    assert {"repository.created", "repository_set.created", "environment.created",
            "api_key.created", "member.created"} <= set(by_action)
    created = by_action["repository.created"]
    assert created["resource_type"] == "repository" and created["resource_id"] == made["repo"]["id"]
    assert created["after"] == {"name": "acme/app", "url": made["repo"]["url"], "default_branch": "main",
                                "has_credential": True}
    assert created["actor_type"] == "api_key" and created["before"] is None
    assert created["created_at"].endswith("Z")
    personal = [e for e in events if e["action"] == "api_key.created" and e["actor_type"] == "user"]
    assert personal[0]["actor_name"] == "dev@example.com" and personal[0]["after"]["scope"] == "user"
    times = [e["created_at"] for e in events]
    assert times == sorted(times, reverse=True)


async def test_filters_narrow_the_log(org, make_git_repo):
    await _changes(org, make_git_repo)
    repos = (await org.client.get(AUDIT, params={"resource_type": "repository"})).json()
    assert [e["action"] for e in repos["audit_events"]] == ["repository.created"]
    by_action = (await org.client.get(AUDIT, params={"action": "repository_set.created"})).json()
    assert by_action["total"] == 1
    by_email = (await org.client.get(AUDIT, params={"actor": "dev@example.com"})).json()
    assert [e["action"] for e in by_email["audit_events"]] == ["api_key.created"]
    actor_id = by_email["audit_events"][0]["actor_id"]
    assert (await org.client.get(AUDIT, params={"actor": actor_id})).json()["total"] == 1
    everything = (await org.client.get(AUDIT)).json()["total"]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await org.client.get(AUDIT, params={"since": past})).json()["total"] == everything
    naive_future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert (await org.client.get(AUDIT, params={"since": naive_future})).json()["total"] == 0
    in_another_zone = (datetime.now(UTC) - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=5)))
    assert in_another_zone.isoformat().endswith("+05:00")
    zoned = (await org.client.get(AUDIT, params={"since": in_another_zone.isoformat()})).json()
    assert zoned["total"] == everything


async def test_pages_and_bad_parameters(org, make_git_repo):
    await _changes(org, make_git_repo)
    total = (await org.client.get(AUDIT)).json()["total"]
    page = (await org.client.get(AUDIT, params={"page": 2, "limit": 2})).json()
    assert len(page["audit_events"]) == 2 and page["totalPages"] == -(-total // 2) and page["page"] == 2
    for params in ({"page": 0}, {"limit": 101}, {"limit": 0}, {"since": "yesterday"}, {"page": "one"}):
        bad = await org.client.get(AUDIT, params=params)
        assert bad.status_code == 400, params
        validate_schema(bad.json(), "Error")


async def test_members_get_403_and_admins_see_the_log(org, make_git_repo):
    made = await _changes(org, make_git_repo)
    refused = await made["member"].get(AUDIT)
    assert refused.status_code == 403 and refused.json()["error"] == "Admin access required"
    admin = await org.add_user("boss@example.com", role="admin")
    assert (await admin.get(AUDIT)).status_code == 200


async def test_another_organization_sees_none_of_it(make_org, make_git_repo, anonymous):
    alice, bob = await make_org(), await make_org()
    await _changes(alice, make_git_repo)
    body = (await bob.client.get(AUDIT)).json()
    # Bob's org has only its own key's creation.
    assert [e["action"] for e in body["audit_events"]] == ["api_key.created"]
    assert "acme/app" not in str(body)
    assert (await anonymous.get(AUDIT)).status_code == 401

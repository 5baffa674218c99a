"""Automations CRUD, validation, listing, scopes and the environment coupling, on SQLite and PostgreSQL,
against the contract. No workspace is started here (see test_firing.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from replicas.store.models import AuditEvent
from tests.automations.conftest import automation_body, plain_environment
from tests.contract import assert_contract

ITEM = "/v1/automations/{id}"


async def test_create_get_update_delete_round_trip(wired, client):
    env_id = await plain_environment(client)
    created = await client.post("/v1/automations", json=automation_body(
        env_id, description="weekday summary", workspace_lifecycle_policy="sleep_when_done",
        workspace_auto_stop_minutes=30, workspace_size="large", agent_provider="claude", model="sonnet",
        thinking_level="high", plan_mode=True, fast_mode=False, debounce_seconds=0,
        config={"preferences": {"keep_open_on_pr_merge": True}}))
    assert created.status_code == 201, created.text
    automation = assert_contract(created, "/v1/automations")["automation"]
    assert automation["cron_expression"] == "0 9 * * 1-5" and automation["cron_timezone"] == "Europe/Paris"
    next_fire = datetime.fromisoformat(automation["cron_next_fire_at"].replace("Z", "+00:00"))
    local = next_fire.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0) and local.isoweekday() <= 5 and next_fire > datetime.now(UTC)
    assert automation["webhook_token"] is None  # no custom trigger
    assert automation["enabled"] is True and automation["user_id"] is None and automation["plan_mode"] is True
    assert automation["workspace_lifecycle_policy"] == "sleep_when_done" and automation["workspace_size"] == "large"

    got = await client.get(ITEM.format(id=automation["id"]))
    assert assert_contract(got, ITEM)["automation"] == automation

    patched = await client.patch(ITEM.format(id=automation["id"]), json={
        "name": "hourly", "enabled": False,
        "triggers": [{"type": "cron", "config": {"schedule": "15 * * * *"}}, {"type": "custom", "config": {}}]})
    body = assert_contract(patched, ITEM)["automation"]
    assert body["name"] == "hourly" and body["enabled"] is False and body["cron_timezone"] == "UTC"
    assert body["cron_expression"] == "15 * * * *" and body["cron_next_fire_at"].endswith(":15:00Z")
    assert body["webhook_token"] and len(body["webhook_token"]) >= 40
    assert body["description"] == "weekday summary"  # untouched fields stay

    # Dropping the custom trigger drops the token; the legacy policy is stored as its new name.
    patched = await client.patch(ITEM.format(id=automation["id"]), json={
        "triggers": [{"type": "github", "config": {"event": "pull_request.opened"}}],
        "workspace_lifecycle_policy": "delete_when_done"})
    body = assert_contract(patched, ITEM)["automation"]
    assert body["webhook_token"] is None and body["cron_expression"] is None and body["cron_next_fire_at"] is None
    assert body["workspace_lifecycle_policy"] == "archive_when_done"

    deleted = await client.delete(ITEM.format(id=automation["id"]))
    assert assert_contract(deleted, ITEM, "delete") == {"success": True}
    assert (await client.get(ITEM.format(id=automation["id"]))).status_code == 404
    async with wired.state.sessions() as session:
        actions = list(await session.scalars(select(AuditEvent.action).where(
            AuditEvent.resource_id == automation["id"]).order_by(AuditEvent.created_at)))
    assert actions == ["automation.created", "automation.updated", "automation.updated", "automation.deleted"]


async def test_validation(wired, client):
    env_id = await plain_environment(client)
    cases = [
        ({"triggers": []}, "triggers"),
        ({"triggers": [{"type": "jira", "config": {}}]}, "type"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "* * * * *"}}]}, "60 minutes"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "0,30 9 * * *"}}]}, "60 minutes"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "0 9 * *"}}]}, "5 fields"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "0 25 * * *"}}]}, "hour"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "0 9 30 2 *"}}]}, "never fires"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "0 9 * * *", "timezone": "Mars/Olympus"}}]},
         "timezone"),
        ({"triggers": [{"type": "cron", "config": {"schedule": "0 9 * * *"}},
                       {"type": "cron", "config": {"schedule": "0 10 * * *"}}]}, "cron trigger"),
        ({"triggers": [{"type": "github", "config": {"event": "pull_request.opened"}},
                       {"type": "github", "config": {"event": "pull_request.opened", "repository_ids": []}}]},
         "pull_request.opened"),
        ({"triggers": [{"type": "github", "config": {"event": "push"}}]}, "event"),
        ({"triggers": [{"type": "sentry", "config": {"event": "issue.created", "min_level": "loud"}}]}, "min_level"),
        ({"model": "sonnet"}, "agent_provider"),
        ({"agent_provider": "pi"}, "agent_provider"),
        ({"workspace_auto_stop_minutes": 2}, "workspace_auto_stop_minutes"),
        ({"debounce_seconds": 86401}, "debounce_seconds"),
        ({"workspace_size": "huge"}, "workspace_size"),
        ({"environment_id": "00000000-0000-0000-0000-000000000000"}, "environment"),
        ({"prompt": ""}, "prompt"),
    ]
    for fields, mention in cases:
        response = await client.post("/v1/automations", json=automation_body(env_id, **fields))
        assert response.status_code == 400, (fields, response.text)
        body = assert_contract(response, "/v1/automations")
        assert mention.lower() in (body["error"] + " " + (body["details"] or "")).lower(), (fields, body)

    fine = await client.post("/v1/automations", json=automation_body(env_id, triggers=[
        {"type": "github", "config": {"event": "pull_request.opened", "excluded_actors": ["@dependabot[bot]"]}},
        {"type": "gitlab", "config": {"event": "merge_request.opened"}},
        {"type": "slack", "config": {"event": "message"}},
        {"type": "sentry", "config": {"event": "issue.created", "min_level": "error"}}]))
    body = assert_contract(fine, "/v1/automations")["automation"]
    assert body["triggers"][2] == {"type": "slack", "config": {"event": "message", "group_thread_replies": True}}

    # PATCH shares the rules, and answers 404 for an unknown automation.
    patched = await client.patch(ITEM.format(id=body["id"]), json={"triggers": [
        {"type": "cron", "config": {"schedule": "*/5 * * * *"}}]})
    assert patched.status_code == 400
    missing = await client.patch(ITEM.format(id="00000000-0000-0000-0000-000000000000"), json={"name": "x"})
    assert assert_contract(missing, ITEM, "patch")["error"] == "Automation not found"


async def test_list_filters_and_paging(wired, client):
    env_id = await plain_environment(client)
    kinds = {"cron-a": [{"type": "cron", "config": {"schedule": "0 1 * * *"}}],
             "hook-b": [{"type": "custom", "config": {}}],
             "Cron-C": [{"type": "cron", "config": {"schedule": "0 2 * * *"}}, {"type": "custom", "config": {}}]}
    for name, triggers in kinds.items():
        response = await client.post("/v1/automations", json=automation_body(env_id, name=name, triggers=triggers,
                                                                             enabled=name != "hook-b"))
        assert response.status_code == 201, response.text

    async def names(**params) -> list[str]:
        response = await client.get("/v1/automations", params=params)
        body = assert_contract(response, "/v1/automations")
        return [a["name"] for a in body["automations"]]

    assert await names() == ["Cron-C", "hook-b", "cron-a"]  # newest first
    assert await names(trigger_type="cron") == ["Cron-C", "cron-a"]
    assert await names(trigger_type="custom", enabled="true") == ["Cron-C"]
    assert await names(trigger_type="all", enabled="false") == ["hook-b"]
    assert await names(search="  CRON ") == ["Cron-C", "cron-a"]
    assert await names(search="%") == []  # a literal, not a wildcard
    paged = assert_contract(await client.get("/v1/automations", params={"limit": 2, "page": 2}), "/v1/automations")
    assert (paged["total"], paged["page"], paged["limit"], paged["totalPages"]) == (3, 2, 2, 2)
    assert [a["name"] for a in paged["automations"]] == ["cron-a"]
    paged = assert_contract(await client.get("/v1/automations", params={"limit": 1, "trigger_type": "cron"}),
                            "/v1/automations")
    assert paged["total"] == 2 and paged["totalPages"] == 2 and len(paged["automations"]) == 1

    for params in ({"trigger_type": "jira"}, {"limit": 101}, {"page": 0}, {"scope": "everyone"}):
        response = await client.get("/v1/automations", params=params)
        assert response.status_code == 400, (params, response.text)


async def test_personal_automations_belong_to_their_owner(wired, client, org):
    env_id = await plain_environment(client)
    alice = await org.add_user("alice@example.com")
    bob = await org.add_user("bob@example.com")
    try:
        refused = await client.post("/v1/automations", json=automation_body(env_id, scope="user"))
        assert refused.status_code == 403 and "personal" in refused.json()["error"].lower()

        mine = await alice.post("/v1/automations", json=automation_body(env_id, name="mine", scope="user"))
        mine = assert_contract(mine, "/v1/automations")["automation"]
        assert mine["user_id"] and mine["created_by"] == mine["user_id"]
        shared = await alice.post("/v1/automations", json=automation_body(env_id, name="shared"))
        shared = assert_contract(shared, "/v1/automations")["automation"]
        assert shared["user_id"] is None and shared["created_by"] == mine["user_id"]

        async def names(c, scope):
            return [a["name"] for a in (await c.get("/v1/automations", params={"scope": scope})).json()["automations"]]

        assert await names(alice, "user") == ["mine"]
        assert await names(alice, "all") == ["shared", "mine"]
        assert await names(alice, "org") == ["shared"]
        assert await names(bob, "all") == ["shared"]
        assert await names(client, "user") == []
        for other in (bob, client):
            assert (await other.get(ITEM.format(id=mine["id"]))).status_code == 404
            assert (await other.patch(ITEM.format(id=mine["id"]), json={"name": "x"})).status_code == 404
            assert (await other.delete(ITEM.format(id=mine["id"]))).status_code == 404
        assert (await alice.get(ITEM.format(id=mine["id"]))).status_code == 200
        # A personal environment cannot back an org automation (the bot could not see it).
        personal_env = await alice.post("/v1/environments", json={"name": "alice-env", "scope": "user"})
        personal_env_id = personal_env.json()["environment"]["id"]
        refused = await alice.post("/v1/automations", json=automation_body(personal_env_id))
        assert refused.status_code == 400
        ok = await alice.post("/v1/automations", json=automation_body(personal_env_id, scope="user", name="p2"))
        assert ok.status_code == 201
    finally:
        await alice.aclose()
        await bob.aclose()


async def test_other_organizations_see_nothing(wired, client, make_org):
    env_id = await plain_environment(client)
    created = (await client.post("/v1/automations", json=automation_body(env_id))).json()["automation"]
    other = await make_org()
    assert (await other.client.get(ITEM.format(id=created["id"]))).status_code == 404
    assert (await other.client.get("/v1/automations")).json()["total"] == 0
    executions = await other.client.get(ITEM.format(id=created["id"]) + "/executions")
    assert assert_contract(executions, "/v1/automations/{id}/executions")["error"] == "Automation not found"
    # Nor can another organization bind its automation to our environment.
    other_env = await other.client.post("/v1/automations", json=automation_body(env_id))
    assert other_env.status_code == 400


async def test_a_referenced_environment_cannot_be_deleted(wired, client):
    env_id = await plain_environment(client)
    moved_to = await plain_environment(client, "other")
    created = (await client.post("/v1/automations", json=automation_body(env_id))).json()["automation"]
    refused = await client.delete(f"/v1/environments/{env_id}")
    assert refused.status_code == 409 and "automation" in refused.json()["error"].lower()
    # Moving the automation (PATCH environment_id) frees the first environment and pins the second.
    moved = await client.patch(ITEM.format(id=created["id"]), json={"environment_id": moved_to})
    assert moved.json()["automation"]["environment_id"] == moved_to
    assert (await client.delete(f"/v1/environments/{env_id}")).status_code == 200
    assert (await client.delete(f"/v1/environments/{moved_to}")).status_code == 409
    assert (await client.delete(ITEM.format(id=created["id"]))).status_code == 200
    assert (await client.delete(f"/v1/environments/{moved_to}")).status_code == 200


async def test_webhook_token_rotation_and_refusals(wired, client, anonymous):
    env_id = await plain_environment(client)
    created = await client.post("/v1/automations", json=automation_body(env_id, name="hook", enabled=False,
                                                                        triggers=[{"type": "custom", "config": {}}],
                                                                        debounce_seconds=3600))
    automation = created.json()["automation"]
    token = automation["webhook_token"]
    url = f"/v1/automations/webhook/{token}"
    webhook = "/v1/automations/webhook/{token}"

    # Disabled, unknown token, and no custom trigger: the same 404, and nothing recorded.
    disabled = await anonymous.post(url, json={"a": 1})
    unknown = await anonymous.post("/v1/automations/webhook/not-a-token", json={"a": 1})
    assert disabled.status_code == unknown.status_code == 404
    assert disabled.json() == unknown.json()
    assert_contract(disabled, webhook)

    # Too large (413) is answered before anything else. Bad JSON is wrapped as {"raw": ...} and accepted
    # (debounced: recorded, no workspace); test_receivers.py covers every kind of body.
    too_big = await anonymous.post(url, content=b"x" * (256 * 1024 + 1), headers={"content-type": "text/plain"})
    assert too_big.status_code == 413
    assert_contract(too_big, webhook)
    await client.patch(ITEM.format(id=automation["id"]), json={"enabled": True})
    bad_json = await anonymous.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 202
    assert_contract(bad_json, webhook)
    unknown_bad = await anonymous.post("/v1/automations/webhook/nope", content=b"{",
                                       headers={"content-type": "application/json"})
    assert unknown_bad.status_code == 404

    rotated = await client.post(ITEM.format(id=automation["id"]) + "/rotate-webhook-token")
    assert rotated.status_code == 200
    new_token = rotated.json()["automation"]["webhook_token"]
    assert new_token and new_token != token
    assert (await anonymous.post(url, content=b"{", headers={"content-type": "application/json"})).status_code == 404
    assert (await anonymous.post(f"/v1/automations/webhook/{new_token}", content=b"{",
                                 headers={"content-type": "application/json"})).status_code == 202

    no_custom = await client.post("/v1/automations", json=automation_body(env_id, name="cron-only"))
    rotate = await client.post(ITEM.format(id=no_custom.json()["automation"]["id"]) + "/rotate-webhook-token")
    assert rotate.status_code == 400
    # The API-key-free route refuses nothing else: no key is needed, and a key is not consulted.
    listing = await client.get(ITEM.format(id=automation["id"]) + "/executions")
    [pending] = assert_contract(listing, "/v1/automations/{id}/executions")["executions"]
    assert pending["status"] == "pending" and pending["trigger_payload"] == {"raw": "{"}  # the burst's latest


async def test_manual_trigger_is_refused_without_a_cron_or_command_trigger(wired, client, replica_env):
    env_id = await plain_environment(client)
    hook = (await client.post("/v1/automations", json=automation_body(
        env_id, name="hook", triggers=[{"type": "custom", "config": {}}]))).json()["automation"]
    refused = await client.post(ITEM.format(id=hook["id"]) + "/trigger", json={})
    assert refused.status_code == 400
    assert "cron" in assert_contract(refused, "/v1/automations/{id}/trigger")["details"]

    opened = (await client.post("/v1/automations", json=automation_body(env_id, name="pr", triggers=[
        {"type": "github", "config": {"event": "pull_request.opened"}}]))).json()["automation"]
    with_pr = await client.post(ITEM.format(id=opened["id"]) + "/trigger",
                                json={"pr": {"repository_id": replica_env.repository_id, "number": 7}})
    assert with_pr.status_code == 400 and "pull_request.command" in with_pr.json()["details"]

    other_repo = "00000000-0000-0000-0000-000000000001"
    command = (await client.post("/v1/automations", json=automation_body(env_id, name="cmd", triggers=[
        {"type": "github", "config": {"event": "pull_request.command", "repository_ids": [other_repo]}}])))
    command = command.json()["automation"]
    wrong_repo = await client.post(ITEM.format(id=command["id"]) + "/trigger",
                                   json={"pr": {"repository_id": replica_env.repository_id, "number": 7}})
    assert wrong_repo.status_code == 400 and "repositories" in wrong_repo.json()["details"]
    no_pr = await client.post(ITEM.format(id=command["id"]) + "/trigger")
    assert no_pr.status_code == 400
    missing = await client.post(ITEM.format(id="00000000-0000-0000-0000-000000000000") + "/trigger")
    assert missing.status_code == 404
    assert (await client.get(ITEM.format(id=hook["id"]) + "/executions")).json()["total"] == 0


async def test_concurrent_redeliveries_record_one_execution(wired, client, anonymous):
    """Dedupe by delivery id holds under concurrency (the unique index decides). A long debounce window keeps
    the execution pending, so no workspace is started."""
    import asyncio

    env_id = await plain_environment(client)
    automation = (await client.post("/v1/automations", json=automation_body(
        env_id, name="dedupe", debounce_seconds=3600, triggers=[{"type": "custom", "config": {}}]))).json()
    automation = automation["automation"]
    url = f"/v1/automations/webhook/{automation['webhook_token']}"
    responses = await asyncio.gather(*[anonymous.post(url, json={"n": n}, headers={"X-Delivery-Id": "same"})
                                       for n in range(5)])
    assert [r.status_code for r in responses] == [202] * 5
    executions = assert_contract(await client.get(ITEM.format(id=automation["id"]) + "/executions"),
                                 "/v1/automations/{id}/executions")
    assert executions["total"] == 1 and executions["executions"][0]["status"] == "pending"
    # Another delivery inside the window updates the same pending run (latest payload wins).
    assert (await anonymous.post(url, json={"n": "late"}, headers={"X-Delivery-Id": "other"})).status_code == 202
    executions = (await client.get(ITEM.format(id=automation["id"]) + "/executions")).json()
    assert executions["total"] == 1 and executions["executions"][0]["trigger_payload"] == {"n": "late"}
    # A reconcile pass leaves a pending run alone until its window ends (and runs clean on both databases).
    from replicas.services import automations as service

    counts = await service.reconcile_executions(wired.state)
    assert counts == {"completed": 0, "failed": 0, "started": 0}

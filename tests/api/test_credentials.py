"""OpenCode Go credentials: org and user scopes, admin rights, masking, encryption at rest, isolation,
audit, and the environment variables handed to agents (user wins over org)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from replicas.services import auth
from replicas.services.credentials import agent_credentials
from replicas.store.models import AuditEvent, ProviderCredential, User
from tests.contract import assert_contract, validate_schema

ORG = "/v1/opencode-go/credentials"
USER = "/v1/opencode-go/user/credentials"


def _key(tag: str = "") -> str:
    return f"ocg-{tag}{uuid.uuid4().hex}"


async def test_org_credential_upload_status_replace_and_delete(client):
    empty = await client.get(ORG)
    assert assert_contract(empty, ORG) == {"hasCredentials": False}

    key = _key()
    uploaded = await client.post(ORG, json={"api_key": key})
    assert uploaded.status_code == 200
    body = assert_contract(uploaded, ORG)
    assert body["success"] is True

    status = assert_contract(await client.get(ORG), ORG)
    assert status == {"hasCredentials": True, "credentialId": body["credentialId"],
                      "apiKey": f"{key[:4]}...{key[-4:]}"}

    replacement = _key("new-")
    replaced = assert_contract(await client.post(ORG, json={"api_key": replacement}), ORG)
    assert replaced["credentialId"] == body["credentialId"]
    assert (await client.get(ORG)).json()["apiKey"] == f"{replacement[:4]}...{replacement[-4:]}"

    deleted = await client.delete(ORG)
    assert assert_contract(deleted, ORG) == {"success": True}
    assert (await client.get(ORG)).json() == {"hasCredentials": False}
    again = await client.delete(ORG)
    assert assert_contract(again, ORG) == {"success": True}


async def test_concurrent_first_uploads_leave_one_org_credential(client, app):
    keys = [_key(f"{n}-") for n in range(4)]
    responses = await asyncio.gather(*(client.post(ORG, json={"api_key": key}) for key in keys))
    assert [r.status_code for r in responses] == [200] * 4
    assert len({r.json()["credentialId"] for r in responses}) == 1
    org_id = await _org_id(app, client)
    async with app.state.sessions() as session:
        rows = (await session.scalars(select(ProviderCredential)
                                      .where(ProviderCredential.organization_id == org_id))).all()
        assert len(rows) == 1
        assert (await agent_credentials(session, app.state.box, org_id, None))["OPENCODE_API_KEY"] in keys


async def test_short_keys_are_masked_entirely(client):
    await client.post(ORG, json={"api_key": "abcdefgh"})
    assert (await client.get(ORG)).json()["apiKey"] == "****"


async def test_missing_empty_or_blank_api_key_is_400_and_keeps_the_stored_key(client, org):
    member = await org.add_user("dev@example.com")
    key = _key()
    await client.post(ORG, json={"api_key": key})
    for path, caller in ((ORG, client), (USER, member)):
        for body in ({}, {"api_key": ""}, {"api_key": "   "}, {"api_key": 42}, {"key": "x"}):
            response = await caller.post(path, json=body)
            assert response.status_code == 400, (path, body)
            assert "api_key" in assert_contract(response, path)["details"]
    assert (await client.get(ORG)).json()["apiKey"] == f"{key[:4]}...{key[-4:]}"
    assert (await member.get(USER)).json() == {"hasCredentials": False}


async def test_surrounding_whitespace_is_not_stored(client, app):
    key = _key()
    await client.post(ORG, json={"api_key": f"  {key}\n"})
    org_id = await _org_id(app, client)
    async with app.state.sessions() as session:
        assert await agent_credentials(session, app.state.box, org_id, None) == {"OPENCODE_API_KEY": key}


async def test_members_read_org_status_but_cannot_change_it(client, org):
    member = await org.add_user("member@example.com", role="member")
    key = _key()
    credential_id = (await client.post(ORG, json={"api_key": key})).json()["credentialId"]

    status = assert_contract(await member.get(ORG), ORG)
    assert status["credentialId"] == credential_id and key not in str(status)
    for response in (await member.post(ORG, json={"api_key": _key()}), await member.delete(ORG)):
        assert response.status_code == 403
        assert assert_contract(response, ORG)["error"] == "Admin access required"
    assert (await client.get(ORG)).json()["apiKey"] == f"{key[:4]}...{key[-4:]}"


async def test_admin_personal_keys_manage_the_org_credential(client, org):
    admin = await org.add_user("admin@example.com", role="admin")
    assert assert_contract(await admin.post(ORG, json={"api_key": _key()}), ORG)["success"] is True
    assert (await client.get(ORG)).json()["hasCredentials"] is True
    assert assert_contract(await admin.delete(ORG), ORG) == {"success": True}
    assert (await client.get(ORG)).json() == {"hasCredentials": False}


async def test_user_credentials_are_the_callers_own(org):
    alice, bob = await org.add_user("alice@example.com"), await org.add_user("bob@example.com")
    key = _key("alice-")
    uploaded = await alice.post(USER, json={"api_key": key})
    credential_id = assert_contract(uploaded, USER)["credentialId"]

    assert assert_contract(await alice.get(USER), USER) == {
        "hasCredentials": True, "credentialId": credential_id, "apiKey": f"{key[:4]}...{key[-4:]}"}
    assert assert_contract(await bob.get(USER), USER) == {"hasCredentials": False}
    # The user's key is not the organization's.
    assert (await org.client.get(ORG)).json() == {"hasCredentials": False}

    assert assert_contract(await bob.delete(USER), USER) == {"success": True}
    assert (await alice.get(USER)).json()["credentialId"] == credential_id
    assert assert_contract(await alice.delete(USER), USER) == {"success": True}
    assert (await alice.get(USER)).json() == {"hasCredentials": False}


async def test_org_keys_get_400_on_user_credentials(client):
    response = await client.post(USER, json={"api_key": _key()})
    assert response.status_code == 400
    assert assert_contract(response, USER)["error"] == "Personal API key required"
    # The contract lists no 400 for GET and DELETE; the same clear error beats a silent answer.
    for response in (await client.get(USER), await client.delete(USER)):
        assert response.status_code == 400
        validate_schema(response.json(), "Error")


async def test_other_organizations_never_see_or_change_a_credential(client, org, make_org):
    other = await make_org()
    other_user = await other.add_user("dev@example.com")
    user = await org.add_user("dev@example.com")
    await client.post(ORG, json={"api_key": _key()})
    await user.post(USER, json={"api_key": _key()})

    assert assert_contract(await other.client.get(ORG), ORG) == {"hasCredentials": False}
    assert assert_contract(await other_user.get(USER), USER) == {"hasCredentials": False}
    await other.client.delete(ORG)
    await other_user.delete(USER)
    assert (await client.get(ORG)).json()["hasCredentials"] is True
    assert (await user.get(USER)).json()["hasCredentials"] is True

    other_id = (await other.client.post(ORG, json={"api_key": _key()})).json()["credentialId"]
    assert other_id != (await client.get(ORG)).json()["credentialId"]


async def test_no_plaintext_key_in_the_raw_row_or_the_audit_log(client, org, app):
    member = await org.add_user("dev@example.com")
    org_key, user_key = _key("org-"), _key("user-")
    await client.post(ORG, json={"api_key": org_key})
    await client.post(ORG, json={"api_key": org_key + "-rotated"})
    await member.post(USER, json={"api_key": user_key})
    await member.delete(USER)
    await client.delete(ORG)
    await client.post(ORG, json={"api_key": org_key})
    secrets = (org_key, org_key + "-rotated", user_key)

    org_id = await _org_id(app, client)
    async with app.state.sessions() as session:
        rows = (await session.execute(select(ProviderCredential.__table__)
                                      .where(ProviderCredential.organization_id == org_id))).all()
        audits = (await session.scalars(select(AuditEvent)
                                        .where(AuditEvent.organization_id == org_id,
                                               AuditEvent.resource_type == "provider_credential"))).all()
    [row] = rows
    assert row._mapping["secret_encrypted"].startswith("v1:")
    assert not any(secret in str(column) for column in row for secret in secrets)
    assert sorted(e.action for e in audits) == sorted(
        ["provider_credential.created", "provider_credential.updated", "provider_credential.created",
         "provider_credential.deleted", "provider_credential.deleted", "provider_credential.created"])
    for event in audits:
        text = f"{event.before} {event.after}"
        assert not any(secret in text or secret[:8] in text for secret in secrets)
    user_created = next(e for e in audits if e.after and e.after["scope"] == "user")
    assert user_created.actor_type == "user" and user_created.after["provider"] == "opencode-go"


async def test_agent_credentials_prefer_the_users_key_over_the_orgs(client, org, app):
    alice, bob = await org.add_user("alice@example.com"), await org.add_user("bob@example.com")
    org_id = await _org_id(app, client)
    alice_id, bob_id = await _user_id(app, org_id, "alice@example.com"), await _user_id(app, org_id,
                                                                                          "bob@example.com")
    box = app.state.box
    async with app.state.sessions() as session:
        assert await agent_credentials(session, box, org_id, alice_id) == {}

    org_key, alice_key = _key("org-"), _key("alice-")
    await client.post(ORG, json={"api_key": org_key})
    await alice.post(USER, json={"api_key": alice_key})
    async with app.state.sessions() as session:
        assert await agent_credentials(session, box, org_id, alice_id) == {"OPENCODE_API_KEY": alice_key}
        assert await agent_credentials(session, box, org_id, bob_id) == {"OPENCODE_API_KEY": org_key}
        assert await agent_credentials(session, box, org_id, None) == {"OPENCODE_API_KEY": org_key}
        await session.commit()

    # Handing a key out stamps lastFetchedAt once the caller commits.
    fetched = assert_contract(await bob.get(ORG), ORG)
    assert fetched["lastFetchedAt"].endswith("Z")
    assert "lastFetchedAt" in (await alice.get(USER)).json()

    await client.delete(ORG)
    async with app.state.sessions() as session:
        assert await agent_credentials(session, box, org_id, bob_id) == {}
        assert await agent_credentials(session, box, org_id, alice_id) == {"OPENCODE_API_KEY": alice_key}


async def test_agent_credentials_never_cross_organizations(client, make_org, app):
    other = await make_org()
    await other.client.post(ORG, json={"api_key": _key()})
    async with app.state.sessions() as session:
        assert await agent_credentials(session, app.state.box, await _org_id(app, client), None) == {}


async def test_anonymous_callers_get_401(anonymous):
    for path in (ORG, USER):
        for response in (await anonymous.get(path), await anonymous.post(path, json={"api_key": "x"}),
                         await anonymous.delete(path)):
            assert response.status_code == 401
            assert_contract(response, path)


async def _org_id(app, client) -> uuid.UUID:
    async with app.state.sessions() as session:
        return (await auth.authenticate(session, client.headers["Authorization"])).organization_id


async def _user_id(app, org_id: uuid.UUID, email: str) -> uuid.UUID:
    async with app.state.sessions() as session:
        return await session.scalar(select(User.id).where(User.organization_id == org_id, User.email == email))

"""Dashboard sessions over HTTP (SQLite and PostgreSQL): an API key is exchanged for an HttpOnly,
SameSite=Strict, expiring cookie stored hashed; the /v1 API accepts the cookie as the key that signed in,
writes need the CSRF header, sign-out ends it, and one organization's cookie sees nothing of another's."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from replicas.store.models import DashboardSession, utcnow


def browser(app) -> httpx.AsyncClient:
    """A client with no key, keeping cookies like a browser on the dashboard's origin."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replicas.test")


@contextlib.asynccontextmanager
async def signed_in(app, key: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser signed in with `key`, and its CSRF token."""
    async with browser(app) as client:
        response = await client.post("/auth/session", json={"api_key": key})
        assert response.status_code == 200, response.text
        yield client, response.json()["session"]["csrf_token"]


async def test_sign_in_sets_an_httponly_strict_expiring_cookie_stored_hashed(app, org):
    async with browser(app) as client:
        response = await client.post("/auth/session", json={"api_key": org.key})
        assert response.status_code == 200, response.text
        body = response.json()["session"]
        assert body["role"] == "admin" and body["scope"] == "org" and body["expires_at"]
        cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
        session_cookie, csrf_cookie = cookies["replicas_session"], cookies["replicas_csrf"]
        assert "httponly" in session_cookie and "samesite=strict" in session_cookie
        assert "max-age=43200" in session_cookie and "path=/" in session_cookie
        assert "httponly" not in csrf_cookie and "samesite=strict" in csrf_cookie
        token = client.cookies["replicas_session"]
        assert client.cookies["replicas_csrf"] == body["csrf_token"]

        assert (await client.get("/auth/session")).json()["session"]["organization_id"] == body["organization_id"]
        assert (await client.get("/v1/replica")).status_code == 200
    async with app.state.sessions() as session:
        stored = list(await session.scalars(select(DashboardSession.token_hash)))
    assert hashlib.sha256(token.encode()).hexdigest() in stored and token not in stored


async def test_a_bad_key_is_refused(app):
    async with browser(app) as client:
        response = await client.post("/auth/session", json={"api_key": "sk_replicas_nope-nope-nope-nope"})
        assert response.status_code == 401 and response.json()["error"] == "Invalid token"
        assert "replicas_session" not in client.cookies
        assert (await client.get("/auth/session")).status_code == 401
        assert (await client.get("/v1/environments")).status_code == 401


async def test_writes_by_cookie_need_the_csrf_header(app, org):
    async with signed_in(app, org.key) as (client, csrf):
        refused = await client.post("/v1/environments", json={"name": "web"})
        assert refused.status_code == 403 and refused.json()["error"] == "Invalid CSRF token"
        forged = await client.post("/v1/environments", json={"name": "web"}, headers={"X-CSRF-Token": "0" * 64})
        assert forged.status_code == 403
        created = await client.post("/v1/environments", json={"name": "web"}, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201, created.text
        # The Bearer key still works beside a cookie, and needs no CSRF token (no browser sends it by itself).
        with_key = await client.post("/v1/environments", json={"name": "api"},
                                     headers={"Authorization": f"Bearer {org.key}"})
        assert with_key.status_code == 201


async def test_sign_out_ends_the_session(app, org):
    async with signed_in(app, org.key) as (client, csrf):
        token = client.cookies["replicas_session"]
        assert (await client.delete("/auth/session")).status_code == 403  # a write: CSRF header needed
        out = await client.delete("/auth/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200 and out.json() == {"success": True}
        assert "replicas_session" not in client.cookies
    # The old cookie, replayed, is refused everywhere.
    async with browser(app) as replay:
        replay.cookies.set("replicas_session", token)
        for path in ("/auth/session", "/v1/environments", "/v1/replica"):
            response = await replay.get(path)
            assert response.status_code == 401, path
            assert set(response.json()) >= {"error"}


async def test_an_expired_session_is_refused(app, org):
    async with signed_in(app, org.key) as (client, _):
        async with app.state.sessions() as session:
            await session.execute(update(DashboardSession).values(expires_at=utcnow() - timedelta(seconds=1)))
            await session.commit()
        assert (await client.get("/v1/environments")).status_code == 401


async def test_a_personal_key_session_acts_as_its_user_and_ends_with_the_key(app, org):
    member = await org.add_user("ada@example.com")
    key = member.headers["Authorization"].split()[1]
    async with signed_in(app, key) as (client, csrf), member:
        assert (await client.get("/auth/session")).json()["session"]["scope"] == "user"
        assert (await client.get("/v1/user/profile")).json()["profile"]["email"] == "ada@example.com"
        made = await client.post("/v1/user/api-keys", json={"name": "laptop"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201
        listed = (await member.get("/v1/user/api-keys")).json()["api_keys"]
        signed_in_with = next(k for k in listed if k["name"] == "test")
        deleted = await client.delete(f"/v1/user/api-keys/{signed_in_with['id']}", headers={"X-CSRF-Token": csrf})
        assert deleted.status_code == 200
        assert (await client.get("/v1/user/profile")).status_code == 401


async def test_a_session_of_one_organization_sees_nothing_of_another(app, make_org, make_git_repo):
    first, second = await make_org(), await make_org()
    origin = make_git_repo("secret")
    theirs = (await second.client.post("/v1/environments", json={"name": "secret-env"})).json()["environment"]
    repo = await second.client.post("/v1/replica/repositories",
                                     json={"name": "acme/secret", "url": str(origin)})
    assert repo.status_code == 201, repo.text
    async with signed_in(app, first.key) as (client, csrf):
        names = [e["name"] for e in (await client.get("/v1/environments")).json()["environments"]]
        assert "secret-env" not in names
        assert (await client.get(f"/v1/environments/{theirs['id']}")).status_code == 404
        assert (await client.get(f"/v1/environments/{theirs['id']}/variables")).status_code == 404
        patched = await client.patch(f"/v1/environments/{theirs['id']}", json={"name": "mine"},
                                     headers={"X-CSRF-Token": csrf})
        assert patched.status_code == 404
        assert (await client.get("/v1/replica/repositories")).json()["repositories"] == []
        assert (await client.get("/v1/audit-log")).status_code in (200, 403)
        events = (await client.get("/v1/audit-log")).json().get("events", [])
        assert all(e.get("resource_id") != theirs["id"] for e in events)


@pytest.mark.parametrize("path", ["/", "/assets/app.css", "/assets/js/app.js"])
async def test_the_page_and_its_assets_are_served_gzipped_with_etags(anonymous, path):
    response = await anonymous.get(path, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip" and response.headers["etag"]
    again = await anonymous.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


async def test_the_page_allows_no_other_origin(anonymous):
    response = await anonymous.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "http" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert (await anonymous.get("/assets/nope.js")).status_code == 404
    assert (await anonymous.get("/assets/index.html")).status_code == 404

"""GET/PUT /v1/user/profile: a personal key's user reads and edits their name and photo, over JSON or multipart."""

from __future__ import annotations

import base64

from replicas.services.profiles import AVATAR_MAX_BYTES
from tests.contract import assert_contract, validate_schema

PROFILE = "/v1/user/profile"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


async def test_without_a_key_both_answer_401_in_the_error_shape(anonymous):
    for response in (await anonymous.get(PROFILE),
                     await anonymous.put(PROFILE, json={"displayName": "x", "avatarUrl": None})):
        assert response.status_code == 401
        validate_schema(response.json(), "Error")
        assert response.json()["error"] == "Missing authorization token"


async def test_a_personal_key_reads_its_own_profile(org):
    alice = await org.add_user("alice@example.com")
    response = await alice.get(PROFILE)
    body = assert_contract(response, PROFILE)
    assert response.status_code == 200
    profile = body["profile"]
    assert profile["email"] == "alice@example.com" and profile["displayName"] == "alice"
    assert profile["avatarUrl"] is None and len(profile["userId"]) == 36


async def test_an_org_key_has_no_profile(client):
    for response in (await client.get(PROFILE),
                     await client.put(PROFILE, json={"displayName": "Bot", "avatarUrl": None})):
        assert response.status_code == 404
        assert response.json()["error"] == "User not found" and "personal API key" in response.json()["details"]


async def test_json_put_sets_name_and_photo_and_null_removes_the_photo(org):
    alice = await org.add_user("alice@example.com")
    bob = await org.add_user("bob@example.com")
    response = await alice.put(PROFILE, json={"displayName": "  Alice Liddell ",
                                              "avatarUrl": "https://example.com/a.png"})
    body = assert_contract(response, PROFILE, "put")
    assert response.status_code == 200
    assert body["profile"]["displayName"] == "Alice Liddell"
    assert body["profile"]["avatarUrl"] == "https://example.com/a.png"
    assert (await alice.get(PROFILE)).json() == body
    assert (await bob.get(PROFILE)).json()["profile"]["displayName"] == "bob"  # only the caller's own row

    removed = await alice.put(PROFILE, json={"displayName": "Alice", "avatarUrl": None})
    assert removed.json()["profile"] == {**body["profile"], "displayName": "Alice", "avatarUrl": None}


async def test_json_put_refuses_what_the_contract_does_not_allow(org):
    alice = await org.add_user("alice@example.com")
    for body in ({"avatarUrl": None}, {"displayName": "Alice"}, {"displayName": "", "avatarUrl": None},
                 {"displayName": "   ", "avatarUrl": None}, {"displayName": "x" * 81, "avatarUrl": None},
                 {"displayName": "Alice", "avatarUrl": "javascript:alert(1)"},
                 {"displayName": "Alice", "avatarUrl": "not a url"},
                 {"displayName": "Alice", "avatarUrl": "data:image/png;base64,bm90IGFuIGltYWdl"}):
        response = await alice.put(PROFILE, json=body)
        assert response.status_code == 400, (body, response.text)
        validate_schema(response.json(), "Error")
    bad_json = await alice.put(PROFILE, content=b"{", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "Invalid JSON body"
    assert (await alice.get(PROFILE)).json()["profile"]["displayName"] == "alice"


async def test_multipart_uploads_keeps_and_removes_the_photo(org):
    alice = await org.add_user("alice@example.com")
    uploaded = await alice.put(PROFILE, data={"displayName": "Alice"},
                               files={"avatar": ("me.png", PNG, "application/octet-stream")})
    body = assert_contract(uploaded, PROFILE, "put")
    assert uploaded.status_code == 200, uploaded.text
    assert body["profile"]["avatarUrl"] == PNG_URI  # typed by its bytes, not by the upload's claim

    kept = await alice.put(PROFILE, data={"displayName": "Alice L."}, files={"unused": ("", b"", "text/plain")})
    assert kept.status_code == 200, kept.text
    assert kept.json()["profile"] == {**body["profile"], "displayName": "Alice L."}

    # A client that reads the profile and sends it back as JSON keeps the uploaded photo.
    echoed = await alice.put(PROFILE, json={"displayName": "Alice", "avatarUrl": PNG_URI})
    assert echoed.json()["profile"]["avatarUrl"] == PNG_URI

    removed = await alice.put(PROFILE, data={"displayName": "Alice", "removeAvatar": "true"},
                              files={"unused": ("", b"", "text/plain")})
    assert removed.status_code == 200 and removed.json()["profile"]["avatarUrl"] is None


async def test_multipart_refuses_a_non_image_a_large_image_and_a_missing_name(org):
    alice = await org.add_user("alice@example.com")
    not_image = await alice.put(PROFILE, data={"displayName": "Alice"},
                                files={"avatar": ("me.png", b"<svg onload=alert(1)>", "image/png")})
    assert not_image.status_code == 400 and "PNG, JPEG, GIF or WebP" in not_image.json()["details"]
    large = await alice.put(PROFILE, data={"displayName": "Alice"},
                            files={"avatar": ("me.png", PNG + b"\0" * AVATAR_MAX_BYTES, "image/png")})
    assert large.status_code == 413
    validate_schema(large.json(), "Error")
    nameless = await alice.put(PROFILE, files={"avatar": ("me.png", PNG, "image/png")})
    assert nameless.status_code == 400 and nameless.json()["details"].startswith("displayName")
    assert (await alice.get(PROFILE)).json()["profile"]["avatarUrl"] is None

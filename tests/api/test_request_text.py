"""Text the store cannot hold is refused with 400, never a 500 from the database: a NUL character in a /v1/ URL
or a JSON body (PostgreSQL text refuses it), an unpaired surrogate (not UTF-8 anywhere), NaN. Found by the
schema fuzzer (tests/security/test_fuzz.py). Nothing is stored by the refused request. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from replicas.api.routers.terminal import WriteTerminalRequest
from tests.contract import assert_contract

JSON = {"content-type": "application/json"}


def _refused(response, *details: str) -> dict:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "details"} and body["error"] == "Invalid request"
    assert all(part in body["details"] for part in details), body
    return body


@pytest.mark.parametrize("query", ["search=a%00b", "search=%00", "scope=org&search=x%00", "%00=1"])
async def test_a_nul_in_the_query_string_is_400(client, query):
    response = await client.get(f"/v1/automations?{query}")
    _refused(response, "query", "NUL")
    assert_contract(response, "/v1/automations")


async def test_a_nul_in_the_path_is_400_and_percent_00_escaped_is_plain_text(client):
    _refused(await client.get("/v1/environments/abc%00def"), "path", "NUL")
    assert (await client.get("/v1/automations", params={"search": "%00"})).status_code == 200  # sent as %2500


async def test_a_nul_or_unpaired_surrogate_in_a_body_is_400_and_nothing_is_stored(client):
    for body, field, reason in [
        (b'{"name": "a\\u0000b"}', "name", "NUL"),
        (b'{"name": "ok", "description": "\\ud800"}', "description", "surrogate"),
        (b'{"name": "ok", "system_prompt": "x\\udc00y"}', "system_prompt", "surrogate"),
    ]:
        response = await client.post("/v1/environments", content=body, headers=JSON)
        _refused(response, field, reason)
        assert_contract(response, "/v1/environments")
    assert [e["name"] for e in (await client.get("/v1/environments")).json()["environments"]] == ["Global"]

    created = await client.post("/v1/environments", json={"name": "kept", "system_prompt": "before"})
    env = created.json()["environment"]["id"]
    patched = await client.patch(f"/v1/environments/{env}", content=b'{"system_prompt": "\\u0000"}', headers=JSON)
    _refused(patched, "system_prompt", "NUL")
    assert (await client.get(f"/v1/environments/{env}")).json()["environment"]["system_prompt"] == "before"


async def test_nested_values_and_numbers_are_checked_too(client):
    env = (await client.post("/v1/environments", json={"name": "env"})).json()["environment"]["id"]
    body = (b'{"name": "n", "prompt": "p", "environment_id": "%s", '
            b'"triggers": [{"type": "custom", "config": {"x": NaN}}]}' % env.encode())
    _refused(await client.post("/v1/automations", content=body, headers=JSON), "triggers.0.config.x", "finite")
    mcp = b'{"name": "m", "transport": "stdio", "config": {"env": {"K\\u0000": "v"}}}'
    _refused(await client.post(f"/v1/environments/{env}/mcps", content=mcp, headers=JSON), "config.env", "NUL")
    assert (await client.get("/v1/automations")).json()["total"] == 0


def test_terminal_input_may_carry_nul_which_is_a_keystroke():
    assert WriteTerminalRequest(data="\x00", generation=0, sequence=0).data == "\x00"
    with pytest.raises(ValueError, match="surrogate"):
        WriteTerminalRequest(data="\ud800", generation=0, sequence=0)

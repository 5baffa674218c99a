"""Skill catalog search: the bundled offline index, and a configured remote registry with fallback."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from contextlib import AsyncExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from replicas.api.app import create_app
from replicas.services import auth, skills_catalog
from tests.contract import assert_contract

SEARCH = "/v1/environment-skills/search"


class RegistryServer:
    """A real HTTP server on 127.0.0.1 answering `/api/search` with whatever the test sets."""

    def __init__(self):
        self.status, self.body, self.delay = 200, {"skills": []}, 0.0
        self.queries: list[dict] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                url = urlparse(self.path)
                registry.queries.append({"path": url.path, **parse_qs(url.query, keep_blank_values=True)})
                time.sleep(registry.delay)
                body = registry.body
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(registry.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry():
    server = RegistryServer()
    yield server
    server.close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def client_with(settings):
    """Factory: a client (with a fresh org key) for an app built with `settings` changed as given."""
    async with AsyncExitStack() as stack:

        async def factory(**changes) -> httpx.AsyncClient:
            app = create_app(settings.model_copy(update=changes))
            await stack.enter_async_context(app.router.lifespan_context(app))
            async with app.state.sessions() as session:
                org = await auth.get_or_create_organization(session, "catalog-org")
                key = await auth.create_org_key(session, org, name="test")
                await session.commit()
            return await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://replicas.test",
                headers={"Authorization": f"Bearer {key}"}))

        yield factory


async def test_search_finds_docker_as_in_the_quick_start(client):
    response = await client.get(SEARCH, params={"q": "docker"})
    assert response.status_code == 200
    skills = assert_contract(response, SEARCH)["skills"]
    assert skills[0] == {"name": "docker", "slug": "docker", "source": "https://skills.sh/skill/docker",
                         "installs": skills[0]["installs"]}
    assert skills[0]["installs"] > 0


async def test_empty_query_lists_the_most_installed_skills(client):
    for params in ({}, {"q": ""}, {"q": "   "}):
        skills = assert_contract(await client.get(SEARCH, params=params), SEARCH)["skills"]
        assert 30 <= len(skills) <= 50
        installs = [s["installs"] for s in skills]
        assert installs == sorted(installs, reverse=True)


async def test_search_is_case_insensitive_and_ranks_by_relevance_then_installs(client):
    async def slugs(q: str) -> list[str]:
        return [s["slug"] for s in (await client.get(SEARCH, params={"q": q})).json()["skills"]]

    by_name = await slugs("React Performance")
    assert by_name[0] == "vercel-react-best-practices" and "react-native-skills" in by_name
    pdf = await slugs("PDF")
    assert pdf[0] == "pdf" and "canvas-design" in pdf  # the second matches by its description only
    # A whole word beats a word prefix, even with fewer installs.
    test = await slugs("test")
    assert test[:2] == ["test-driven-development", "webapp-testing"]
    # Same relevance (a description mention): more installs first.
    by_description = await slugs("screenshots")
    assert by_description == ["webapp-testing", "playwright-cli"]
    nothing = await client.get(SEARCH, params={"q": "no-such-skill-anywhere"})
    assert assert_contract(nothing, SEARCH) == {"skills": []}


async def test_search_requires_authentication(anonymous):
    response = await anonymous.get(SEARCH, params={"q": "docker"})
    assert response.status_code == 401
    assert_contract(response, SEARCH)


async def test_configured_registry_answers_the_search(client_with, registry):
    registry.body = {"skills": [
        {"name": "internal-deploy", "slug": "internal-deploy", "source": "https://skills.acme.dev/deploy",
         "installs": 12},
        {"name": "broken entry without a source", "slug": "broken"},
        {"name": "runbooks", "slug": "runbooks", "source": "acme/skills/runbooks", "installs": "many"},
    ]}
    client = await client_with(skills_registry_url=registry.url + "/")
    response = await client.get(SEARCH, params={"q": "deploy"})
    assert assert_contract(response, SEARCH)["skills"] == [
        {"name": "internal-deploy", "slug": "internal-deploy", "source": "https://skills.acme.dev/deploy",
         "installs": 12},
        {"name": "runbooks", "slug": "runbooks", "source": "acme/skills/runbooks", "installs": 0},
    ]
    assert registry.queries == [{"path": "/api/search", "q": ["deploy"], "limit": ["50"]}]


async def test_registry_in_the_skills_sh_shape_gets_one_source_per_skill(client_with, registry):
    registry.body = {"query": "react", "searchType": "fuzzy", "skills": [
        {"id": "vercel-labs/agent-skills/vercel-react-best-practices",
         "skillId": "vercel-react-best-practices", "name": "vercel-react-best-practices", "installs": 1000,
         "source": "vercel-labs/agent-skills"},
        {"id": "vercel-labs/agent-skills/react-native-skills", "skillId": "react-native-skills",
         "name": "react-native-skills", "installs": 10, "source": "vercel-labs/agent-skills"},
    ]}
    client = await client_with(skills_registry_url=registry.url)
    skills = assert_contract(await client.get(SEARCH, params={"q": "react"}), SEARCH)["skills"]
    assert [(s["slug"], s["source"]) for s in skills] == [
        ("vercel-react-best-practices", "vercel-labs/agent-skills/vercel-react-best-practices"),
        ("react-native-skills", "vercel-labs/agent-skills/react-native-skills"),
    ]


async def test_unreachable_registry_falls_back_to_the_bundled_index(client_with, closed_port_url, caplog):
    client = await client_with(skills_registry_url=closed_port_url)
    with caplog.at_level(logging.WARNING, logger="replicas.skills"):
        response = await client.get(SEARCH, params={"q": "docker"})
    assert response.status_code == 200
    assert assert_contract(response, SEARCH)["skills"][0]["slug"] == "docker"
    assert any("skills registry search failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status, body", [(500, {"error": "down"}), (200, b"<html>not json</html>"),
                                          (200, {"results": []})])
async def test_registry_errors_and_malformed_bodies_fall_back(client_with, registry, status, body):
    registry.status, registry.body = status, body
    client = await client_with(skills_registry_url=registry.url)
    response = await client.get(SEARCH, params={"q": "terraform"})
    assert response.status_code == 200
    assert [s["slug"] for s in assert_contract(response, SEARCH)["skills"]] == ["terraform"]
    assert len(registry.queries) == 1


async def test_registry_with_nothing_for_an_empty_query_still_shows_popular_skills(client_with, registry):
    client = await client_with(skills_registry_url=registry.url)
    assert len((await client.get(SEARCH)).json()["skills"]) >= 30
    registry.body = {"skills": []}
    assert (await client.get(SEARCH, params={"q": "unknown"})).json() == {"skills": []}


async def test_slow_registry_times_out_and_falls_back(registry):
    registry.delay = 1.0
    started = time.monotonic()
    skills = await skills_catalog.search("docker", registry.url, timeout=0.2)
    assert time.monotonic() - started < 0.9
    assert [s.slug for s in skills] == ["docker"]

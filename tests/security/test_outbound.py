"""Outbound requests made for a tenant never reach link-local addresses or this server, and reach loopback
and private ranges only when `allow_private_outbound` is on. Proven with real loopback listeners (nothing
arrives), with Python's audit hook on `socket.connect` (no connection is even attempted), and with real
git and httpx. No test connects anywhere but loopback: refused addresses are refused before any connect.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from contextlib import AsyncExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from replicas import outbound
from replicas.api.app import create_app
from replicas.events.webhooks import WebhookDispatcher, enqueue
from replicas.outbound import OutboundPolicy, OutboundRefused, address_refusal, check_url
from replicas.services import auth, git
from replicas.settings import Settings
from replicas.store.models import Environment, EnvironmentSkillsRegistry, Organization, WebhookDelivery
from tests.contract import assert_contract

METADATA = "169.254.169.254"
REPLICA = {"id": "00000000-0000-0000-0000-000000000001", "name": "r1", "status": "active",
           "source": "api", "created_at": "2026-11-26T00:00:00Z"}


# --- observing what leaves ------------------------------------------------------------------------

_connects: list | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _connects is not None:
        _connects.append(args[1])


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only inside `connects()`


@contextmanager
def connects():
    """Every address a socket of this process tries to connect to while the block runs."""
    global _connects
    _connects = []
    try:
        yield _connects
    finally:
        _connects = None


class Listener:
    """A real HTTP server on 127.0.0.1 that records every request; `redirect_to` answers 302 there."""

    def __init__(self, redirect_to: str | None = None):
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Host header)
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                listener.requests.append((self.command, self.path, self.headers.get("Host", "")))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(302 if redirect_to else 200)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def database_url() -> None:
    """SQLite only (the default data dir database): what is refused does not depend on the store."""
    return None


@pytest.fixture
async def make_app(settings):
    """Factory: an app (started) built with `settings` changed as given, and a client with an org key."""
    async with AsyncExitStack() as stack:

        async def factory(**changes):
            app = create_app(settings.model_copy(update=changes))
            await stack.enter_async_context(app.router.lifespan_context(app))
            async with app.state.sessions() as session:
                org = await auth.get_or_create_organization(session, f"org-{uuid.uuid4().hex[:8]}")
                key = await auth.create_org_key(session, org, name="test")
                await session.commit()
            client = await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://replicas.test",
                headers={"Authorization": f"Bearer {key}"}))
            return app, client

        yield factory


def _policy(allow_private: bool = False, port: int = 8321, public_url: str | None = None) -> OutboundPolicy:
    return OutboundPolicy.from_settings(Settings(allow_private_outbound=allow_private, port=port,
                                                 public_url=public_url))


def resolving(answers: dict[str, list[str]], calls: list[str] | None = None):
    """A resolver (a DNS server the test controls): each name answers the given addresses, in turn
    when it has several lists."""
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        answer = answers[host]
        return answer.pop(0) if answer and isinstance(answer[0], list) else answer
    return resolve


# --- the classification (pure) --------------------------------------------------------------------

@pytest.mark.parametrize(("address", "kind"), [
    (METADATA, "link-local"), ("169.254.0.1", "link-local"), ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"), ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"), ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 form of the metadata address
])
def test_link_local_unspecified_multicast_and_reserved_are_always_refused(address, kind):
    for allow_private in (True, False):
        reason = address_refusal(address, allow_private=allow_private)
        assert reason is not None and kind in reason
        assert _policy(allow_private).refusal(address, 80) == reason
    assert address_refusal(METADATA, allow_private=True) == "169.254.169.254 is a link-local address"


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "private"), ("fd12:3456::1", "private"), ("fec0::1", "private"),
])
def test_loopback_and_private_ranges_are_refused_unless_allowed(address, kind):
    assert kind in address_refusal(address, allow_private=False)
    assert address_refusal(address, allow_private=True) is None
    assert _policy(allow_private=False).refusal(address, 80) is not None
    assert _policy(allow_private=True).refusal(address, 80) is None


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_may_be_reached(address):
    assert address_refusal(address, allow_private=False) is None
    assert _policy(allow_private=False).refusal(address, 443) is None


def test_this_server_is_refused_even_when_private_addresses_are_allowed():
    policy = _policy(allow_private=True, port=8321, public_url="https://Replicas.Example.com/")
    assert policy.refusal("127.0.0.1", 8321) == "127.0.0.1:8321 is this server"
    assert policy.refusal("::1", 8321) == "[::1]:8321 is this server"
    assert policy.refusal("127.0.0.1", 8322) is None  # another service on this machine: a private address
    with pytest.raises(OutboundRefused, match="replicas.example.com:443 is this server"):
        policy.check_name("replicas.example.com", 443)


def test_check_url_refuses_what_would_never_be_reached_with_400():
    strict = Settings(allow_private_outbound=False, public_url="https://replicas.example.com")
    for url, reason in [
        (f"http://{METADATA}/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://127.0.0.1:8321/v1/replica", "127.0.0.1:8321 is this server"),
        ("https://replicas.example.com/hooks", "replicas.example.com:443 is this server"),
        ("http://localhost:9000/hook", "127.0.0.1 is a loopback address (the address of localhost)"),
        ("http://[::1]:9000/hook", "::1 is a loopback address"),
        ("ftp://example.com/x", "only http:// and https://"),
        ("http:///nohost", "names no host"),
    ]:
        with pytest.raises(OutboundRefused) as refused:
            check_url(url, strict)
        assert refused.value.status == 400 and reason in refused.value.details, url
    assert check_url("https://hooks.example.com/x", strict) == "https://hooks.example.com/x"  # names: at use
    assert check_url("http://127.0.0.1:9000/hook", Settings(allow_private_outbound=True))


# --- httpx: the transport resolves, checks every address, connects to a checked one ----------------

async def test_a_name_resolving_to_loopback_is_refused_after_resolution(listener):
    calls: list[str] = []
    resolver = resolving({"rebind.example": ["127.0.0.1"]}, calls)
    with connects() as attempted:
        async with outbound.guarded_client(_policy(allow_private=False), resolver=resolver) as client:
            with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1 is a loopback address "
                                                      r"\(the address of rebind\.example\)"):
                await client.get(f"http://rebind.example:{listener.port}/")
    assert calls == ["rebind.example"] and attempted == [] and listener.requests == []


async def test_every_resolved_address_is_checked_not_only_the_first():
    resolver = resolving({"mixed.example": ["93.184.216.34", METADATA]})
    with connects() as attempted:
        async with outbound.guarded_client(_policy(allow_private=True), resolver=resolver) as client:
            with pytest.raises(OutboundRefused, match="169.254.169.254 is a link-local address"):
                await client.get("http://mixed.example/")
    assert attempted == []  # refused as a whole before connecting anywhere


async def test_the_connection_goes_to_the_checked_address_with_the_original_host(listener):
    # A rebinding DNS server: the checked answer first, the metadata address to every later question.
    calls: list[str] = []
    resolver = resolving({"tenant.example": [["127.0.0.1"], [METADATA], [METADATA]]}, calls)
    with connects() as attempted:
        async with outbound.guarded_client(_policy(allow_private=True), resolver=resolver) as client:
            response = await client.get(f"http://tenant.example:{listener.port}/hook")
    assert response.status_code == 200
    assert listener.requests == [("GET", "/hook", f"tenant.example:{listener.port}")]
    assert calls == ["tenant.example"]
    assert [address[0] for address in attempted] == ["127.0.0.1"]


async def test_each_redirect_hop_is_checked_again():
    bouncer = Listener(redirect_to=f"http://{METADATA}/latest/meta-data/")
    try:
        with connects() as attempted:
            async with outbound.guarded_client(_policy(allow_private=True), follow_redirects=True) as client:
                with pytest.raises(OutboundRefused, match="169.254.169.254 is a link-local address"):
                    await client.get(bouncer.url + "/start")
        assert [a[0] for a in attempted] == ["127.0.0.1"] and len(bouncer.requests) == 1
    finally:
        bouncer.close()


# --- webhooks -----------------------------------------------------------------------------------------

async def _deliver(app, url: str) -> WebhookDelivery:
    """Enqueue one delivery to `url` and dispatch until it is no longer pending; return its row."""
    async with app.state.sessions() as session:
        org = Organization(name=f"org-{uuid.uuid4().hex[:8]}")
        session.add(org)
        await session.flush()
        delivery = enqueue(session, box=app.state.box, organization_id=org.id, workspace_id=uuid.uuid4(),
                           event_type="replica.turn_completed", url=url, secret="whsec",
                           data={"chat_id": "c1"}, replica=REPLICA)
        await session.commit()
    # No policy given: the dispatcher uses the running app's, as the app's own dispatcher does.
    dispatcher = WebhookDispatcher(app.state.sessions, app.state.box, owner_id=f"t-{uuid.uuid4().hex[:6]}",
                                   timeout=2.0, retry_delays=(0.1, 0.1))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with app.state.sessions() as session:
            row = await session.get(WebhookDelivery, delivery.id)
        if row.status != "pending":
            return row
        await dispatcher.run_once()
    raise AssertionError("the delivery is still pending")


async def test_a_webhook_to_a_loopback_listener_is_refused_and_recorded_failed(make_app, listener):
    app, _ = await make_app(allow_private_outbound=False)
    with connects() as attempted:
        row = await _deliver(app, listener.url + "/hook")
    assert row.status == "failed" and row.attempts == 1  # refused once, not retried
    assert row.last_error == "refused: 127.0.0.1 is a loopback address"
    assert row.last_status_code is None and row.delivered_at is None
    assert listener.requests == [] and ("127.0.0.1", listener.port) not in attempted


async def test_a_webhook_to_the_metadata_address_is_refused_before_connecting(make_app):
    app, _ = await make_app()  # the embedded default: private addresses allowed, link-local never
    with connects() as attempted:
        row = await _deliver(app, f"http://{METADATA}/latest/meta-data/iam")
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error == "refused: 169.254.169.254 is a link-local address"
    assert not [a for a in attempted if a[0] == METADATA]


async def test_a_webhook_to_this_servers_own_port_is_refused_even_with_private_allowed(make_app, listener):
    app, _ = await make_app(allow_private_outbound=True, port=listener.port)
    for url in (f"http://127.0.0.1:{listener.port}/v1/replica", f"http://localhost:{listener.port}/v1/replica"):
        row = await _deliver(app, url)
        assert row.status == "failed" and row.attempts == 1
        assert f":{listener.port} is this server" in row.last_error, row.last_error
    assert listener.requests == []


async def test_webhooks_to_loopback_are_delivered_when_private_outbound_is_allowed(make_app, listener):
    app, _ = await make_app()
    row = await _deliver(app, listener.url + "/hook")
    assert row.status == "delivered" and [r[:2] for r in listener.requests] == [("POST", "/hook")]


async def test_creating_a_replica_with_a_refused_webhook_url_is_400_and_creates_nothing(make_app):
    app, client = await make_app(allow_private_outbound=False)
    created = await client.post("/v1/environments", json={"name": "staging"})
    env_id = created.json()["environment"]["id"]
    for url, reason in ((f"http://{METADATA}/latest/meta-data/", "169.254.169.254 is a link-local address"),
                        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address")):
        for webhook in (url, {"url": url, "secret": "whsec"}):
            response = await client.post("/v1/replica", json={
                "name": "hooked", "message": "hi", "environment_id": env_id, "webhook_url": webhook})
            assert response.status_code == 400, response.text
            body = assert_contract(response, "/v1/replica", "post")
            assert body == {"error": "Outbound request refused", "details": reason}
    listed = await client.get("/v1/replica")
    assert listed.json()["replicas"] == []


# --- skill registries: the catalog's (httpx) and environments' (git) ----------------------------------

async def test_the_skills_catalog_registry_on_loopback_is_not_asked_when_private_is_off(make_app, listener):
    _, client = await make_app(allow_private_outbound=False, skills_registry_url=listener.url)
    response = await client.get("/v1/environment-skills/search", params={"q": "docker"})
    assert response.status_code == 200
    assert response.json()["skills"][0]["slug"] == "docker"  # the bundled index answered
    assert listener.requests == []


async def test_a_skills_registry_on_loopback_is_400_and_never_contacted(make_app, listener):
    _, client = await make_app(allow_private_outbound=False)
    env_id = (await client.post("/v1/environments", json={"name": "staging"})).json()["environment"]["id"]
    path = f"/v1/environments/{env_id}/skills-registries"
    for url in (listener.url + "/acme/skills.git", f"http://localhost:{listener.port}/acme/skills.git",
                f"http://{METADATA}/acme/skills.git"):
        response = await client.post(path, json={"url": url})
        assert response.status_code == 400, response.text
        body = assert_contract(response, "/v1/environments/{environmentId}/skills-registries", "post")
        assert body["error"] == "Outbound request refused"
    assert (await client.get(path)).json() == {"registries": []}
    assert listener.requests == []


async def test_a_stored_registry_now_refused_is_reported_in_the_list_without_contact(make_app, listener):
    """The fetch-time check: a registry stored while private addresses were allowed (or a name that now
    resolves elsewhere) is refused when git would fetch it."""
    app, client = await make_app(allow_private_outbound=False)
    env_id = (await client.post("/v1/environments", json={"name": "staging"})).json()["environment"]["id"]
    async with app.state.sessions() as session:
        environment = await session.get(Environment, uuid.UUID(env_id))
        session.add(EnvironmentSkillsRegistry(
            organization_id=environment.organization_id, environment_id=environment.id, name="skills",
            url=listener.url + "/acme/skills.git", repository_full_name="acme/skills", default_branch="main"))
        await session.commit()
    registries = (await client.get(f"/v1/environments/{env_id}/skills-registries")).json()["registries"]
    assert len(registries) == 1
    assert "127.0.0.1 is a loopback address" in registries[0]["error"]
    assert listener.requests == []


async def test_git_refuses_a_remote_that_resolves_to_a_refused_address(make_app, listener):
    await make_app(allow_private_outbound=False)  # installs the app's policy, as `replicas serve` does
    with pytest.raises(git.GitError, match=r"127\.0\.0\.1 is a loopback address"):
        await git.probe_remote(listener.url + "/acme/repo.git", timeout=10)
    with pytest.raises(git.GitError, match="169.254.169.254 is a link-local address"):
        await git.probe_remote(f"https://{METADATA}/acme/repo.git", timeout=10)
    with pytest.raises(git.GitError, match="is a loopback address"):
        await git.run_git("ls-remote", "--", f"ssh://git@localhost:{listener.port}/acme/repo.git", timeout=10)
    assert listener.requests == []


async def test_git_over_http_is_pinned_to_the_checked_address():
    """git connects where the check looked (curl's resolve list), asking for the original host name;
    a name that resolves to a refused address gets no options at all, only the refusal."""
    listener = Listener()
    try:
        url = f"http://tenant.example:{listener.port}/acme/repo.git"
        resolver = resolving({"tenant.example": ["127.0.0.1"]})
        pinned = await outbound.git_pin_args(("ls-remote", "--", url), policy=_policy(allow_private=True),
                                             resolver=resolver)
        assert pinned == ["-c", f"http.curloptResolve=tenant.example:{listener.port}:127.0.0.1",
                          "-c", "http.followRedirects=false"]
        subprocess.run(["git", *pinned, "ls-remote", "--", url], capture_output=True, timeout=30,
                       env=git.git_env())
        assert listener.requests and listener.requests[0][2] == f"tenant.example:{listener.port}"
        assert listener.requests[0][1].startswith("/acme/repo.git/info/refs")
        with pytest.raises(OutboundRefused, match="the address of tenant.example"):
            await outbound.git_pin_args(("ls-remote", "--", url), policy=_policy(allow_private=False),
                                        resolver=resolver)
    finally:
        listener.close()
    assert await outbound.git_pin_args(("ls-tree", "-r", "HEAD")) == []
    assert await outbound.git_pin_args(("clone", "--", "file:///srv/repo.git", "/tmp/x")) == []


# --- the egress allow-list (REPLICAS_OUTBOUND_ALLOWED_HOSTS) ------------------------------------------

async def test_the_allow_list_refuses_other_hosts_before_any_lookup(listener):
    calls: list[str] = []
    policy = OutboundPolicy.from_settings(Settings(allow_private_outbound=True,
                                                   outbound_allowed_hosts=["127.0.0.1", ".corp.example"]))
    resolver = resolving({"git.corp.example": ["127.0.0.1"], "elsewhere.example": ["127.0.0.1"]}, calls)
    with connects() as attempted:
        async with outbound.guarded_client(policy, resolver=resolver) as client:
            with pytest.raises(OutboundRefused, match="elsewhere.example is not in this server's "
                                                      "REPLICAS_OUTBOUND_ALLOWED_HOSTS"):
                await client.get(f"http://elsewhere.example:{listener.port}/")
            assert calls == [] and attempted == []  # refused before DNS, before any connection
            assert (await client.get(f"http://git.corp.example:{listener.port}/a")).status_code == 200
            assert (await client.get(f"http://127.0.0.1:{listener.port}/b")).status_code == 200
    assert [path for _, path, _ in listener.requests] == ["/a", "/b"]
    with pytest.raises(OutboundRefused, match="REPLICAS_OUTBOUND_ALLOWED_HOSTS"):
        check_url("https://github.com/acme/skills", Settings(outbound_allowed_hosts=["git.corp.example"]))
    with pytest.raises(OutboundRefused, match="REPLICAS_OUTBOUND_ALLOWED_HOSTS"):
        await outbound.git_pin_args(["ls-remote", "https://github.com/acme/skills"], policy=policy)

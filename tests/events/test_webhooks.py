"""The webhook outbox against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from replicas.events.webhooks import WebhookDispatcher, enqueue, sign, verify
from replicas.store.models import Organization, WebhookDelivery

REPLICA = {"id": "00000000-0000-0000-0000-000000000001", "name": "r1", "status": "active",
           "source": "api", "created_at": "2026-11-26T00:00:00Z"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog (5) resets connections under the concurrency test


class Receiver:
    """A threaded HTTP server; `respond(hit_number) -> (status, delay_seconds)` decides each answer."""

    def __init__(self, respond=lambda n: (200, 0.0)):
        self.respond = respond
        self.hits: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.hits.append((dict(self.headers.items()), body))
                    n = len(receiver.hits)
                status, delay = receiver.respond(n)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def delivery_counts(self) -> Counter:
        return Counter(headers["X-Replicas-Delivery"] for headers, _ in self.hits)


async def _org_id(app) -> uuid.UUID:
    async with app.state.sessions() as session:
        org = Organization(name=f"org-{uuid.uuid4().hex[:8]}")
        session.add(org)
        await session.commit()
        return org.id


async def _enqueue(app, org_id, url, secret=None, n=1, data=None) -> list[WebhookDelivery]:
    async with app.state.sessions() as session:
        deliveries = [
            enqueue(session, box=app.state.box, organization_id=org_id, workspace_id=uuid.uuid4(),
                    event_type="replica.turn_completed", url=url, secret=secret,
                    data=data or {"chat_id": "c1", "is_complete": True, "pr_urls": []}, replica=REPLICA)
            for _ in range(n)
        ]
        await session.commit()
    return deliveries


async def _get(app, delivery_id) -> WebhookDelivery:
    async with app.state.sessions() as session:
        return await session.get(WebhookDelivery, delivery_id)


async def _drain(app, *dispatchers, deadline=15.0) -> None:
    """Run the dispatchers until no delivery is pending."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        async with app.state.sessions() as session:
            pending = (await session.execute(
                select(WebhookDelivery.id).where(WebhookDelivery.status == "pending"))).first()
        if pending is None:
            return
        await asyncio.gather(*(d.run_once() for d in dispatchers))
        await asyncio.sleep(0.05)
    raise AssertionError("deliveries still pending at the deadline")


def _dispatcher(app, owner="d1", **kwargs) -> WebhookDispatcher:
    kwargs.setdefault("retry_delays", (0.1, 0.2))
    return WebhookDispatcher(app.state.sessions, app.state.box, owner_id=owner, **kwargs)


def test_sign_and_verify():
    body = b'{"id":"x"}'
    header = sign("s3cret", body)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify("s3cret", body, header)
    assert not verify("other", body, header)
    assert not verify("s3cret", body + b" ", header)
    assert not verify("s3cret", body, None)
    assert not verify("s3cret", body, "sha256=nothex")


async def test_signed_delivery_sends_the_exact_stored_body(app):
    org_id = await _org_id(app)
    with Receiver() as receiver:
        [delivery] = await _enqueue(app, org_id, receiver.url, secret="whsec_1")
        assert await _dispatcher(app).run_once() == 1
    assert len(receiver.hits) == 1
    headers, body = receiver.hits[0]
    stored = await _get(app, delivery.id)
    assert stored.status == "delivered" and stored.attempts == 1 and stored.last_status_code == 200
    assert stored.delivered_at is not None and stored.lease_owner is None
    assert stored.secret_encrypted and "whsec_1" not in stored.secret_encrypted
    assert body == stored.body.encode()
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Replicas-Event"] == "replica.turn_completed"
    assert headers["X-Replicas-Delivery"] == str(delivery.id)
    assert verify("whsec_1", body, headers["X-Replicas-Signature"])
    assert not verify("whsec_2", body, headers["X-Replicas-Signature"])
    assert not verify("whsec_1", body.replace(b"c1", b"c2"), headers["X-Replicas-Signature"])
    envelope = json.loads(body)
    assert envelope["id"] == str(delivery.id) and envelope["type"] == "replica.turn_completed"
    assert envelope["replica"] == REPLICA and envelope["data"]["chat_id"] == "c1"
    assert envelope["created_at"].endswith("Z")


async def test_no_signature_without_a_secret(app):
    org_id = await _org_id(app)
    with Receiver() as receiver:
        await _enqueue(app, org_id, receiver.url, secret=None)
        await _dispatcher(app).run_once()
    [(headers, _)] = receiver.hits
    assert "X-Replicas-Signature" not in headers
    assert headers["X-Replicas-Event"] == "replica.turn_completed"


async def test_retried_until_2xx(app):
    org_id = await _org_id(app)
    with Receiver(lambda n: (500 if n <= 2 else 200, 0.0)) as receiver:
        [delivery] = await _enqueue(app, org_id, receiver.url, secret="s")
        # A first retry delay that a loaded machine cannot outrun between two rounds (with 0.1 s it could,
        # and the delivery this test leaves leased then held up the next tests' drains).
        dispatcher = _dispatcher(app, retry_delays=(2.0, 0.2))
        await dispatcher.run_once()
        assert await dispatcher.run_once() == 0  # not due before the first retry delay
        await _drain(app, dispatcher)
    stored = await _get(app, delivery.id)
    assert len(receiver.hits) == 3
    assert stored.status == "delivered" and stored.attempts == 3 and stored.last_status_code == 200
    assert len({body for _, body in receiver.hits}) == 1  # the same bytes on every attempt


async def test_failed_after_the_last_retry(app, caplog):
    org_id = await _org_id(app)
    with Receiver(lambda n: (503, 0.0)) as receiver:
        [delivery] = await _enqueue(app, org_id, receiver.url)
        await _drain(app, _dispatcher(app))
    stored = await _get(app, delivery.id)
    assert len(receiver.hits) == 3  # the first attempt and two retries
    assert stored.status == "failed" and stored.attempts == 3
    assert stored.last_status_code == 503 and stored.last_error == "HTTP 503"
    assert str(delivery.id) in caplog.text and "dropped" in caplog.text


async def test_hanging_receiver_times_out_and_is_retried(app):
    org_id = await _org_id(app)
    with Receiver(lambda n: (200, 3.0) if n == 1 else (200, 0.0)) as receiver:
        [delivery] = await _enqueue(app, org_id, receiver.url)
        dispatcher = _dispatcher(app, timeout=0.5)
        started = time.monotonic()
        await dispatcher.run_once()
        assert time.monotonic() - started < 2.5
        first = await _get(app, delivery.id)
        assert first.status == "pending" and first.attempts == 1 and "timed out" in first.last_error
        await _drain(app, dispatcher)
    stored = await _get(app, delivery.id)
    assert stored.status == "delivered" and stored.attempts == 2 and len(receiver.hits) == 2


async def test_two_dispatchers_send_each_delivery_once(app):
    org_id = await _org_id(app)
    with Receiver(lambda n: (200, 0.05)) as receiver:
        deliveries = await _enqueue(app, org_id, receiver.url, secret="s", n=20)
        first, second = _dispatcher(app, "d1", batch_size=7), _dispatcher(app, "d2", batch_size=7)
        for _ in range(3):
            await asyncio.gather(first.run_once(), second.run_once(), first.run_once(), second.run_once())
        await _drain(app, first, second)
    counts = receiver.delivery_counts()
    assert set(counts) == {str(d.id) for d in deliveries}
    assert set(counts.values()) == {1}
    for delivery in deliveries:
        stored = await _get(app, delivery.id)
        assert (stored.status, stored.attempts) == ("delivered", 1), stored.last_error


async def test_an_expired_lease_is_retaken_and_a_live_one_is_not(app):
    org_id = await _org_id(app)
    with Receiver() as receiver:
        [delivery] = await _enqueue(app, org_id, receiver.url)
        async with app.state.sessions() as session:
            row = await session.get(WebhookDelivery, delivery.id)
            row.lease_owner, row.lease_expires_at = "crashed", datetime.now(UTC) + timedelta(seconds=60)
            await session.commit()
        assert await _dispatcher(app).run_once() == 0
        async with app.state.sessions() as session:
            row = await session.get(WebhookDelivery, delivery.id)
            row.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
            await session.commit()
        assert await _dispatcher(app).run_once() == 1
    assert len(receiver.hits) == 1
    assert (await _get(app, delivery.id)).status == "delivered"


async def test_rolled_back_enqueue_sends_nothing(app):
    org_id = await _org_id(app)
    with Receiver() as receiver:
        async with app.state.sessions() as session:
            delivery = enqueue(session, box=app.state.box, organization_id=org_id, workspace_id=None,
                               event_type="replica.ready", url=receiver.url, secret="s", data={},
                               replica=REPLICA)
            await session.flush()
            await session.rollback()
        assert await _dispatcher(app).run_once() == 0
    assert receiver.hits == []
    assert await _get(app, delivery.id) is None


@pytest.mark.parametrize("lease", [0.5])
def test_lease_must_exceed_timeout(lease):
    with pytest.raises(ValueError):
        WebhookDispatcher(None, None, owner_id="x", timeout=1.0, lease_seconds=lease)

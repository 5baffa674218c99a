"""Outbound webhooks: a durable, signed outbox (spec §4.3, §10 #1-#2; issue 4).

`enqueue` adds a `WebhookDelivery` to the caller's session, so the delivery commits (or rolls back)
with the state change that caused it. The body is serialised once, stored, and those exact bytes are
signed and sent on every attempt. `WebhookDispatcher` claims due deliveries with a lease in the
database (principle 2), so any number of `replicas serve` processes can run one without sending a
delivery twice at once. Delivery is at-least-once: receivers de-duplicate on `X-Replicas-Delivery`.
Deliveries go through the outbound policy (replicas/outbound.py): a URL that resolves to a refused
address (link-local, this server, private ranges when they are off) fails at once, with the reason,
and is not retried: the next attempt would be refused the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas import outbound
from replicas.crypto import SecretBox
from replicas.store.models import WebhookDelivery, iso

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Replicas-Signature"
EVENT_HEADER = "X-Replicas-Event"
DELIVERY_HEADER = "X-Replicas-Delivery"
_SIGNATURE_PREFIX = "sha256="
_MAX_ERROR = 1000


def _now() -> datetime:
    return datetime.now(UTC)


def sign(secret: str, body: bytes) -> str:
    """`sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the `X-Replicas-Signature` value."""
    return _SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time comparison)."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


def render_body(delivery_id: uuid.UUID, event_type: str, created_at: datetime,
                replica: dict[str, Any], data: dict[str, Any]) -> str:
    """The canonical envelope `{id, type, created_at, replica, data}` (spec §4.3), as compact JSON."""
    envelope = {"id": str(delivery_id), "type": event_type, "created_at": iso(created_at),
                "replica": replica, "data": data}
    return json.dumps(envelope, separators=(",", ":"), default=str)


def enqueue(session: AsyncSession, *, box: SecretBox, organization_id: uuid.UUID,
            workspace_id: uuid.UUID | None, event_type: str, url: str, secret: str | None,
            data: dict[str, Any], replica: dict[str, Any]) -> WebhookDelivery:
    """Add a pending delivery to the caller's transaction and return it; nothing is sent until it commits.

    `box` encrypts the secret at rest (`app.state.box`); a falsy `secret` means no signature header."""
    delivery_id = uuid.uuid4()
    created_at = _now()
    delivery = WebhookDelivery(
        id=delivery_id,
        organization_id=organization_id,
        workspace_id=workspace_id,
        event_type=event_type,
        url=url,
        secret_encrypted=box.encrypt(secret) if secret else None,
        body=render_body(delivery_id, event_type, created_at, replica, data),
        status="pending",
        attempts=0,
        next_attempt_at=created_at,
        created_at=created_at,
    )
    session.add(delivery)
    return delivery


class WebhookDispatcher:
    """Sends due deliveries. `owner_id` must be unique per dispatcher (e.g. host:pid:uuid).

    Attempt 1 is immediate; each failure (non-2xx, timeout, connection error) schedules the next
    attempt after the next of `retry_delays`; a failure after the last retry marks the delivery
    `failed` and logs it, as does a refusal by the outbound `policy` (None: the running app's, read
    at each round). A crashed dispatcher's claims are retaken once their lease expires."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, *, owner_id: str,
                 timeout: float = 10.0, retry_delays: Sequence[float] = (10, 60, 300),
                 lease_seconds: float = 30, batch_size: int = 50,
                 policy: outbound.OutboundPolicy | None = None):
        if lease_seconds <= timeout:
            raise ValueError("lease_seconds must exceed the request timeout")
        self.sessions = sessions
        self.box = box
        self.owner_id = owner_id
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        self.policy = policy

    async def run_once(self) -> int:
        """Claim the due deliveries, attempt each once (concurrently); return how many were attempted."""
        claimed = await self._claim()
        if not claimed:
            return 0
        async with outbound.guarded_client(self.policy, timeout=self.timeout, follow_redirects=False) as client:
            await asyncio.gather(*(self._attempt(client, delivery) for delivery in claimed))
        return len(claimed)

    async def run_forever(self, interval: float = 1.0) -> None:
        """Dispatch until cancelled; an error in one round is logged and the next round goes on."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a dispatcher must survive a bad round
                log.exception("webhook dispatch round failed")
            await asyncio.sleep(interval)

    async def _claim(self) -> list[WebhookDelivery]:
        """Lease up to `batch_size` due deliveries in one UPDATE; return the ones this owner won.

        The inner SELECT takes `FOR UPDATE SKIP LOCKED` on PostgreSQL (ignored by SQLite, where the
        single UPDATE statement takes the database write lock); the outer WHERE re-checks the
        conditions, so a row another dispatcher leased in the meantime is not taken."""
        now = _now()
        due = (
            (WebhookDelivery.status == "pending")
            & (WebhookDelivery.next_attempt_at <= now)
            & or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now)
        )
        candidates = (
            select(WebhookDelivery.id)
            .where(due)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(candidates.scalar_subquery()), due)
            .values(lease_owner=self.owner_id, lease_expires_at=now + timedelta(seconds=self.lease_seconds))
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
        async with self.sessions() as session:
            ids = list((await session.execute(statement)).scalars())
            await session.commit()
            if not ids:
                return []
            rows = await session.execute(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
            return list(rows.scalars())

    async def _attempt(self, client: httpx.AsyncClient, delivery: WebhookDelivery) -> None:
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "replicas-webhooks/1",
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: str(delivery.id),
        }
        status_code: int | None = None
        error: str | None = None
        refused = False
        try:
            if delivery.secret_encrypted:
                headers[SIGNATURE_HEADER] = sign(self.box.decrypt(delivery.secret_encrypted), body)
            async with asyncio.timeout(self.timeout):
                response = await client.post(delivery.url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {self.timeout:g} s"
        except outbound.OutboundRefused as exc:
            error, refused = f"refused: {exc.reason}", True
        except Exception as exc:  # noqa: BLE001 - any failure to deliver is a failed attempt
            error = f"{type(exc).__name__}: {exc}"
        await self._record(delivery, status_code, error, final=refused)

    async def _record(self, delivery: WebhookDelivery, status_code: int | None, error: str | None,
                      final: bool = False) -> None:
        """Store an attempt's outcome; a failure is retried unless it was the last try or `final`."""
        now = _now()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "last_status_code": status_code,
                                  "lease_owner": None, "lease_expires_at": None}
        if error is None:
            values |= {"status": "delivered", "delivered_at": now, "last_error": None}
        elif final or attempts > len(self.retry_delays):
            values |= {"status": "failed", "last_error": error[:_MAX_ERROR]}
            log.warning("webhook delivery %s (%s) to %s dropped after %d attempts: %s",
                        delivery.id, delivery.event_type, delivery.url, attempts, error)
        else:
            delay = self.retry_delays[attempts - 1]
            values |= {"last_error": error[:_MAX_ERROR], "next_attempt_at": now + timedelta(seconds=delay)}
            log.info("webhook delivery %s attempt %d failed (%s); retrying in %g s",
                     delivery.id, attempts, error, delay)
        statement = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id, WebhookDelivery.lease_owner == self.owner_id,
                   WebhookDelivery.status == "pending")
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        async with self.sessions() as session:
            result = await session.execute(statement)
            await session.commit()
        if result.rowcount != 1:
            log.warning("webhook delivery %s: lease lost before its attempt was recorded", delivery.id)

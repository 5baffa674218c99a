"""Prometheus metrics of one control-plane process, served at `GET /metrics` (prometheus-client).

Counted as work happens (here, in the process that does it):
- `replicas_http_requests_total{method,route,status}`, `replicas_http_request_duration_seconds{method,route}`:
  every API request, by its route template (`/v1/replica/{id}`), never the raw path (ids would explode the
  series);
- `replicas_sse_clients`: open event streams of replicas;
- `replicas_event_pump_lag_events{workspace_id}`: events the pump has received from the engine and not stored
  yet (0 when it keeps up), and `replicas_event_store_delay_seconds`: engine timestamp to stored;
- `replicas_transition_duration_seconds{kind}`: create, claim (from a warm pool) and wake, to `active`.

Read from the store at each scrape (`refresh`), so every process reports the same shared state:
- `replicas_workspaces{status,backend}`; `replicas_webhook_outbox{status}` (pending and failed deliveries);
- `replicas_leases{lease,owner}`: who holds each singleton lease (`pump` counts the workspaces each process
  pumps).

One registry per process (`REGISTRY`): apps created in one test process share it, as they share the process.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from replicas.store.models import Lease, WebhookDelivery, Workspace, utcnow

REGISTRY = CollectorRegistry()
CONTENT_TYPE = CONTENT_TYPE_LATEST
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS = Counter("replicas_http_requests", "API requests", ["method", "route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram("replicas_http_request_duration_seconds", "API request duration (to the response head)",
                         ["method", "route"], buckets=_FAST, registry=REGISTRY)
SSE_CLIENTS = Gauge("replicas_sse_clients", "Open replica event streams", registry=REGISTRY)
PUMP_LAG = Gauge("replicas_event_pump_lag_events", "Events received from the engine and not stored yet",
                 ["workspace_id"], registry=REGISTRY)
STORE_DELAY = Histogram("replicas_event_store_delay_seconds", "Engine event timestamp to stored",
                        buckets=_FAST, registry=REGISTRY)
TRANSITIONS = Histogram("replicas_transition_duration_seconds", "Create, claim and wake to active",
                        ["kind"], buckets=_SLOW, registry=REGISTRY)
WORKSPACES = Gauge("replicas_workspaces", "Workspaces by status and backend", ["status", "backend"],
                   registry=REGISTRY)
WEBHOOK_OUTBOX = Gauge("replicas_webhook_outbox", "Webhook deliveries pending (the outbox's depth) or failed",
                       ["status"], registry=REGISTRY)
LEASES = Gauge("replicas_leases", "Unexpired leases by name (pump: the workspaces pumped) and owner",
               ["lease", "owner"], registry=REGISTRY)


async def refresh(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Set the gauges read from the store (see the module docstring)."""
    async with sessions() as session:
        workspaces = (await session.execute(select(Workspace.status, Workspace.runtime, func.count())
                                            .group_by(Workspace.status, Workspace.runtime))).all()
        outbox = (await session.execute(select(WebhookDelivery.status, func.count())
                                        .where(WebhookDelivery.status.in_(("pending", "failed")))
                                        .group_by(WebhookDelivery.status))).all()
        leases = (await session.execute(select(Lease.name, Lease.owner).where(Lease.expires_at > utcnow()))).all()
    WORKSPACES.clear()
    for status, backend, count in workspaces:
        WORKSPACES.labels(status=status, backend=backend or "").set(count)
    WEBHOOK_OUTBOX.clear()
    for status in ("pending", "failed"):
        WEBHOOK_OUTBOX.labels(status=status).set(dict(outbox).get(status, 0))
    LEASES.clear()
    counts: dict[tuple[str, str], int] = {}
    for name, owner in leases:
        key = ("pump" if name.startswith("pump:") else name, owner)
        counts[key] = counts.get(key, 0) + 1
    for (name, owner), count in counts.items():
        LEASES.labels(lease=name, owner=owner).set(count)


def render() -> bytes:
    return generate_latest(REGISTRY)

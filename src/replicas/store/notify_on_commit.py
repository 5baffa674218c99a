"""PostgreSQL notifications sent with a session's commit, all in one statement.

Several parts of the control plane tell other processes what a transaction changed: the event pump announces
stored events (events/notify.py), the replica status feed announces an organization's changed replicas
(services/replica_status_feed.py). Each used to send its own `SELECT pg_notify(...)` as it went, one round trip
apiece. They now queue their notification on the session, and the session sends everything queued, once,
right before its COMMIT: one round trip, whatever the transaction changed. A notification is still
transactional (PostgreSQL delivers it on commit, never on rollback), and a duplicate (same channel and payload)
is sent once, which is what PostgreSQL does with duplicates in one transaction anyway. On SQLite (one process,
nobody to notify) nothing is queued.

    notify_on_commit(session, "replicas_events", f"{workspace_id}:{seq}")   # a Session or an AsyncSession
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

_PENDING = "replicas.notify_on_commit"


def notify_on_commit(session: Any, channel: str, payload: str) -> None:
    """Queue `NOTIFY channel, payload` for the session's commit (PostgreSQL only; a no-op elsewhere)."""
    sync = getattr(session, "sync_session", session)
    bind = sync.get_bind()
    if bind.dialect.name != "postgresql":
        return
    sync.info.setdefault(_PENDING, {})[(channel, payload)] = None


def _send(session: Session) -> None:
    """Before the commit: flush first (what the commit would flush; its mapper events may queue more), then send
    what is queued."""
    session.flush()
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    calls, params = [], {}
    for number, (channel, payload) in enumerate(pending):
        calls.append(f"pg_notify(:c{number}, :p{number})")
        params[f"c{number}"], params[f"p{number}"] = channel, payload
    session.connection().execute(text("SELECT " + ", ".join(calls)), params)


def _ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the session's own transaction (committed, rolled back, or closed)
        session.info.pop(_PENDING, None)


event.listen(Session, "before_commit", _send)
event.listen(Session, "after_transaction_end", _ended)

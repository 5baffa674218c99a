"""Tells the organization-wide status streams (`replica_index.status_changes`) that a replica changed, as it
commits, instead of having them read the store every second.

What the replicas list shows of a replica (`replica_views.list_item`: name, status, source, activity,
repositories, pull requests) changes in many places (create, provision, wake, sleep, archive, the lifecycle
reaper, pool claims, delete), so the signal comes from the store's own session events rather than from each of
them:

- a workspace row inserted, deleted, or updated in one of those columns marks its organization on the session;
  an ORM bulk `update(Workspace)` / `delete(Workspace)` that sets one of them marks "some organization" (its rows
  are not known);
- after the commit, each marked organization is published on the process's `EventHub` under `status_key(org)`
  (`ANY_ORGANIZATION` for the unknown ones): the streams of this process wake and read what changed;
- on PostgreSQL the same marks go with the commit as `NOTIFY replicas_status '<org id>'` (store/notify_on_commit.py:
  delivered on commit, to every process): `events.notify.EventListener` publishes them on each process's hub.

A signal carries nothing but the organization: the streams read the store, the one source of truth, and still
re-read it after a quiet spell, so a lost signal costs latency, never a change.

A listed workspace row deleted through the ORM also leaves a `ReplicaTombstone` in the same transaction (its id,
organization and time, pruned after `TOMBSTONE_DAYS`), so that a stream resuming after the deletion still reports
it. (An organization deleted takes its rows and tombstones with it; nobody is left to tell.)

    connect(sessions, hub)                  # once, where the sessions and the hub meet (ReplicaService)
    subscription = hub.subscribe(status_key(org_id))
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, event, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from replicas.events.fanout import EventHub
from replicas.events.notify import STATUS_CHANNEL, status_key
from replicas.services.workspaces import POOLED
from replicas.store.models import ReplicaTombstone, Workspace, utcnow
from replicas.store.notify_on_commit import notify_on_commit

ANY_ORGANIZATION = "*"
# The columns behind a list item (and the organization, which decides who sees it).
WATCHED = frozenset({"name", "status", "source", "created_at", "last_activity_at", "repositories", "pull_requests",
                     "organization_id"})
TOMBSTONE_DAYS = 1
_HUB = "replicas.status_feed.hub"
_MARKED = "replicas.status_feed.marked"
_tasks: set[asyncio.Task] = set()


def connect(sessions: async_sessionmaker[AsyncSession], hub: EventHub) -> None:
    """Sessions made by `sessions` publish their commits' replica changes on `hub`."""
    info = dict(sessions.kw.get("info") or {})
    info[_HUB] = hub
    sessions.configure(info=info)


def _mark(session: Session, organization: str) -> None:
    marked: set[str] = session.info.setdefault(_MARKED, set())
    if organization in marked:
        return
    marked.add(organization)
    notify_on_commit(session, STATUS_CHANNEL, organization)


def _row_changed(_mapper, connection, row: Workspace) -> None:
    session = Session.object_session(row)
    if session is not None and row.organization_id is not None:
        _mark(session, str(row.organization_id))


def _row_deleted(mapper, connection, row: Workspace) -> None:
    _row_changed(mapper, connection, row)
    if row.organization_id is None or row.status == POOLED:  # a pooled workspace was never listed
        return
    now = utcnow()
    pruned = now - timedelta(days=TOMBSTONE_DAYS)
    connection.execute(delete(ReplicaTombstone).where(ReplicaTombstone.deleted_at < pruned))
    connection.execute(insert(ReplicaTombstone).values(replica_id=row.id, organization_id=row.organization_id,
                                                       deleted_at=now))


def _row_updated(mapper, connection, row: Workspace) -> None:
    state = inspect(row)
    if any(state.attrs[name].history.has_changes() for name in WATCHED):
        _row_changed(mapper, connection, row)
        previous = state.attrs.organization_id.history.deleted
        if previous and previous[0] is not None and Session.object_session(row) is not None:
            _mark(Session.object_session(row), str(previous[0]))


def _bulk_sets_watched(statement: Any) -> bool:
    if statement.is_delete:
        return True
    values = getattr(statement, "_values", None)  # the SET clause of an update(); unknown shapes count as changes
    if not values:
        return True
    names = {getattr(key, "key", None) or getattr(key, "name", None) or str(key) for key in values}
    return bool(names & WATCHED)


def _bulk_statement(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    mapper = state.bind_mapper
    if mapper is None or mapper.class_ is not Workspace or not _bulk_sets_watched(state.statement):
        return
    session = state.session
    _mark(session, ANY_ORGANIZATION)


def _committed(session: Session) -> None:
    marked = session.info.pop(_MARKED, None)
    hub: EventHub | None = session.info.get(_HUB)
    if not marked or hub is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a session used outside the server's loop (a CLI command): nobody listens here
        return
    for organization in marked:
        task = loop.create_task(hub.publish(status_key(organization), {"organization": organization}))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


def _ended(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # committed (published already), rolled back or closed: nothing carries over
        session.info.pop(_MARKED, None)


event.listen(Workspace, "after_insert", _row_changed)
event.listen(Workspace, "after_delete", _row_deleted)
event.listen(Workspace, "after_update", _row_updated)
event.listen(Session, "do_orm_execute", _bulk_statement)
event.listen(Session, "after_commit", _committed)
event.listen(Session, "after_transaction_end", _ended)

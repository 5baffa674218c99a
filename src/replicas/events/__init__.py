"""The control plane's durable event log (principle 3 of ARCHITECTURE.md).

    hub = EventHub()
    pump = EventPump(sessions, connect_via(manager), hub)   # one per control plane
    pump.start(workspace)                                   # pulls the engine's journal, stores, publishes
    async for event in follow(sessions, hub, workspace_id, after=last_event_id):
        ...                                                 # replay from the store, then live; once each

`store` keeps the events (`workspace_events`, idempotent by seq), `pump` pulls them from each engine
(store, commit, then publish; reconnects and resumes from the stored seq), `fanout` hands them to
in-process subscribers, each event one `Envelope` (`envelope`) whose SSE frame is encoded once for all of them.
"""

from replicas.events.envelope import Envelope
from replicas.events.fanout import EventHub, SubscriptionOverflow, follow, follow_batches
from replicas.events.pump import EventPump, connect_via
from replicas.events.store import WorkspaceGone, append_events, read_events, store_events

__all__ = ["Envelope", "EventHub", "EventPump", "SubscriptionOverflow", "WorkspaceGone", "append_events",
           "connect_via", "follow", "follow_batches", "read_events", "store_events"]

"""A control-plane process that is shutting down (SIGTERM): its open streams end, so that their clients
reconnect, with Last-Event-ID, to another process behind the load balancer (ARCHITECTURE.md, principle 2).

    draining.begin()          # `replicas serve`, on SIGTERM / SIGINT
    draining.active()         # True from then on: the event hub (events/fanout.py) and the other SSE streams
                              # (api/sse.py) end within CHECK_SECONDS

Process-wide on purpose: one `replicas serve` is one process; tests that run apps in-process never drain.
"""

from __future__ import annotations

CHECK_SECONDS = 0.5
_draining = False


def begin() -> None:
    global _draining
    _draining = True


def active() -> bool:
    return _draining

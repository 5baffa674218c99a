"""Which workspace engines a control plane can speak to: the engine's protocol number, shared by both sides.

The engine runs from wherever its workspace gets it: this installation's Python (local backend, docker's
`host-python`), or the workspace image (docker by default, remote Docker, kubernetes), which may have been
built from another release. So the engine says at `GET /health` what it is (`engine_health`), and the
control plane, right after every start and wake, refuses an engine whose protocol it does not speak
(`incompatibility`), naming the image and what to do, instead of failing later in a way nobody can read.

`ENGINE_PROTOCOL` is the version of the HTTP API between the two (routes, payloads, events). Raise it, and
adjust `SUPPORTED_ENGINE_PROTOCOLS`, when a change breaks an engine or a control plane of the other number.
An engine from before this check reports no protocol, and counts as incompatible.

Neutral on purpose: the engine imports this module, and so do the services; neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replicas import __version__

ENGINE_PROTOCOL = 2
SUPPORTED_ENGINE_PROTOCOLS = frozenset({2})
REBUILD_HINT = "rebuild it with `replicas images build`"


def engine_health() -> dict[str, Any]:
    """What an engine adds to its `/health` answer: the release it comes from and the protocol it speaks."""
    return {"engineVersion": __version__, "protocol": ENGINE_PROTOCOL}


def incompatibility(health: Mapping[str, Any], *, image: str | None = None) -> str | None:
    """Why this control plane cannot speak to the engine that answered `health`; None when it can.

    `image` is where the engine came from (None: this installation), so that the reason says what to fix."""
    protocol = health.get("protocol") if isinstance(health, Mapping) else None
    if isinstance(protocol, int) and not isinstance(protocol, bool) and protocol in SUPPORTED_ENGINE_PROTOCOLS:
        return None
    version = health.get("engineVersion") if isinstance(health, Mapping) else None
    engine = f"engine {version}" if isinstance(version, str) and version else "an engine of unknown version"
    speaks = (f"protocol {protocol}" if isinstance(protocol, int) and not isinstance(protocol, bool)
              else "no protocol version (older than this check)")
    supported = ", ".join(str(number) for number in sorted(SUPPORTED_ENGINE_PROTOCOLS))
    needs = f"this control plane (replicas {__version__}) needs engine protocol {supported}"
    if image:
        return f"image {image} runs {engine}, which reports {speaks}; {needs}: {REBUILD_HINT}"
    return f"the workspace runs {engine}, which reports {speaks}; {needs}: reinstall replicas"

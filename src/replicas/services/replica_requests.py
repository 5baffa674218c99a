"""What creating a replica takes, apart from HTTP.

`ReplicaService.create` reads a request's fields and calls its `options()` and `webhook()`. The API's
`CreateReplicaRequest` provides them from the wire; `NewReplica` provides them for callers inside the
product (automations), so the service layer never needs the API's schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicas.errors import BadRequest

# The agents this server has drivers for (the contract also names `pi`, not run here yet).
SUPPORTED_AGENTS = ("claude", "codex", "cursor", "opencode")


@dataclass(frozen=True)
class NewReplica:
    """A replica to create, from values the product already validated when it stored them.

    The agent is checked again: it was supported when stored, but this server may no longer run it."""

    name: str
    message: str
    environment_id: str | None = None
    repository_set_id: str | None = None
    repository_ids: list[str] | None = None
    coding_agent: str = "claude"
    lifecycle_policy: str | None = None
    config: dict[str, Any] | None = None
    size: str | None = None
    model: str | None = None
    plan_mode: bool | None = None
    goal_mode: bool | None = None
    fast_mode: bool | None = None
    thinking_level: str | None = None

    def __post_init__(self) -> None:
        if self.coding_agent not in SUPPORTED_AGENTS:
            raise BadRequest("Invalid request", f"coding_agent: {self.coding_agent!r} is not available on this "
                                                f"server (one of {', '.join(SUPPORTED_AGENTS)})")

    def options(self) -> dict[str, Any]:
        """The first message's options, as `CreateReplicaRequest.options()` gives them (no images)."""
        return {"model": self.model, "images": None, "plan_mode": self.plan_mode, "goal_mode": self.goal_mode,
                "fast_mode": self.fast_mode, "thinking_level": self.thinking_level}

    def webhook(self) -> tuple[str | None, str | None]:
        """No per-replica webhook: the product's own callers follow the replica through its events."""
        return None, None

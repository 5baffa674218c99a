"""Agent drivers: one per coding-agent CLI, each on the CLI's machine protocol (ARCHITECTURE.md,
principle 5). `driver_class("claude")` gives the driver for a chat's provider; `install` puts the pinned
CLIs in place. See `base` for the interface."""

from replicas.engine.agents.base import AgentDriver, AgentEvent, AgentTurn, TurnRequest
from replicas.engine.agents.claude import ClaudeDriver
from replicas.engine.agents.codex import CodexDriver
from replicas.engine.agents.cursor import CursorDriver
from replicas.engine.agents.opencode import OpencodeDriver

DRIVERS: dict[str, type[AgentDriver]] = {
    "claude": ClaudeDriver,
    "codex": CodexDriver,
    "cursor": CursorDriver,
    "opencode": OpencodeDriver,
}


def driver_class(provider: str) -> type[AgentDriver]:
    """The driver for a chat provider (the contract's enum; `pi` has no driver yet)."""
    try:
        return DRIVERS[provider]
    except KeyError:
        raise ValueError(f"no agent driver for provider {provider!r}") from None


__all__ = [
    "DRIVERS",
    "AgentDriver",
    "AgentEvent",
    "AgentTurn",
    "ClaudeDriver",
    "CodexDriver",
    "CursorDriver",
    "OpencodeDriver",
    "TurnRequest",
    "driver_class",
]

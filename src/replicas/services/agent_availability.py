"""Which coding agents this server can run, known early and cheaply (README, "Agents").

A create, a message or a chat for an agent the server cannot run is refused with 400 before anything is
stored or queued (`require`), `replicas serve` says at start-up which agents it has (`log_summary`), and
`include=environment` reports each agent's `available`.

Where a workspace's agents come from depends on the runtime, and so does what can be known here:

- `local`: the tools dir (`replicas agents install`, bound read-only into every sandbox), else the
  control plane's PATH, which the sandbox keeps. Known exactly.
- `docker` with the control plane's engine (`docker_engine = "host-python"`, development): the tools dir is
  bound into the container, so an agent found there is available. One that is not may still be in the
  image (its PATH): assumed available, not verified.
- `docker` with the image's engine (the default, or `docker_engine_command`) and `kubernetes`: the image
  decides (the workspace image installs the pinned CLIs). Assumed available, not verified.

Looking only stats files (`install.find_installed`, no binary is run), in a thread, and the answer is kept
for `agent_check_ttl_seconds`, so an install (another process: `replicas agents install`) is seen soon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from replicas.engine.agents import install
from replicas.errors import BadRequest
from replicas.services.replica_requests import SUPPORTED_AGENTS
from replicas.settings import Settings

INSTALL_HINT = "run `replicas agents install` on the server"
CURSOR_HINT = "install Cursor's CLI (cursor-agent, not on npm) on the server's PATH"


@dataclass(frozen=True)
class AgentAvailability:
    """Whether the server can run one agent. `verified` False: the workspace image decides, and the
    agent is assumed available. `version` is what npm installed (None when unknown)."""

    agent: str
    available: bool
    verified: bool = True
    version: str | None = None
    note: str | None = None  # what is missing, or why it was not verified

    def describe(self) -> str:
        """One log line's worth: available (version), missing (how to install), or not verified (why)."""
        if not self.available:
            hint = CURSOR_HINT if self.agent == "cursor" else INSTALL_HINT
            return f"agent {self.agent}: missing ({self.note}); {hint}"
        if not self.verified:
            return f"agent {self.agent}: not checked here ({self.note})"
        version = f" ({self.version})" if self.version else ""
        return f"agent {self.agent}: available{version}" + (f"; {self.note}" if self.note else "")


def image_decides(settings: Settings) -> bool:
    """Whether everything a workspace runs comes from the workspace image (nothing of this machine's)."""
    if settings.runtime == "kubernetes":
        return True
    if settings.runtime != "docker":
        return False
    if settings.docker_engine_command or settings.docker_engine == "image":
        return True
    if settings.docker_remote is not None:
        return settings.docker_remote
    docker_url = settings.docker_host or os.environ.get("DOCKER_HOST") or ""
    return docker_url.split("://", 1)[0] in ("tcp", "ssh", "http", "https")


def find_agents(settings: Settings) -> dict[str, AgentAvailability]:
    """Every supported agent's availability, looked up now (blocking: file stats)."""
    if image_decides(settings):
        note = f"runtime {settings.runtime}: the workspace image provides the agents"
        return {agent: AgentAvailability(agent, True, verified=False, note=note) for agent in SUPPORTED_AGENTS}
    tools = settings.resolved_tools_dir
    docker = settings.runtime == "docker"
    found = {}
    for agent in SUPPORTED_AGENTS:
        # In a container the host's PATH means nothing: only the bound tools dir is known here.
        status = install.find_installed(tools, agent, path="" if docker else None)
        if status.path is not None:
            found[agent] = AgentAvailability(agent, True, version=status.version,
                                             note="; ".join(status.missing) or None)
        elif docker:
            found[agent] = AgentAvailability(agent, True, verified=False,
                                             note="not in the tools dir; the workspace image may provide it")
        else:
            found[agent] = AgentAvailability(agent, False, note="; ".join(status.missing))
    return found


class AgentAvailabilityCache:
    """`find_agents`, kept for `settings.agent_check_ttl_seconds`; one per control-plane process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._found: dict[str, AgentAvailability] | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def all(self) -> dict[str, AgentAvailability]:
        async with self._lock:
            age = time.monotonic() - self._checked_at
            if self._found is None or age >= self.settings.agent_check_ttl_seconds:
                self._found = await asyncio.to_thread(find_agents, self.settings)
                self._checked_at = time.monotonic()
            return self._found

    def invalidate(self) -> None:
        """Look again on the next question (after an install in this process)."""
        self._found = None

    async def get(self, agent: str) -> AgentAvailability:
        found = (await self.all()).get(agent)
        return found or AgentAvailability(agent, False, note="this server has no driver for it")

    async def require(self, agent: str) -> None:
        """400 when this server cannot run `agent`, naming it and the fix."""
        found = await self.get(agent)
        if found.available:
            return
        if agent == "cursor":
            details = f"cursor is not installed on this server (cursor-agent is not on its PATH); {CURSOR_HINT}"
        elif agent in install.PACKAGES:
            details = f"{agent} is not installed on this server; {INSTALL_HINT}"
        else:
            details = f"{agent} cannot run on this server: {found.note}"
        raise BadRequest("Coding agent not available", details)

    async def log_summary(self, log: logging.Logger) -> None:
        """One line per agent: available (version), missing with the command that installs it, or not
        checked (the image decides)."""
        found = await self.all()
        for availability in found.values():
            level = logging.WARNING if not availability.available else logging.INFO
            log.log(level, availability.describe())
        missing = [agent for agent, availability in found.items() if not availability.available]
        if missing:
            log.warning("agents missing: %s; replicas, messages and chats for them are refused (400) until "
                        "they are installed", ", ".join(missing))

"""What the engine is configured with and what it keeps across restarts.

`EngineConfig` is read once from the environment the runtime starts the engine with (spec §9).
`ChatStore` persists chat metadata (provider, title, agent session id, queued messages, the message
that was running) in `~/.replicas/engine/chats.json`, replaced atomically on every change, so that a
restarted engine keeps its chats and resumes their agent sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from replicas.engine.journal import utc_timestamp

PROVIDERS = ("claude", "codex", "opencode", "cursor")
# A path relative to the home: the engine starts once it exists (EngineConfig.start_after).
START_AFTER_ENV = "REPLICAS_ENGINE_START_AFTER"


def path_with(directory: str, path: str | None) -> str:
    """`path` (a PATH value) with `directory` first, unless it is on it already."""
    entries = [entry for entry in (path or os.defpath).split(os.pathsep) if entry]
    return os.pathsep.join(entries if directory in entries else [directory, *entries])


@dataclass(frozen=True)
class EngineConfig:
    """The engine's settings: the workspace home (repos are the checkouts under `~/workspaces`), the
    request secret, where agent binaries are, and the optional system prompt and start-hook files.
    `agent_env` is the environment every agent CLI runs with (credentials, base URLs, PATH)."""

    home: Path
    secret: str
    workspace_id: str = ""
    tools_dir: Path | None = None
    default_provider: str = "claude"
    start_hook_file: Path | None = None
    # A warm-pool workspace's engine: start hooks wait for `POST /hooks/start` (sent when it is claimed).
    defer_start_hooks: bool = False
    # Started while the control plane still lays out the home (a cold create): the engine has done its imports
    # and waits for this file, which the control plane writes once the home is ready, before it starts.
    start_after: Path | None = None
    agent_idle_timeout: float = 600.0
    agent_max_retries: int | None = None
    agent_env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.home / ".replicas" / "engine"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], home: Path | None = None) -> EngineConfig:
        def path(name: str) -> Path | None:
            return Path(environ[name]) if environ.get(name) else None

        home = Path(home or environ.get("HOME") or Path.home())
        retries = environ.get("REPLICAS_AGENT_MAX_RETRIES")
        # The agent keeps REPLICAS_ENGINE_SECRET, WORKSPACE_ID and REPLICAS_API_URL: they are its agent-mode
        # credentials for the control plane (previews, spec §2.2). It runs as the engine's user in the
        # same sandbox, so hiding the secret from it would protect nothing.
        agent_env = dict(environ)
        agent_env["HOME"] = str(home)
        # ... and finds the `replicas` CLI that uses them installed beside the engine's own Python.
        agent_env["PATH"] = path_with(os.path.dirname(sys.executable), environ.get("PATH"))
        return cls(
            home=home,
            secret=environ.get("REPLICAS_ENGINE_SECRET", ""),
            workspace_id=environ.get("REPLICAS_WORKSPACE_ID", ""),
            tools_dir=path("REPLICAS_TOOLS_DIR"),
            default_provider=environ.get("REPLICAS_DEFAULT_PROVIDER") or "claude",
            start_hook_file=path("REPLICAS_START_HOOK_FILE"),
            defer_start_hooks=environ.get("REPLICAS_DEFER_START_HOOKS") == "1",
            start_after=home / environ[START_AFTER_ENV] if environ.get(START_AFTER_ENV) else None,
            agent_idle_timeout=float(environ.get("REPLICAS_AGENT_IDLE_TIMEOUT") or 600),
            agent_max_retries=int(retries) if retries else None,
            agent_env=agent_env,
        )


@dataclass
class QueuedMessage:
    """A message waiting for (or running in) a chat turn, with the options it was sent with."""

    id: str
    message: str
    queued_at: str = field(default_factory=utc_timestamp)
    options: dict = field(default_factory=dict)
    sender: dict | None = None  # {senderUserId, senderEmail}: who sent it, as the control plane recorded

    def info(self) -> dict:
        """The contract's QueuedMessageInfo."""
        return {"id": self.id, "message": self.message, "queuedAt": self.queued_at, **(self.sender or {})}


@dataclass
class ChatRecord:
    """A chat's persistent part. `running` is the message whose turn was in progress."""

    id: str
    provider: str
    title: str
    created_at: str = field(default_factory=utc_timestamp)
    updated_at: str = field(default_factory=utc_timestamp)
    session_id: str | None = None
    last_message_text: str | None = None
    parent_chat_id: str | None = None
    queue: list[QueuedMessage] = field(default_factory=list)
    running: QueuedMessage | None = None

    def touch(self) -> None:
        self.updated_at = utc_timestamp()

    def summary(self, processing: bool) -> dict:
        """The contract's EngineChatSummary."""
        return {"id": self.id, "provider": self.provider, "title": self.title, "createdAt": self.created_at,
                "updatedAt": self.updated_at, "processing": processing, "awaitingInput": False,
                "parentChatId": self.parent_chat_id, "lastMessageText": self.last_message_text}

    @classmethod
    def from_dict(cls, data: dict) -> ChatRecord:
        data = dict(data)
        data["queue"] = [QueuedMessage(**item) for item in data.get("queue") or []]
        data["running"] = QueuedMessage(**data["running"]) if data.get("running") else None
        return cls(**data)


class ChatStore:
    """`chats.json`: every chat's record, written to a temporary file and renamed into place."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = asyncio.Lock()

    def load(self) -> list[ChatRecord]:
        if not self.path.exists():
            return []
        data = json.loads(self.path.read_text() or "{}")
        return [ChatRecord.from_dict(item) for item in data.get("chats", [])]

    async def save(self, chats: list[ChatRecord]) -> None:
        text = json.dumps({"chats": [asdict(chat) for chat in chats]}, indent=1)
        async with self._lock:
            await asyncio.to_thread(write_atomically, self.path, text)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so that a reader (or a crash) sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with_suppressed_unlink(tmp)
        raise


def with_suppressed_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

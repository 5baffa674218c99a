"""Chats, their message queues, and the turn runner.

Each chat is bound to a provider and holds one agent session: the driver's session id is stored after
every turn and passed as `resume_session_id` on the next. Messages to a busy chat wait in its FIFO
queue (reorder, remove, clear); each chat has one worker task, so chats run in parallel while a
chat's own turns run one after another. Journal order for a message (spec §4.1):

    chat.turn.accepted → chat.turn.started → chat.updated (processing flips on)
    → chat.turn.delta (the user's message) → chat.turn.delta × N → [error] → chat.turn.completed
    → ... → chat.updated (processing off)

After every turn `on_turn_end` runs (the engine journals `repo.status.changed` there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from replicas.engine import repos as repo_status
from replicas.engine.agents import AgentDriver, AgentEvent, AgentTurn, TurnRequest, driver_class
from replicas.engine.agents.install import find_binary
from replicas.engine.journal import Journal
from replicas.engine.state import PROVIDERS, ChatRecord, ChatStore, EngineConfig, QueuedMessage

logger = logging.getLogger(__name__)
HISTORY_PAGE = 100
# A chat's default title is its agent's display name (spec §10 #40).
PROVIDER_TITLES = {"claude": "Claude Code", "codex": "Codex", "cursor": "Cursor", "opencode": "Opencode", "pi": "Pi"}


class ChatError(Exception):
    """A request about chats that cannot be done; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def json_body(request) -> dict:
    """A route's JSON object body (a Starlette request), or a 400 `ChatError`."""
    try:
        body = await request.json()
    except ValueError:
        raise ChatError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ChatError(400, "the body must be a JSON object")
    return body


class Chat:
    """A chat at run time: its persistent record, its worker task and its running turn."""

    def __init__(self, record: ChatRecord):
        self.record = record
        self.worker: asyncio.Task | None = None
        self.turn: AgentTurn | None = None

    @property
    def processing(self) -> bool:
        return self.record.running is not None

    def summary(self) -> dict:
        return self.record.summary(self.processing)


class ChatManager:
    """All chats of the workspace. Services only: knows nothing of HTTP."""

    def __init__(self, config: EngineConfig, journal: Journal, store: ChatStore,
                 on_turn_end: Callable[[], Awaitable[None]] | None = None,
                 on_change: Callable[[], Awaitable[None]] | None = None):
        self.config = config
        self.journal = journal
        self.store = store
        self.on_turn_end = on_turn_end
        self.on_change = on_change
        self.chats: dict[str, Chat] = {}
        self._drivers: dict[str, AgentDriver] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load the saved chats. A turn that was running when the engine died ends now, unfinished;
        messages still queued then run."""
        for record in self.store.load():
            chat = self.chats[record.id] = Chat(record)
            if record.running is not None:
                # The turn's end is journaled before the record is saved: a crash in between leaves
                # `running` set for a turn that did end, and the journal says so.
                if not self._turn_ended_in_journal(record.id):
                    self.journal.append("error", {"code": "engine_restarted", "details": f"chat {record.id}",
                                                  "message": "the engine restarted while this turn was running"})
                    self.journal.append("chat.turn.completed", {"chatId": record.id, "isComplete": False})
                record.running = None
            if record.queue:
                self._start_next(chat)
        await self.save()

    def _turn_ended_in_journal(self, chat_id: str) -> bool:
        """Whether the chat's last turn event in the journal is its end (read backwards, once at load)."""
        for event in reversed(self.journal.read()):
            if event["type"] in ("chat.turn.started", "chat.turn.completed") \
                    and event["payload"].get("chatId") == chat_id:
                return event["type"] == "chat.turn.completed"
        return False

    async def close(self) -> None:
        for chat in self.chats.values():
            if chat.turn is not None:
                await chat.turn.interrupt()
            if chat.worker is not None:
                chat.worker.cancel()
        for chat in self.chats.values():
            if chat.worker is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await chat.worker

    async def save(self) -> None:
        await self.store.save([chat.record for chat in self.chats.values()])

    # -- chats -------------------------------------------------------------------------------------

    def get(self, chat_id: str) -> Chat:
        try:
            return self.chats[chat_id]
        except KeyError:
            raise ChatError(404, f"chat {chat_id} not found") from None

    @property
    def processing_count(self) -> int:
        return sum(chat.processing for chat in self.chats.values())

    async def create(self, provider: str | None = None, title: str | None = None, chat_id: str | None = None,
                     client_request_id: str | None = None) -> dict:
        provider = provider or self.config.default_provider
        if provider not in PROVIDERS:
            raise ChatError(400, f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
        chat_id = chat_id or str(uuid.uuid4())
        if chat_id in self.chats:
            raise ChatError(409, f"chat {chat_id} already exists")
        title = title or PROVIDER_TITLES.get(provider, provider)
        chat = self.chats[chat_id] = Chat(ChatRecord(id=chat_id, provider=provider, title=title))
        await self.save()
        payload = {"chat": chat.summary()}
        if client_request_id:
            payload["clientRequestId"] = client_request_id
        self.journal.append("chat.created", payload)
        await self._changed()
        return chat.summary()

    async def delete(self, chat_id: str) -> None:
        chat = self.get(chat_id)
        chat.record.queue.clear()
        if chat.turn is not None:
            await chat.turn.interrupt()
        if chat.worker is not None:
            chat.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await chat.worker
        del self.chats[chat_id]
        await self.save()
        self.journal.append("chat.deleted", {"chatId": chat_id})
        await self._changed()

    # -- messages and the queue --------------------------------------------------------------------

    async def send(self, chat_id: str, message: str, options: dict, client_request_id: str | None = None,
                   sender: dict | None = None) -> dict:
        """Accept a message: it starts at once on an idle chat (position 0), else waits in the queue."""
        chat = self.get(chat_id)
        queued_message = QueuedMessage(id=client_request_id or str(uuid.uuid4()), message=message,
                                       options=options, sender=sender)
        busy = chat.processing
        chat.record.queue.append(queued_message)
        chat.record.last_message_text = message[:500]
        chat.record.touch()
        position = len(chat.record.queue) if busy else 0
        accepted = {"chatId": chat_id, "messageId": queued_message.id, "queued": busy, "position": position}
        self.journal.append("chat.turn.accepted", accepted)
        if not busy:
            self._start_next(chat)
        await self.save()
        return {"messageId": queued_message.id, "queued": busy, "position": position}

    def queue(self, chat_id: str) -> list[dict]:
        return [item.info() for item in self.get(chat_id).record.queue]

    async def clear_queue(self, chat_id: str) -> None:
        self.get(chat_id).record.queue.clear()
        await self.save()

    async def remove_queued(self, chat_id: str, message_id: str) -> None:
        chat = self.get(chat_id)
        remaining = [item for item in chat.record.queue if item.id != message_id]
        if len(remaining) == len(chat.record.queue):
            raise ChatError(404, f"message {message_id} is not queued in chat {chat_id}")
        chat.record.queue[:] = remaining
        await self.save()

    async def reorder_queue(self, chat_id: str, message_ids: list[str]) -> None:
        """Put the queued messages in the given order; ids left out keep their order after them."""
        chat = self.get(chat_id)
        by_id = {item.id: item for item in chat.record.queue}
        unknown = [mid for mid in message_ids if mid not in by_id]
        if unknown:
            raise ChatError(400, f"not queued in chat {chat_id}: {', '.join(unknown)}")
        ordered = [by_id[mid] for mid in dict.fromkeys(message_ids)]
        ordered += [item for item in chat.record.queue if item.id not in set(message_ids)]
        chat.record.queue[:] = ordered
        await self.save()

    async def interrupt(self, chat_id: str) -> dict:
        """Stop the running turn (its process group is killed); queued messages then run."""
        chat = self.get(chat_id)
        interrupted = chat.turn is not None
        if chat.turn is not None:
            await chat.turn.interrupt()
        queue = [item.id for item in chat.record.queue]
        self.journal.append("chat.interrupted", {"chatId": chat_id, "interrupted": interrupted, "queue": queue})
        return {"chatId": chat_id, "interrupted": interrupted, "queue": queue}

    def history(self, chat_id: str, limit: int = HISTORY_PAGE, offset: int = 0) -> dict:
        """The chat's AgentEvents, paged from the end: `offset` events are skipped from the newest."""
        chat = self.get(chat_id)
        events = [event["payload"]["event"] for event in self.journal.read()
                  if event["type"] == "chat.turn.delta" and event["payload"].get("chatId") == chat_id]
        end = max(len(events) - max(offset, 0), 0)
        start = max(end - max(limit, 0), 0)
        return {"chatId": chat_id, "threadId": chat.record.session_id, "provider": chat.record.provider,
                "events": events[start:end], "total": len(events), "hasMore": start > 0}

    # -- the turn runner ---------------------------------------------------------------------------

    def agent_cwd(self) -> Path:
        """One repository: its checkout; several (or none): `~/workspaces`, from where all are reachable."""
        found = repo_status.discover(self.config.workspaces_dir)
        if len(found) == 1:
            return found[0]
        self.config.workspaces_dir.mkdir(parents=True, exist_ok=True)
        return self.config.workspaces_dir

    def driver(self, provider: str) -> AgentDriver:
        if provider not in self._drivers:
            cls = driver_class(provider)
            binary = find_binary(provider, self.config.tools_dir, path=self.config.agent_env.get("PATH"))
            options: dict = {"idle_timeout": self.config.agent_idle_timeout}
            if provider in ("claude", "codex"):
                options["max_retries"] = self.config.agent_max_retries
            self._drivers[provider] = cls(binary, **options)
        return self._drivers[provider]

    def _start_next(self, chat: Chat) -> None:
        chat.record.running = chat.record.queue.pop(0)
        chat.worker = asyncio.create_task(self._work(chat), name=f"chat-{chat.record.id}")

    async def _work(self, chat: Chat) -> None:
        # `running` stays set until the next message is chosen, with no await in between, so a
        # message sent meanwhile is queued here rather than starting a second worker.
        chat_id = chat.record.id
        first = True
        while (message := chat.record.running) is not None:
            self.journal.append("chat.turn.started", {"chatId": chat_id, "messageId": message.id})
            if first:
                self.journal.append("chat.updated", {"chat": chat.summary()})
                await self._changed()
                first = False
            await self.save()
            is_complete = await self._run_turn(chat, message)
            self.journal.append("chat.turn.completed", {"chatId": chat_id, "isComplete": is_complete})
            if self.on_turn_end is not None:
                try:
                    await self.on_turn_end()
                except Exception:  # noqa: BLE001 - a failed status refresh must not stop the queue
                    logger.exception("after-turn refresh failed chat=%s", chat_id)
            chat.record.running = chat.record.queue.pop(0) if chat.record.queue else None
            chat.record.touch()
        if chat.worker is asyncio.current_task():
            chat.worker = None
        self.journal.append("chat.updated", {"chat": chat.summary()})
        await self.save()
        await self._changed()

    async def _run_turn(self, chat: Chat, message: QueuedMessage) -> bool:
        record = chat.record
        try:
            request = self._request(record, message)
            driver = self.driver(record.provider)
            self._journal_user_message(record, message, driver.user_message_event(request))
            turn = chat.turn = driver.run_turn(request)
            async with turn:
                async for event in turn:
                    self.journal.append("chat.turn.delta", {"chatId": record.id, "event": event.to_dict()})
                    if turn.interrupted:
                        await turn.interrupt()  # asked before the CLI had started: stop it now
                    if turn.session_id and turn.session_id != record.session_id:
                        record.session_id = turn.session_id
            record.session_id = turn.session_id or record.session_id
            if turn.error and not turn.interrupted:
                self.journal.append("error", {"code": "agent_error", "message": turn.error,
                                              "details": f"chat {record.id}"})
            return turn.error is None
        except Exception as exc:  # noqa: BLE001 - the chat must survive a broken turn
            logger.exception("turn failed chat=%s", record.id)
            self.journal.append("error", {"code": "agent_error", "message": str(exc) or type(exc).__name__,
                                          "details": f"chat {record.id}"})
            return False
        finally:
            chat.turn = None

    def _journal_user_message(self, record: ChatRecord, message: QueuedMessage, event: AgentEvent | None) -> None:
        """The user's message opens the turn's deltas, in its agent's shape, so history shows the conversation.
        Its delta carries who sent it (`sender`, as the control plane recorded it at send time): the history's
        `senders` are read from there, `recordedAt` being this event's timestamp."""
        if event is None:
            return
        delta: dict = {"chatId": record.id, "event": event.to_dict()}
        if message.sender is not None:
            delta["sender"] = message.sender
        self.journal.append("chat.turn.delta", delta)

    def _request(self, record: ChatRecord, message: QueuedMessage) -> TurnRequest:
        options = message.options
        # The message goes to the agent as sent. The environment's system prompt is not put in front of it:
        # provisioning wrote it into each agent's own instruction file (~/.claude/CLAUDE.md,
        # $CODEX_HOME/AGENTS.md, opencode's AGENTS.md), which every CLI reads on every turn.
        return TurnRequest(
            prompt=message.message, cwd=self.agent_cwd(), env=self.config.agent_env, home=self.config.home,
            model=options.get("model"), plan_mode=bool(options.get("planMode")),
            thinking_level=options.get("thinkingLevel"), images=options.get("images") or (),
            fast_mode=bool(options.get("fastMode")), goal_mode=bool(options.get("goalMode")),
            resume_session_id=record.session_id)

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

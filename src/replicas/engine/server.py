"""The engine's HTTP API (spec §9): a Starlette app on a unix socket, or TCP for remote backends.

Every request carries `X-Replicas-Engine-Secret` (compared in constant time; 401 otherwise). Payloads
are camelCase, as the contract's engine schemas. `GET /events?after=SEQ` streams the journal as SSE
(`id: <seq>`, `event: <type>`, `data: <envelope>`, and a `: ping` comment every 15 s), from SEQ+1 on,
until the client goes away.

    engine = Engine(EngineConfig.from_env(os.environ))
    app = create_app(engine)      # its lifespan starts and stops the engine
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from replicas.engine import repos as repo_status
from replicas.engine.canvas import canvas_routes
from replicas.engine.chats import ChatError, ChatManager, json_body
from replicas.engine.hooks import StartHookRunner
from replicas.engine.journal import Journal
from replicas.engine.publish import Publisher
from replicas.engine.state import ChatStore, EngineConfig
from replicas.engine.terminal import TerminalManager, terminal_routes
from replicas.engine_protocol import engine_health

PROTOCOL_VERSION = "v1"
SECRET_HEADER = "x-replicas-engine-secret"
PING_SECONDS = 15.0
HOME_POLL_SECONDS = 0.005
MESSAGE_OPTIONS = ("model", "planMode", "thinkingLevel", "images", "fastMode", "goalMode")


def message_sender(value) -> dict | None:
    """The `sender` of a message body, `{senderUserId, senderEmail}` (both strings), or None."""
    if not isinstance(value, dict):
        return None
    user_id, email = value.get("senderUserId"), value.get("senderEmail")
    if not isinstance(user_id, str) or not isinstance(email, str) or not user_id or not email:
        return None
    return {"senderUserId": user_id, "senderEmail": email}


class Engine:
    """The engine's parts wired together: journal, chats, start hooks and status reporting."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.journal = Journal(config.state_dir / "events.jsonl")
        self.chats = ChatManager(config, self.journal, ChatStore(config.state_dir / "chats.json"),
                                 on_turn_end=self.publish_repo_status, on_change=self.publish_status)
        self.hooks = StartHookRunner(self.journal, config.workspaces_dir, config.agent_env,
                                     config.start_hook_file, on_change=self.publish_status)
        self.publisher = Publisher(config.state_dir, config.agent_env, self.journal,
                                   workspace_id=config.workspace_id)
        self.started_at = time.monotonic()
        self.sse_clients = 0
        self._last_status: dict | None = None
        self.terminals = TerminalManager(config)
        self._discovery: asyncio.Task | None = None

    async def start(self) -> None:
        """Open the journal, announce readiness, recover chats, start hooks; the repos are announced in the
        background.

        The repos' first state (`repo.discovered`) needs a `git diff` of every checkout: about 130 ms for
        10,000 files, which the engine's start (and so every create and wake) no longer waits for. A later
        repo state (`publish_repo_status`) is journaled only after it, so the first never overtakes one."""
        self.journal.open()
        self.journal.append("engine.ready", {"version": PROTOCOL_VERSION})
        self._discovery = asyncio.create_task(self._announce_repos())
        await self.chats.load()
        if not self.chats.chats:
            await self.chats.create(self.config.default_provider)
        if not self.config.defer_start_hooks:
            self.hooks.start()
        await self.publish_status()

    async def home_ready(self) -> None:
        """Wait for the control plane to finish the home, when it started this engine before (`start_after`):
        the imports and the app are done by then, and `/health` answers right after."""
        marker = self.config.start_after
        if marker is None:
            return
        while not marker.exists():  # a stat every 5 ms, while the checkout runs
            await asyncio.sleep(HOME_POLL_SECONDS)

    async def _announce_repos(self) -> None:
        self.journal.append("repo.discovered", {"repos": await self.repo_states()})

    async def _repos_announced(self) -> None:
        if self._discovery is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._discovery)

    async def stop(self) -> None:
        if self._discovery is not None and not self._discovery.done():
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._discovery
        with contextlib.suppress(Exception):
            await self.terminals.close()
        if self.hooks.task is not None:
            self.hooks.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.hooks.task
        await self.chats.close()
        self.journal.close()

    def status(self) -> dict:
        """The contract's EngineStatusSnapshot."""
        return {"uptimeSeconds": round(time.monotonic() - self.started_at, 3),
                "hasActiveSSHSessions": self.terminals.attached(),
                "activeSseClients": self.sse_clients, "chatsTotal": len(self.chats.chats),
                "chatsProcessing": self.chats.processing_count,
                "reposTotal": len(repo_status.discover(self.config.workspaces_dir)),
                "hooksRunning": self.hooks.running}

    async def publish_status(self) -> None:
        """Journal `engine.status.changed` when anything but the uptime changed."""
        status = self.status()
        comparable = {k: v for k, v in status.items() if k != "uptimeSeconds"}
        if comparable != self._last_status:
            self._last_status = comparable
            self.journal.append("engine.status.changed", {"status": status})

    async def repo_states(self, include_diff: bool = False) -> list[dict]:
        repos = repo_status.discover(self.config.workspaces_dir)
        return list(await asyncio.gather(*(
            repo_status.repo_state(repo, include_diff=include_diff,
                                   pull_requests=self.publisher.pull_requests(repo.name),
                                   start_hooks_completed=repo.name in self.hooks.completed_repos)
            for repo in repos)))

    async def publish_repo_status(self) -> None:
        """After a turn: push the agent's committed branches (publish.py), then journal the repos' state."""
        await self.publisher.publish_all(repo_status.discover(self.config.workspaces_dir))
        await self._repos_announced()
        self.journal.append("repo.status.changed", {"repos": await self.repo_states()})
        await self.publish_status()

    async def stream(self, after: int, request: Request) -> AsyncIterator[str]:
        self.sse_clients += 1
        await self.publish_status()
        try:
            async for event in self.journal.follow(after, heartbeat=PING_SECONDS):
                if event is None:
                    if await request.is_disconnected():
                        return
                    yield ": ping\n\n"
                    continue
                data = json.dumps(event, separators=(",", ":"))
                yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n"
        finally:
            self.sse_clients -= 1
            with contextlib.suppress(Exception):
                await self.publish_status()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        raise ChatError(400, f"{name} must be an integer") from None


def create_app(engine: Engine) -> Starlette:
    """The engine's Starlette app; its lifespan starts and stops `engine`."""
    chats = engine.chats

    async def health(request: Request) -> Response:
        # engineVersion and protocol: what the control plane checks before it speaks to this engine.
        return JSONResponse({"status": "ok", "ok": True, "version": PROTOCOL_VERSION,
                             "lastSeq": engine.journal.last_seq, **engine_health()})

    async def status(request: Request) -> Response:
        return JSONResponse({**engine.status(), "hooks": engine.hooks.status(), "lastSeq": engine.journal.last_seq})

    async def list_chats(request: Request) -> Response:
        return JSONResponse({"chats": [chat.summary() for chat in chats.chats.values()]})

    async def create_chat(request: Request) -> Response:
        body = await json_body(request)
        summary = await chats.create(body.get("provider"), body.get("title"), body.get("id"),
                                     body.get("clientRequestId"))
        return JSONResponse(summary, status_code=201)

    async def get_chat(request: Request) -> Response:
        return JSONResponse(chats.get(request.path_params["chat_id"]).summary())

    async def delete_chat(request: Request) -> Response:
        await chats.delete(request.path_params["chat_id"])
        return Response(status_code=204)

    async def send_message(request: Request) -> Response:
        body = await json_body(request)
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ChatError(400, "message is required")
        options = {key: body[key] for key in MESSAGE_OPTIONS if body.get(key) is not None}
        result = await chats.send(request.path_params["chat_id"], message, options, body.get("clientRequestId"),
                                  message_sender(body.get("sender")))
        return JSONResponse(result, status_code=202)

    async def get_queue(request: Request) -> Response:
        chat = chats.get(request.path_params["chat_id"])
        return JSONResponse({"chatId": chat.record.id, "processing": chat.processing,
                             "queue": chats.queue(chat.record.id)})

    async def clear_queue(request: Request) -> Response:
        await chats.clear_queue(request.path_params["chat_id"])
        return await get_queue(request)

    async def remove_queued(request: Request) -> Response:
        await chats.remove_queued(request.path_params["chat_id"], request.path_params["message_id"])
        return await get_queue(request)

    async def reorder_queue(request: Request) -> Response:
        ids = (await json_body(request)).get("messageIds")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ChatError(400, "messageIds must be a list of message ids")
        await chats.reorder_queue(request.path_params["chat_id"], ids)
        return await get_queue(request)

    async def interrupt(request: Request) -> Response:
        return JSONResponse(await chats.interrupt(request.path_params["chat_id"]))

    async def history(request: Request) -> Response:
        return JSONResponse(chats.history(request.path_params["chat_id"], _int(request, "limit", 100),
                                          _int(request, "offset", 0)))

    async def list_repos(request: Request) -> Response:
        include = request.query_params.get("includeDiffs", "").lower() in ("1", "true", "yes")
        return JSONResponse({"repos": await engine.repo_states(include_diff=include)})

    async def hooks(request: Request) -> Response:
        return JSONResponse({"warm_hooks": {"logs": []}, "start_hooks": {"logs": engine.hooks.logs},
                             **engine.hooks.status()})

    async def start_hooks(request: Request) -> Response:
        """Run the start hooks now, if they have not run in this engine yet (a claimed pool workspace's)."""
        if engine.hooks.task is None:
            engine.hooks.start()
        return JSONResponse(engine.hooks.status(), status_code=202)

    async def previews_changed(request: Request) -> Response:
        """The control plane's previews of this workspace changed: journal `preview.changed`."""
        previews = (await json_body(request)).get("previews")
        if not isinstance(previews, list):
            raise ChatError(400, "previews must be a list")
        engine.journal.append("preview.changed", {"previews": previews})
        return Response(status_code=204)

    async def events(request: Request) -> Response:
        after = _int(request, "after", 0)
        return StreamingResponse(engine.stream(after, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    routes = [
        Route("/health", health), Route("/status", status),
        Route("/chats", list_chats, methods=["GET"]), Route("/chats", create_chat, methods=["POST"]),
        Route("/chats/{chat_id}", get_chat, methods=["GET"]),
        Route("/chats/{chat_id}", delete_chat, methods=["DELETE"]),
        Route("/chats/{chat_id}/messages", send_message, methods=["POST"]),
        Route("/chats/{chat_id}/queue", get_queue, methods=["GET"]),
        Route("/chats/{chat_id}/queue", clear_queue, methods=["DELETE"]),
        Route("/chats/{chat_id}/queue/reorder", reorder_queue, methods=["PATCH"]),
        Route("/chats/{chat_id}/queue/{message_id}", remove_queued, methods=["DELETE"]),
        Route("/chats/{chat_id}/interrupt", interrupt, methods=["POST"]),
        Route("/chats/{chat_id}/history", history, methods=["GET"]),
        Route("/repos", list_repos, methods=["GET"]),
        Route("/hooks", hooks, methods=["GET"]), Route("/hooks/status", hooks, methods=["GET"]),
        Route("/hooks/start", start_hooks, methods=["POST"]),
        Route("/events", events, methods=["GET"]),
        Route("/previews", previews_changed, methods=["POST"]),
        *canvas_routes(engine), *terminal_routes(engine),
    ]

    async def chat_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ChatError)
        return _error(exc.status, exc.message)

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ChatError: chat_error})
    return SecretGuard(app, engine.config.secret)


class SecretGuard:
    """ASGI middleware: a request without the right `X-Replicas-Engine-Secret` gets 401. A pure ASGI
    wrapper, so that the event stream is not buffered."""

    def __init__(self, app, secret: str):
        self.app = app
        self.secret = secret.encode()
        self.engine_app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(SECRET_HEADER.encode(), b"")
            if not self.secret or not hmac.compare_digest(given, self.secret):
                await _error(401, "missing or wrong engine secret")(scope, receive, send)
                return
        await self.app(scope, receive, send)

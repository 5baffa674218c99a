"""A scripted model server: a local HTTP endpoint that real agent CLIs talk to in tests.

It speaks the Anthropic Messages API (`POST /v1/messages`, streaming or not, with or without
`?beta=true`, plus `count_tokens`) for Claude Code and opencode, and the OpenAI Responses API
(`POST /v1/responses`, streaming) for Codex, and plays a script (see `replicas.testing.script`).
Every request is recorded, so a test can assert on what the CLI sent: the model, the thinking budget or
reasoning effort, the system prompt, the images, the earlier conversation.

    with ScriptedModelServer([[WriteFile(str(path), "hi\\n"), Text("done")]]) as model:
        env = {**os.environ, **model.anthropic_env()}
        ...run `claude -p ...` with env...
        assert model.requests[0].model == "claude-sonnet-4-5"

Requests that offer no tools (title generation, quota checks, summaries) are side requests: they get a
harmless answer and do not move the script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from replicas.testing import model_streams as streams
from replicas.testing.script import Answer, ScriptCursor, Step, Text

SIDE_ANSWER = "Scripted session"


@dataclass
class RecordedRequest:
    """One request the server received, and what it answered."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    api: str  # "anthropic", "openai" or "other"
    kind: str = "other"  # "prompt", "continuation", "side" or "other"
    turn: int | None = None
    answer: str = ""
    received_at: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def is_side(self) -> bool:
        return self.kind == "side"

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools offered, as the agent spelled them."""
        body = self.body if isinstance(self.body, dict) else {}
        return [tool.get("name") or (tool.get("function") or {}).get("name", "")
                for tool in streams.offered_tools(body).values()]

    @property
    def system_text(self) -> str:
        """The system prompt (Anthropic `system`) or the instructions (OpenAI), as text."""
        body = self.body or {}
        system = body.get("system", body.get("instructions", ""))
        if isinstance(system, list):
            return "\n".join(block.get("text", "") for block in system if isinstance(block, dict))
        return system or ""

    def conversation_text(self) -> str:
        """Everything in the conversation (messages or input items), as one JSON string to search in."""
        body = self.body or {}
        return json.dumps(body.get("messages", body.get("input", [])))

    def user_texts(self) -> list[str]:
        """Each text part of the user's turns, exactly as received, in conversation order.

        Anthropic: the `text` blocks (or a string `content`) of `role: user` messages; OpenAI Responses:
        the `input_text` parts (or a string `content`) of `role: user` message items, or a string `input`.
        Agents add their own parts (system reminders, environment context) beside the user's message,
        so a test asserts that the message is one element of this list, not a substring of it."""
        body = self.body if isinstance(self.body, dict) else {}
        if isinstance(body.get("input"), str):
            return [body["input"]]
        entries = body.get("messages") if self.api == "anthropic" else body.get("input")
        texts: list[str] = []
        for entry in entries or []:
            if not isinstance(entry, dict) or entry.get("role") != "user":
                continue
            if entry.get("type", "message") != "message":
                continue
            content = entry.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            texts += [block["text"] for block in content or [] if isinstance(block, dict)
                      and block.get("type") in ("text", "input_text") and isinstance(block.get("text"), str)]
        return texts

    def images(self) -> list[dict]:
        """Image blocks (Anthropic `image`, OpenAI `input_image`) anywhere in the conversation."""
        found: list[dict] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") in ("image", "input_image"):
                    found.append(node)
                    return
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        body = self.body or {}
        walk(body.get("messages", body.get("input", [])))
        return found


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if isinstance(block, dict):
            parts.append(block.get("text") or block.get("type", ""))
    return "\n".join(parts)


def classify_anthropic(body: dict) -> tuple[str, str]:
    """("side" | "prompt" | "continuation", key) for a Messages request."""
    if not body.get("tools"):
        return "side", ""
    messages = body.get("messages") or []
    # Claude Code puts role "system" messages into the conversation: the prompt is the last other one.
    conversation = [message for message in messages if message.get("role") != "system"]
    content = conversation[-1].get("content") if conversation else ""
    if isinstance(content, list):
        results = [block for block in content if isinstance(block, dict) and block.get("type") == "tool_result"]
        if results:
            return "continuation", results[-1].get("tool_use_id", "")
    return "prompt", f"{len(messages)}:{_text_of(content)}"


def classify_openai(body: dict) -> tuple[str, str]:
    """("side" | "prompt" | "continuation", key) for a Responses request."""
    if not streams.offered_tools(body):
        return "side", ""
    items = body.get("input")
    if isinstance(items, str):
        return "prompt", items
    items = items or []
    for item in reversed(items):
        if isinstance(item, dict) and item.get("type") in ("function_call_output", "custom_tool_call_output"):
            return "continuation", item.get("call_id", "")
        if not isinstance(item, dict):
            continue
        if item.get("type", "message") == "message" and item.get("role") == "user":
            return "prompt", f"{len(items)}:{_text_of(item.get('content'))}"
    return "prompt", f"{len(items)}:"


class ScriptedModelServer:
    """A model endpoint on 127.0.0.1 that plays `turns` (see `replicas.testing.script`).

    Use it as a context manager (sync or async) or call `start()` / `stop()`. It runs uvicorn in a
    background thread, so a hanging answer never blocks the test's own event loop.
    """

    def __init__(self, turns: list[list[Step]] | None = None, *,
                 is_side_request: Callable[[RecordedRequest], bool] | None = None,
                 models: list[str] | None = None):
        self.cursor = ScriptCursor(turns)
        self.requests: list[RecordedRequest] = []
        self.models = models or ["claude-sonnet-4-5", "gpt-5"]
        self._is_side_request = is_side_request
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self.port: int | None = None

    # --- life cycle ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the scripted model server is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedModelServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=1, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"scripted-model-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the scripted model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self._loop is not None and self._release is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._release.set)
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def __aenter__(self) -> ScriptedModelServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info) -> None:
        await asyncio.to_thread(self.stop)

    # --- what tests use ------------------------------------------------------------------------------

    def add_turn(self, *steps: Step) -> None:
        """Append a turn to the script (safe while the server runs, between agent turns)."""
        self.cursor.add_turn(list(steps))

    def anthropic_env(self, api_key: str = "scripted-key") -> dict[str, str]:
        return {"ANTHROPIC_BASE_URL": self.base_url, "ANTHROPIC_API_KEY": api_key}

    def openai_env(self, api_key: str = "scripted-key") -> dict[str, str]:
        return {"OPENAI_BASE_URL": f"{self.base_url}/v1", "OPENAI_API_KEY": api_key}

    def model_requests(self) -> list[RecordedRequest]:
        """The requests that played the script (side requests and other paths left out)."""
        return [request for request in self.requests if request.kind in ("prompt", "continuation")]

    def side_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.kind == "side"]

    @property
    def exhausted(self) -> list[RecordedRequest]:
        """Requests that came after the script ran out (a test usually asserts there are none)."""
        return [request for request in self.requests if request.answer == "exhausted"]

    # --- the app -------------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app):
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
            yield

        return Starlette(lifespan=lifespan, routes=[
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/messages", self._messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
            Route("/v1/responses", self._responses, methods=["POST"]),
            Route("/responses", self._responses, methods=["POST"]),
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/{path:path}", self._other, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        ])

    async def _record(self, request: Request, api: str) -> RecordedRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        recorded = RecordedRequest(method=request.method, path=request.url.path, query=request.url.query,
                                   headers=dict(request.headers), body=body, api=api)
        self.requests.append(recorded)
        return recorded

    def _plan(self, recorded: RecordedRequest, classify) -> Answer | None:
        """Classify the request and advance the script; None for a side request."""
        body = recorded.body if isinstance(recorded.body, dict) else {}
        kind, key = classify(body)
        if self._is_side_request is not None and self._is_side_request(recorded):
            kind = "side"
        recorded.kind = kind
        if kind == "side":
            recorded.answer = "side"
            return None
        answer = self.cursor.answer(kind, key)
        recorded.turn = answer.turn
        recorded.answer = ("exhausted" if answer.exhausted else "fail" if answer.fail
                           else "hang" if answer.hang else "steps")
        return answer

    async def _hang(self, seconds: float | None) -> None:
        assert self._release is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._release.wait(), timeout=seconds)

    async def _messages(self, request: Request) -> Response:
        recorded = await self._record(request, "anthropic")
        body = recorded.body if isinstance(recorded.body, dict) else {}
        answer = self._plan(recorded, classify_anthropic)
        steps = [Text(SIDE_ANSWER)] if answer is None else answer.steps
        if answer is not None and answer.fail:
            return JSONResponse(streams.anthropic_error(answer.fail.status, answer.fail.message),
                                status_code=answer.fail.status)
        if answer is not None and answer.hang:
            await self._hang(answer.hang.seconds)
            return JSONResponse(streams.anthropic_error(504, "scripted hang ended"), status_code=504)
        model = body.get("model", "scripted-model")
        blocks = streams.anthropic_blocks(steps, body)
        input_tokens = streams.estimate_tokens(body.get("messages", []))
        if body.get("stream"):
            return StreamingResponse(streams.anthropic_events(blocks, model, input_tokens),
                                     media_type="text/event-stream",
                                     headers={"request-id": streams._id("req")})
        return JSONResponse(streams.anthropic_message(blocks, model, input_tokens))

    async def _count_tokens(self, request: Request) -> Response:
        recorded = await self._record(request, "anthropic")
        recorded.kind = recorded.answer = "side"
        body = recorded.body if isinstance(recorded.body, dict) else {}
        return JSONResponse({"input_tokens": streams.estimate_tokens(body.get("messages", []))})

    async def _responses(self, request: Request) -> Response:
        recorded = await self._record(request, "openai")
        body = recorded.body if isinstance(recorded.body, dict) else {}
        answer = self._plan(recorded, classify_openai)
        steps = [Text(SIDE_ANSWER)] if answer is None else answer.steps
        if answer is not None and answer.fail:
            return JSONResponse(streams.openai_error(answer.fail.status, answer.fail.message),
                                status_code=answer.fail.status)
        if answer is not None and answer.hang:
            await self._hang(answer.hang.seconds)
            return JSONResponse(streams.openai_error(504, "scripted hang ended"), status_code=504)
        model = body.get("model", "scripted-model")
        items = streams.openai_items(steps, body)
        input_tokens = streams.estimate_tokens(body.get("input", []))
        if body.get("stream"):
            return StreamingResponse(streams.openai_events(items, model, input_tokens),
                                     media_type="text/event-stream")
        return JSONResponse(streams.openai_response(items, model, input_tokens))

    async def _list_models(self, request: Request) -> Response:
        recorded = await self._record(request, "other")
        recorded.answer = "models"
        # One list readable as both APIs: Anthropic reads type/display_name, OpenAI object/owned_by.
        data = [{"id": name, "type": "model", "object": "model", "display_name": name,
                 "created_at": "2025-01-01T00:00:00Z", "created": 1735689600, "owned_by": "scripted"}
                for name in self.models]
        return JSONResponse({"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})

    async def _other(self, request: Request) -> Response:
        recorded = await self._record(request, "other")
        recorded.answer = "not-found"
        return JSONResponse({"type": "error", "error": {"type": "not_found_error",
                                                        "message": f"scripted model: no {request.url.path}"}},
                            status_code=404)

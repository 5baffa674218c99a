"""The engine's terminal sessions (spec §3.6, tag Terminal): shells on a PTY inside the workspace.

Each session is an interactive `bash -l` on its own pseudo-terminal (its own session and process group,
the PTY its controlling terminal), in `~/workspaces` (or the home), with the agent's environment and
`TERM=xterm-256color`. The engine already runs inside the workspace's sandbox, so the shell does too.

    GET    /terminal/sessions                      {sessions: [TerminalSession]}
    POST   /terminal/sessions                      {cols 2..500, rows 1..200} -> 201 {session}; 429 past 8
    POST   /terminal/sessions/{id}/input           {data <= 65536 chars, generation >= 0, sequence >= 0}
    POST   /terminal/sessions/{id}/resize          {cols, rows}
    DELETE /terminal/sessions/{id}                 SIGHUP to the shell's process group, SIGKILL after 2 s
    GET    /terminal/sessions/{id}/stream          server-sent events, below

A TerminalSession is `{id, title, createdAt, exited, exitCode?}`. Every session counts towards the limit of
eight until it is deleted, exited ones included (they stay listed with their exit code).

Input ordering. A client numbers its input batches: `generation` changes when it (re)connects, `sequence`
counts from 0 within a generation. Input is idempotent: a batch whose (generation, sequence) was already
applied is acknowledged (`{success: true}`) and not written again, so a client may retry freely. A higher
generation than the session's current one starts a new generation; a lower one comes from a client that
has been superseded and is refused with 400 (the contract lists no 409 here). Input to, or a resize of,
an exited shell is also 400.

The stream. Terminal output is decoded as UTF-8 (invalid bytes replaced) and kept in a replay buffer of the
last 256 Ki characters. `GET .../stream` sends, in this order:

    event: replay     data: {"data": "<the buffered output>", "exited": false, "exitCode": null}
    event: output     data: {"data": "<output since>"}                  (any number of them)
    event: exit       data: {"exitCode": 3}                             (then the stream ends)

with a `: ping` comment every 15 s. The replay and the output events join without a gap or an overlap, so
a client that reconnects redraws from the replay. A client that falls too far behind is disconnected; it
reconnects and gets a fresh replay. All sessions are killed when the engine stops.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import termios
import uuid
from collections import deque
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from replicas.engine.chats import ChatError, json_body

MAX_SESSIONS = 8
REPLAY_CHARS = 256 * 1024
MAX_INPUT_CHARS = 65536
KILL_GRACE_SECONDS = 2.0
PING_SECONDS = 15.0
WRITE_TIMEOUT_SECONDS = 30.0
SUBSCRIBER_BACKLOG = 4096  # queued output chunks before a slow stream client is dropped
APPLIED_WINDOW = 4096  # input sequence numbers remembered per generation
_END = None  # queued to a subscriber: the stream ends (after the exit event, or the session was deleted)


class TerminalSession:
    """One shell on a PTY: its process, the replay buffer, the stream subscribers and the input ordering."""

    def __init__(self, title: str, process: asyncio.subprocess.Process, master: int):
        self.id = str(uuid.uuid4())
        self.title = title
        self.created_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.process = process
        self.master: int | None = master
        self.exit_code: int | None = None
        self.exited = False
        self.replay: deque[str] = deque()
        self.replay_chars = 0
        self.subscribers: set[asyncio.Queue] = set()
        self.generation = 0
        self.applied: set[int] = set()
        self.applied_floor = 0  # sequences below it were forgotten: treated as applied
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.waiter: asyncio.Task | None = None
        self.write_lock = asyncio.Lock()

    def summary(self) -> dict:
        body = {"id": self.id, "title": self.title, "createdAt": self.created_at, "exited": self.exited}
        if self.exit_code is not None:
            body["exitCode"] = self.exit_code
        return body

    # --- output ------------------------------------------------------------------------------------

    def read_available(self) -> None:
        """Read what the PTY has (non-blocking) and publish it; on EOF stop watching the master."""
        while self.master is not None:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: every slave end closed
                chunk = b""
            if not chunk:
                self._stop_reading()
                return
            self._publish(self._decoder.decode(chunk))

    def _publish(self, text: str) -> None:
        if not text:
            return
        self.replay.append(text)
        self.replay_chars += len(text)
        while self.replay_chars - len(self.replay[0]) >= REPLAY_CHARS:
            self.replay_chars -= len(self.replay.popleft())
        if self.replay_chars > REPLAY_CHARS:  # trim the oldest chunk to the bound
            extra = self.replay_chars - REPLAY_CHARS
            self.replay[0] = self.replay[0][extra:]
            self.replay_chars -= extra
        self._broadcast(("output", {"data": text}))

    def _broadcast(self, item) -> None:
        for queue in list(self.subscribers):
            if queue.qsize() >= SUBSCRIBER_BACKLOG:
                self.subscribers.discard(queue)
                queue.put_nowait(_END)
            else:
                queue.put_nowait(item)

    def _stop_reading(self) -> None:
        if self.master is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.master)

    def subscribe(self) -> tuple[dict, asyncio.Queue]:
        """The replay event's data and a queue of what follows it (no await between: nothing is lost)."""
        queue: asyncio.Queue = asyncio.Queue()
        replay = {"data": "".join(self.replay), "exited": self.exited, "exitCode": self.exit_code}
        if self.exited:
            queue.put_nowait(("exit", {"exitCode": self.exit_code}))
            queue.put_nowait(_END)
        else:
            self.subscribers.add(queue)
        return replay, queue

    async def wait_exit(self) -> None:
        """Await the shell, drain the PTY so its last output precedes the exit event, then announce it."""
        code = await self.process.wait()
        self.read_available()
        self._publish(self._decoder.decode(b"", final=True))
        self.exit_code = code if code >= 0 else 128 - code  # killed by signal N: 128+N, as shells report
        self.exited = True
        self._broadcast(("exit", {"exitCode": self.exit_code}))
        self._broadcast(_END)
        self.subscribers.clear()
        self._kill_group(signal.SIGHUP)  # background jobs left on the terminal
        self._close_master()

    # --- control -----------------------------------------------------------------------------------

    async def write(self, data: str, generation: int, sequence: int) -> None:
        """Write one input batch, once (see the module docstring for the ordering rules)."""
        async with self.write_lock:  # a retry that races its original waits here, then finds it applied
            if self.exited or self.master is None:
                raise ChatError(400, "the terminal session has exited")
            if generation < self.generation:
                raise ChatError(400, f"generation {generation} is older than the session's current "
                                     f"{self.generation}")
            if generation > self.generation:
                self.generation, self.applied, self.applied_floor = generation, set(), 0
            if sequence < self.applied_floor or sequence in self.applied:
                return  # already applied: acknowledged, not written twice
            await self._write_all(data.encode("utf-8", errors="replace"))
            self.applied.add(sequence)
            if len(self.applied) > APPLIED_WINDOW:
                self.applied_floor = sorted(self.applied)[len(self.applied) - APPLIED_WINDOW]
                self.applied = {s for s in self.applied if s >= self.applied_floor}

    async def _write_all(self, payload: bytes) -> None:
        """Write to the non-blocking master; while the PTY's input buffer is full, wait for the shell to read."""
        view = memoryview(payload)
        deadline = asyncio.get_running_loop().time() + WRITE_TIMEOUT_SECONDS
        while view:
            if self.master is None:
                raise ChatError(400, "the terminal session has exited")
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise ChatError(400, "the terminal is not reading its input") from None
                await asyncio.sleep(0.01)
            except OSError as exc:
                raise ChatError(400, f"the terminal session is not writable: {exc}") from None

    def resize(self, cols: int, rows: int) -> None:
        if self.exited or self.master is None:
            raise ChatError(400, "the terminal session has exited")
        set_window_size(self.master, cols, rows)
        self._kill_group(signal.SIGWINCH)

    def _kill_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def _close_master(self) -> None:
        self._stop_reading()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None

    async def close(self) -> None:
        """Kill the shell's process group (SIGHUP, SIGKILL after a grace) and end every stream."""
        if self.process.returncode is None:
            self._kill_group(signal.SIGHUP)
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), KILL_GRACE_SECONDS)
            except TimeoutError:
                self._kill_group(signal.SIGKILL)
        if self.waiter is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.waiter, KILL_GRACE_SECONDS + 1)
        self._broadcast(_END)
        self.subscribers.clear()
        self._close_master()


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_terminal() -> None:
    """In the child, after setsid(): stdin (the PTY's slave) becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalManager:
    """The workspace's terminal sessions, by id."""

    def __init__(self, config):
        self.config = config
        self.sessions: dict[str, TerminalSession] = {}
        self.created = 0

    def get(self, session_id: str) -> TerminalSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise ChatError(404, "terminal session not found")
        return session

    async def create(self, cols: int, rows: int) -> TerminalSession:
        if len(self.sessions) >= MAX_SESSIONS:
            raise ChatError(429, f"the workspace already has {MAX_SESSIONS} terminal sessions")
        master, slave = pty.openpty()
        try:
            set_window_size(master, cols, rows)
            cwd = self.config.workspaces_dir if self.config.workspaces_dir.is_dir() else self.config.home
            env = {**self.config.agent_env, "TERM": "xterm-256color"}
            process = await asyncio.create_subprocess_exec(
                "bash", "-l", stdin=slave, stdout=slave, stderr=slave, cwd=str(cwd), env=env,
                start_new_session=True, preexec_fn=_take_controlling_terminal)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self.created += 1
        session = TerminalSession(f"Terminal {self.created}", process, master)
        self.sessions[session.id] = session
        asyncio.get_running_loop().add_reader(master, session.read_available)
        session.waiter = asyncio.create_task(session.wait_exit())
        return session

    async def delete(self, session_id: str) -> None:
        session = self.get(session_id)
        del self.sessions[session_id]
        await session.close()

    async def close(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)

    def attached(self) -> bool:
        """Whether someone is watching a live shell (a stream open on a session that has not exited): the
        engine status's `hasActiveSSHSessions`, which keeps the workspace from sleeping."""
        return any(session.subscribers and not session.exited for session in self.sessions.values())


def _integer(body: dict, name: str, low: int, high: int | None = None) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ChatError(400, f"{name} must be an integer {bound}")
    return value


def _size(body: dict) -> tuple[int, int]:
    return _integer(body, "cols", 2, 500), _integer(body, "rows", 1, 200)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(session: TerminalSession, request: Request):
    replay, queue = session.subscribe()
    try:
        yield _sse("replay", replay)
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), PING_SECONDS)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield ": ping\n\n"
                continue
            if item is _END:
                return
            yield _sse(*item)
    finally:
        session.subscribers.discard(queue)


def terminal_routes(engine) -> list[Route]:
    """The routes above, on the engine's `TerminalManager` (which `Engine.stop` closes)."""
    terminals = engine.terminals

    async def list_sessions(request: Request) -> Response:
        return JSONResponse({"sessions": [session.summary() for session in terminals.sessions.values()]})

    async def create_session(request: Request) -> Response:
        cols, rows = _size(await json_body(request))
        session = await terminals.create(cols, rows)
        return JSONResponse({"session": session.summary()}, status_code=201)

    async def write_input(request: Request) -> Response:
        session = terminals.get(request.path_params["session_id"])
        body = await json_body(request)
        data = body.get("data")
        if not isinstance(data, str) or len(data) > MAX_INPUT_CHARS:
            raise ChatError(400, f"data must be a string of at most {MAX_INPUT_CHARS} characters")
        await session.write(data, _integer(body, "generation", 0), _integer(body, "sequence", 0))
        return JSONResponse({"success": True})

    async def resize(request: Request) -> Response:
        session = terminals.get(request.path_params["session_id"])
        session.resize(*_size(await json_body(request)))
        return JSONResponse({"success": True})

    async def delete_session(request: Request) -> Response:
        await terminals.delete(request.path_params["session_id"])
        return JSONResponse({"success": True})

    async def watched(session: TerminalSession, request: Request):
        """The session's stream, with the engine's status republished as a watcher comes and goes."""
        stream = _stream(session, request)
        try:
            first = await anext(stream)
            await engine.publish_status()  # subscribed by now
            yield first
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()
            await engine.publish_status()

    async def stream(request: Request) -> Response:
        session = terminals.get(request.path_params["session_id"])
        return StreamingResponse(watched(session, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    base = "/terminal/sessions"
    return [
        Route(base, list_sessions, methods=["GET"]), Route(base, create_session, methods=["POST"]),
        Route(base + "/{session_id}", delete_session, methods=["DELETE"]),
        Route(base + "/{session_id}/input", write_input, methods=["POST"]),
        Route(base + "/{session_id}/resize", resize, methods=["POST"]),
        Route(base + "/{session_id}/stream", stream, methods=["GET"]),
    ]

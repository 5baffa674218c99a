"""The agent driver interface: run one turn of a coding-agent CLI and stream its events as AgentEvents.

A driver speaks one CLI's machine protocol (ARCHITECTURE.md, principle 5): it builds the command line
and environment from a `TurnRequest` (pure functions in each driver module), starts the CLI in its own
process group, reads one JSON object per stdout line, and wraps each as the contract's AgentEvent
(`{timestamp, type, payload}`, spec §4.2).

    driver = ClaudeDriver(binary="/data/tools/claude/node_modules/.bin/claude")
    async with driver.run_turn(TurnRequest(prompt="fix the test", cwd=repo, env=env)) as turn:
        async for event in turn:
            journal.append(event.to_dict())
    chat.session_id = turn.session_id      # pass as resume_session_id on the next turn
    if turn.error: ...                     # the last event was already an error event

The turn's events are the CLI's. The user's own message, which no CLI here echoes, has its event in the
provider's shape from `user_message_event` (`claude-user`, Codex's `event_msg` user_message, ...): the chat
runner journals it before the turn's events, with who sent it.

How a turn ends:
- the CLI finishes its turn: `turn.error` is None;
- the CLI reports a failure (an API error after its retries), exits non-zero, or cannot start: the
  last event is the provider's error event, and `turn.error` says why;
- the CLI prints nothing for `idle_timeout` seconds (a hung model or tool): the process group is
  killed, then as above;
- `await turn.interrupt()` (or cancelling the task that iterates): the process group is killed,
  `turn.interrupted` is True and no error event is added.

The model: the request's, else `REPLICAS_DEFAULT_MODEL_<AGENT>` in the turn's environment (the workspace
environment's variable, or the server's setting passed in under it), else the driver's shipped default
(`shipped_model`), which each driver gives only for a custom endpoint (a gateway), where the CLI's own
default may be one it cannot drive; None lets the CLI choose. `turn.model` says which ran.

Warnings: what a CLI reports about itself that a user must see (no tools offered to the model, a model it
does not know) becomes a warning event in the turn (`warning_event`, in each provider's shape), also
kept in `turn.warnings`. A turn with warnings can still succeed; it must not pass silently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

THINKING_LEVELS = ("low", "medium", "high", "xhigh", "max", "ultra", "ultracode")
STDOUT_LINE_LIMIT = 64 * 1024 * 1024  # a tool result that prints a large file is one line
POLL_INTERVAL = 1.0  # how often a silent CLI is checked for having exited or gone idle


def default_model_variable(provider: str) -> str:
    """The environment variable that names an agent's default model: REPLICAS_DEFAULT_MODEL_CODEX, ..."""
    return f"REPLICAS_DEFAULT_MODEL_{provider.upper()}"


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AgentEvent:
    """One event of the contract's AgentEvent union: `{timestamp, type, payload}`."""

    type: str
    payload: dict[str, Any]
    timestamp: str = field(default_factory=utc_timestamp)

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "type": self.type, "payload": self.payload}


@dataclass(frozen=True)
class TurnRequest:
    """What one turn asks of an agent. `env` is the whole environment the CLI runs with (HOME, PATH,
    API keys and base URLs); the driver adds only its own switches. `home` is the workspace home
    (default: `env["HOME"]`), where per-workspace agent state lives (CODEX_HOME, XDG dirs).
    `images` are the contract's ImageContent objects."""

    prompt: str
    cwd: Path
    env: Mapping[str, str] | None = None
    home: Path | None = None
    model: str | None = None
    plan_mode: bool = False
    thinking_level: str | None = None
    images: Sequence[Mapping[str, Any]] = ()
    fast_mode: bool = False
    goal_mode: bool = False
    resume_session_id: str | None = None

    @property
    def environment(self) -> dict[str, str]:
        return dict(os.environ if self.env is None else self.env)

    @property
    def home_dir(self) -> Path:
        if self.home is not None:
            return Path(self.home)
        return Path(self.environment.get("HOME") or Path.home())


@dataclass
class Invocation:
    """A prepared command: argv, environment, working directory, and what to write to stdin.

    `stdin` is written whole and then closed (None: stdin is /dev/null). It is how the drivers pass the
    prompt: a CLI's argument parsing can rewrite an argument (opencode quotes any with a space), while
    the bytes on stdin reach it as they are."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdin: bytes | None = None


@dataclass
class TurnState:
    """What a driver learns from the CLI's lines during one turn."""

    session_id: str | None = None
    error: str | None = None  # a failure the CLI reported
    error_emitted: bool = False  # the CLI's own line already said so (no synthetic error event)
    finished: bool = False  # the CLI reported the end of its turn
    usage: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # what the CLI warned about (also as events)
    extra: dict[str, Any] = field(default_factory=dict)


class AgentDriver(ABC):
    """Runs turns of one coding-agent CLI; one instance can serve many chats and turns."""

    provider: ClassVar[str]
    binary_name: ClassVar[str]

    def __init__(self, binary: str | Path | None = None, *, idle_timeout: float = 600.0,
                 kill_grace: float = 3.0):
        self.binary = str(binary) if binary else None
        self.idle_timeout = idle_timeout
        self.kill_grace = kill_grace

    def run_turn(self, request: TurnRequest) -> AgentTurn:
        """Start a turn (the CLI starts on first iteration). Iterate the result for AgentEvents."""
        return AgentTurn(self, request)

    def shipped_model(self, env: Mapping[str, str]) -> str | None:
        """The model this driver picks when neither the request nor the environment names one; None lets
        the CLI choose (its own default, right for its own provider's endpoint)."""
        return None

    def resolve_model(self, request: TurnRequest) -> str | None:
        """The request's model, else REPLICAS_DEFAULT_MODEL_<AGENT> from the turn's environment, else the
        shipped default."""
        if request.model:
            return request.model
        env = request.environment
        return env.get(default_model_variable(self.provider)) or self.shipped_model(env)

    def warning_event(self, message: str, state: TurnState) -> AgentEvent | None:
        """The provider's AgentEvent for a warning (None: this provider has no place for one)."""
        return None

    def stderr_warning(self, line: str) -> str | None:
        """A warning the CLI printed on stderr rather than in its events (None for ordinary lines)."""
        return None

    def resolve_binary(self, request: TurnRequest) -> str | None:
        if self.binary:
            return self.binary
        return shutil.which(self.binary_name, path=request.environment.get("PATH"))

    @abstractmethod
    async def prepare(self, request: TurnRequest, binary: str) -> Invocation:
        """Build the invocation; may write files the CLI needs (configuration, images)."""

    @abstractmethod
    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        """Wrap one JSON line of the CLI as AgentEvents (none for lines the contract has no place for)."""

    @abstractmethod
    def error_event(self, message: str, state: TurnState) -> AgentEvent:
        """The provider's AgentEvent for a failed turn."""

    def user_message_event(self, request: TurnRequest) -> AgentEvent | None:
        """The user's message in this provider's own event shape (spec §4.2), so that history holds both sides
        of the conversation: no CLI here echoes the prompt it was given. None: the provider has no shape for
        it."""
        return None

    def turn_finished(self, state: TurnState, returncode: int | None) -> bool:
        """Whether the CLI finished its turn (by default: it printed its end-of-turn line)."""
        return state.finished

    def closing_events(self, state: TurnState) -> list[AgentEvent]:
        """Events after a successful turn (the CLI's stream has no end marker of its own)."""
        return []

    def not_installed_message(self) -> str:
        return f"{self.binary_name} is not installed"


class AgentTurn:
    """One running turn: an async iterator of AgentEvents with the outcome on it afterwards
    (`session_id`, `error`, `interrupted`, `usage`). See the module docstring."""

    def __init__(self, driver: AgentDriver, request: TurnRequest):
        self.driver = driver
        self.request = request
        self.session_id: str | None = request.resume_session_id
        self.error: str | None = None
        self.interrupted = False
        self.usage: dict[str, Any] | None = None
        self.model: str | None = request.model
        self.warnings: list[str] = []
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_warnings: collections.deque[str] = collections.deque()
        self._process: asyncio.subprocess.Process | None = None
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[AgentEvent]:
        return self._events

    async def __aenter__(self) -> AgentTurn:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading; kills the CLI if it is still running."""
        await self._events.aclose()
        await self._kill()

    async def interrupt(self) -> None:
        """Stop the turn now: kill the CLI's process group. The iteration then ends."""
        self.interrupted = True
        await self._kill()

    async def _run(self) -> AsyncIterator[AgentEvent]:
        driver, state = self.driver, TurnState(session_id=self.request.resume_session_id)
        binary = driver.resolve_binary(self.request)
        if binary is None:
            self.error = driver.not_installed_message()
            yield driver.error_event(self.error, state)
            return
        self.model = driver.resolve_model(self.request)
        request = dataclasses.replace(self.request, model=self.model)
        try:
            invocation = await driver.prepare(request, binary)
            self._process = await asyncio.create_subprocess_exec(
                *invocation.argv, cwd=invocation.cwd, env=invocation.env,
                stdin=asyncio.subprocess.PIPE if invocation.stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, limit=STDOUT_LINE_LIMIT)
        except OSError as exc:
            self.error = f"cannot start {driver.binary_name}: {exc}"
            yield driver.error_event(self.error, state)
            return
        process = self._process
        logger.info("agent turn started provider=%s pid=%s model=%s resume=%s", driver.provider, process.pid,
                    self.model, bool(self.request.resume_session_id))
        stderr_task = asyncio.create_task(self._drain_stderr(process))
        # Fed alongside the reading below, so a CLI that stalls before reading its stdin still meets the
        # idle timeout (a large prompt does not fit in the pipe at once).
        stdin_task = (asyncio.create_task(self._feed_stdin(process, invocation.stdin))
                      if invocation.stdin is not None else None)
        try:
            timed_out = False
            loop = asyncio.get_running_loop()
            last_output = loop.time()
            while True:
                try:
                    raw = await asyncio.wait_for(process.stdout.readline(),
                                                 timeout=min(POLL_INTERVAL, driver.idle_timeout))
                except TimeoutError:
                    if process.returncode is not None:
                        break  # the CLI exited; a process it left behind holds the pipe open
                    if loop.time() - last_output >= driver.idle_timeout:
                        timed_out = True
                        break
                    continue
                if not raw:
                    break
                last_output = loop.time()
                line = _parse_json_line(raw)
                if line is None:
                    continue
                for event in [*self._take_stderr_warnings(state), *driver.translate(line, state)]:
                    self.session_id = state.session_id or self.session_id
                    yield event
                self.session_id = state.session_id or self.session_id
            if timed_out:
                await self._kill()
            returncode = await self._wait(process)
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(stderr_task, timeout=1)
            self.usage = state.usage
            for event in self._take_stderr_warnings(state):
                yield event
            self.warnings = list(state.warnings)
            if self.warnings:
                logger.warning("agent warned provider=%s model=%s: %s", driver.provider, self.model,
                               "; ".join(self.warnings))
            if self.interrupted:
                self.error = "interrupted"
                return
            self.error = self._failure(state, returncode, timed_out)
            if self.error and not state.error_emitted:
                yield driver.error_event(self.error, state)
            elif not self.error:
                for event in driver.closing_events(state):
                    yield event
        finally:
            stderr_task.cancel()
            if stdin_task is not None:
                stdin_task.cancel()
            if process.returncode is None:
                await self._kill()
            # A process the CLI left behind may still hold our pipes; close our ends so the transport
            # does not outlive the turn (asyncio has no public way to do this).
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
            logger.info("agent turn ended provider=%s pid=%s returncode=%s error=%s", driver.provider,
                        process.pid, process.returncode, self.error)

    def _failure(self, state: TurnState, returncode: int | None, timed_out: bool) -> str | None:
        name = self.driver.binary_name
        if timed_out:
            return f"{name} produced no output for {self.driver.idle_timeout:g} s; stopped"
        if state.error:
            return state.error
        if returncode:
            detail = " ".join(line.strip() for line in list(self.stderr_tail)[-5:] if line.strip())
            return f"{name} exited with code {returncode}" + (f": {detail}" if detail else "")
        if not self.driver.turn_finished(state, returncode):
            return f"{name} ended without finishing its turn"
        return None

    async def _feed_stdin(self, process: asyncio.subprocess.Process, data: bytes) -> None:
        """Write the whole input, then close the pipe: the CLIs read stdin to EOF before they start."""
        assert process.stdin is not None
        try:
            process.stdin.write(data)
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the CLI exited early; its exit code tells why
        finally:
            process.stdin.close()

    async def _drain_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.stderr_tail.append(text)
            if (warning := self.driver.stderr_warning(text)) is not None:
                self._stderr_warnings.append(warning)

    def _take_stderr_warnings(self, state: TurnState) -> list[AgentEvent]:
        """Events for the warnings read from stderr since the last call (recorded in `state`)."""
        events = []
        while self._stderr_warnings:
            message = self._stderr_warnings.popleft()
            state.warnings.append(message)
            if (event := self.driver.warning_event(message, state)) is not None:
                events.append(event)
        return events

    async def _wait(self, process: asyncio.subprocess.Process) -> int | None:
        try:
            return await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            await self._kill()
            return process.returncode

    async def _kill(self) -> None:
        """SIGTERM the process group, then SIGKILL after the grace period."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), timeout=self.driver.kill_grace)
                break
            except TimeoutError:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader


def _parse_json_line(raw: bytes) -> dict[str, Any] | None:
    text = raw.decode(errors="replace").strip()
    if not text.startswith("{"):
        if text:
            logger.debug("agent printed a non-JSON line: %.200s", text)
        return None
    try:
        value = json.loads(text)
    except ValueError:
        logger.debug("agent printed a malformed JSON line: %.200s", text)
        return None
    return value if isinstance(value, dict) else None

"""Cursor's agent CLI on its stream-json protocol: `cursor-agent -p --output-format stream-json`.

cursor-agent is not on npm, so it is not pinned or installed here: the driver uses it when it is on
PATH and otherwise ends the turn with the error event "cursor-agent is not installed". Its flags and
line types follow Cursor's CLI documentation; no test here runs the real CLI.

The prompt is the one positional argument, after `--`: Cursor documents no other channel for it in
print mode (reading a piped stdin is undocumented), and the other drivers' stdin routes cannot be
checked against this CLI here. The argument reaches the CLI through execve, with no shell and no
joining, so it arrives byte for byte; Linux caps one argument at 128 KiB, so a longer prompt ends the
turn with a clear error instead of an opaque E2BIG.

The turn opens with the user's message (`cursor-status` whose payload is a `user` line, see
`user_message_event`). Lines map to `cursor-assistant`, `cursor-thinking`, `cursor-tool_call`,
`cursor-status` (system lines and a successful result) and `cursor-error` (a failed result), with the line
as payload.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Any

from replicas.engine.agents.base import AgentDriver, AgentEvent, Invocation, TurnRequest, TurnState
from replicas.engine.agents.images import prompt_with_image_urls, write_images

EVENT_TYPES = {"assistant": "cursor-assistant", "thinking": "cursor-thinking", "tool_call": "cursor-tool_call",
               "task": "cursor-task", "system": "cursor-status", "result": "cursor-status",
               "error": "cursor-error"}
MAX_ARGUMENT_BYTES = 128 * 1024 - 1  # Linux's MAX_ARG_STRLEN, less the terminating NUL


def build_cursor_prompt(request: TurnRequest, image_paths: list[Path] | None = None) -> str:
    prompt = prompt_with_image_urls(request.prompt, request.images)
    if image_paths:
        prompt += "\n\nAttached image files:\n" + "\n".join(f"- {path}" for path in image_paths)
    return prompt


def build_cursor_argv(request: TurnRequest, binary: str, image_paths: list[Path] | None = None) -> list[str]:
    argv = [binary, "-p", "--output-format", "stream-json"]
    argv += ["--mode=plan"] if request.plan_mode else ["--force"]
    if request.resume_session_id:
        argv += ["--resume", request.resume_session_id]
    if request.model:
        argv += ["--model", request.model]
    return argv + ["--", build_cursor_prompt(request, image_paths)]


def check_cursor_prompt(prompt: str) -> None:
    """Raise OSError(E2BIG) for a prompt that cannot be one argument (see the module docstring)."""
    size = len(prompt.encode())
    if size > MAX_ARGUMENT_BYTES or "\0" in prompt:
        reason = "holds a NUL character" if "\0" in prompt else f"is {size} bytes"
        raise OSError(errno.E2BIG, f"the prompt {reason}; cursor-agent takes it as one command-line "
                                   f"argument of at most {MAX_ARGUMENT_BYTES} bytes without NUL")


def wrap_cursor_line(line: dict[str, Any]) -> AgentEvent | None:
    kind = line.get("type")
    if kind == "user":
        return None  # the echo of our own prompt
    if kind == "result" and (line.get("is_error") or line.get("subtype", "success") != "success"):
        return AgentEvent("cursor-error", dict(line))
    return AgentEvent(EVENT_TYPES.get(str(kind), "cursor-status"), dict(line))


class CursorDriver(AgentDriver):
    """Cursor (`cursor-agent`), one `cursor-agent -p` process per turn."""

    provider = "cursor"
    binary_name = "cursor-agent"

    async def prepare(self, request: TurnRequest, binary: str) -> Invocation:
        image_dir = request.home_dir / ".replicas" / "images"
        image_paths = await asyncio.to_thread(write_images, request.images, image_dir)
        argv = build_cursor_argv(request, binary, image_paths)
        check_cursor_prompt(argv[-1])
        return Invocation(argv=argv, env=request.environment, cwd=request.cwd)

    def user_message_event(self, request: TurnRequest) -> AgentEvent:
        """The user's message as cursor-agent's own `user` line, under `cursor-status`: the contract's Cursor
        types have no user type, and `cursor-status` is where every other line type goes (`wrap_cursor_line`).
        cursor-agent's echo of the prompt is left out, so the message is in history once."""
        payload: dict[str, Any] = {"type": "user",
                                   "message": {"role": "user", "content": [{"type": "text", "text": request.prompt}]}}
        if request.resume_session_id:
            payload["session_id"] = request.resume_session_id
        return AgentEvent("cursor-status", payload)

    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        state.session_id = line.get("session_id") or state.session_id
        event = wrap_cursor_line(line)
        if event is None:
            return []
        if line.get("type") == "result":
            state.finished = True
            if event.type == "cursor-error":
                state.error = str(line.get("result") or line.get("error") or "cursor-agent reported an error")
                state.error_emitted = True
        return [event]

    def error_event(self, message: str, state: TurnState) -> AgentEvent:
        return AgentEvent("cursor-error", {"type": "error", "message": message, "session_id": state.session_id})

"""Claude Code on its stream-json protocol: `claude -p --output-format stream-json --verbose`.

- Follow-ups resume the session (`--resume <session_id>`; the id comes from the `system/init` line).
- Plan mode is `--permission-mode plan`; otherwise `--dangerously-skip-permissions` (IS_SANDBOX=1
  when running as root, which Claude Code otherwise refuses).
- The prompt never goes in argv: every turn writes one stream-json user message to stdin
  (`--input-format stream-json`), whose first text block is the prompt, unchanged, and whose other
  blocks are the images. A JSON string carries any text (quotes, `$`, newlines, a leading `-`, 100 KB)
  and Claude Code sends that block to the model as it is.
- The thinking level is `--effort` (low, medium, high, xhigh, max); fast mode is the `fastMode`
  setting.
- The user's message is `claude-user` (`user_message_event`; Claude Code does not echo it).
- Each stdout line `{"type": T, ...}` becomes the AgentEvent `claude-T` with the line as payload
  (spec §4.2). Lines of other types (stream_event, rate_limit_event, ...) are left out.
- The model, when no one names one, is `GATEWAY_MODEL` at a custom ANTHROPIC_BASE_URL (the pinned
  CLI's own default, named so that a gateway knows what to serve); at Anthropic itself Claude Code chooses.
- Warnings, as `claude-system` events with `subtype: "warning"`: a `system/init` line that lists no tools
  (the model could only talk), and the model Claude Code does not know (it says so only on stderr,
  `[claude-code:unrecognized_model]`, and sends the name as it is).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from replicas.engine.agents.base import AgentDriver, AgentEvent, Invocation, TurnRequest, TurnState

CLAUDE_EVENT_TYPES = ("assistant", "user", "result", "system")
# @anthropic-ai/claude-code 2.1.330's own default model (in its model list).
GATEWAY_MODEL = "claude-opus-5-5"
_UNRECOGNIZED_MODEL = re.compile(r"\[claude-code:unrecognized_model\]\s*(\{.*\})?")
NO_TOOLS_WARNING = "Claude Code offers the model no tools: it can answer in text but cannot act"
EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max",
          "ultra": "max", "ultracode": "max"}


def claude_effort(thinking_level: str | None) -> str | None:
    return EFFORT.get(thinking_level) if thinking_level else None


def build_claude_argv(request: TurnRequest, binary: str) -> list[str]:
    """The command line for one turn; the prompt is not on it (see `build_claude_stdin`)."""
    argv = [binary, "-p", "--output-format", "stream-json", "--verbose", "--input-format", "stream-json"]
    if request.resume_session_id:
        argv += ["--resume", request.resume_session_id]
    argv += ["--permission-mode", "plan"] if request.plan_mode else ["--dangerously-skip-permissions"]
    if request.model:
        argv += ["--model", request.model]
    if effort := claude_effort(request.thinking_level):
        argv += ["--effort", effort]
    if request.fast_mode:
        argv += ["--settings", json.dumps({"fastMode": True})]
    return argv


def build_claude_stdin(request: TurnRequest) -> bytes:
    """The turn's one stream-json user message: the prompt as its first text block, then the images.
    Claude Code reads stdin to its end, so one line and EOF make one turn."""
    content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
    content += [{"type": "image", "source": dict(image["source"])} for image in request.images]
    message = {"type": "user", "message": {"role": "user", "content": content},
               "parent_tool_use_id": None}
    return (json.dumps(message) + "\n").encode()


def build_claude_env(request: TurnRequest, *, is_root: bool, max_retries: int | None = None,
                     api_timeout: float | None = None) -> dict[str, str]:
    env = request.environment
    env.update({"DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    if is_root and not request.plan_mode:
        env["IS_SANDBOX"] = "1"
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    if api_timeout is not None:
        env["API_TIMEOUT_MS"] = str(int(api_timeout * 1000))
    return env


def _normalize_block(block: Any) -> Any:
    # The contract's ThinkingBlock carries the reasoning as `text`; the SDK calls it `thinking`.
    if isinstance(block, dict) and block.get("type") == "thinking" and "text" not in block:
        return {**block, "text": block.get("thinking", "")}
    return block


def wrap_claude_line(line: dict[str, Any]) -> AgentEvent | None:
    """The AgentEvent for one stream-json line, or None for line types the contract has no place for.

    A string `message` (some system lines) becomes a message with one text block. A `result` that
    says `is_error` but `subtype: "success"` (what Claude Code prints after an API
    error) is given `subtype: "error_during_execution"` and `errors`, since the contract reads any
    subtype but "success" as a failed turn and nothing else."""
    kind = line.get("type")
    if kind not in CLAUDE_EVENT_TYPES:
        return None
    payload = dict(line)
    message = payload.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        payload["message"] = {**message, "content": [_normalize_block(b) for b in message["content"]]}
    elif isinstance(message, str):
        # Some system lines (permission_denied, ...) carry a plain string; the contract's `message` is
        # a ClaudeMessage, so the string becomes its one text block.
        payload["message"] = {"content": [{"type": "text", "text": message}]}
    if kind == "result" and payload.get("is_error"):
        if payload.get("subtype", "success") == "success":
            payload["subtype"] = "error_during_execution"
        if not payload.get("errors"):
            payload["errors"] = [str(payload.get("result") or "Claude Code reported an error")]
    return AgentEvent(type=f"claude-{kind}", payload=payload)


class ClaudeDriver(AgentDriver):
    """Claude Code (`claude`), one `claude -p` process per turn.

    `max_retries` and `api_timeout` (seconds) bound Claude Code's own retries of model requests
    (CLAUDE_CODE_MAX_RETRIES, API_TIMEOUT_MS); None keeps its defaults (10 retries, about 3 minutes
    of back-off against a model that keeps failing)."""

    provider = "claude"
    binary_name = "claude"

    def __init__(self, binary=None, *, max_retries: int | None = None, api_timeout: float | None = None,
                 **kwargs):
        super().__init__(binary, **kwargs)
        self.max_retries = max_retries
        self.api_timeout = api_timeout

    async def prepare(self, request: TurnRequest, binary: str) -> Invocation:
        env = build_claude_env(request, is_root=os.geteuid() == 0, max_retries=self.max_retries,
                               api_timeout=self.api_timeout)
        return Invocation(argv=build_claude_argv(request, binary), env=env, cwd=request.cwd,
                          stdin=build_claude_stdin(request))

    def user_message_event(self, request: TurnRequest) -> AgentEvent:
        """`claude-user` with the message Claude Code was given on stdin (its tool results are `claude-user`
        too, told apart by their `tool_result` blocks). The contract's ClaudeContentBlock has no image block,
        so the images are beside the message, as the API's ImageContent objects (`images`)."""
        payload: dict[str, Any] = {"type": "user", "parent_tool_use_id": None, "message": {
            "role": "user", "content": [{"type": "text", "text": request.prompt}]}}
        if request.images:
            payload["images"] = [dict(image) for image in request.images]
        if request.resume_session_id:
            payload["session_id"] = request.resume_session_id
        return AgentEvent(type="claude-user", payload=payload)

    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        if line.get("session_id"):
            state.session_id = line["session_id"]
        event = wrap_claude_line(line)
        if event is None:
            return []
        if event.payload.get("type") == "result":
            state.finished = True
            state.usage = event.payload.get("usage")
            if event.payload.get("is_error") or event.payload.get("subtype") != "success":
                state.error = "; ".join(event.payload.get("errors") or []) or "Claude Code reported an error"
                state.error_emitted = True
        if line.get("type") == "system" and line.get("subtype") == "init" and line.get("tools") == []:
            state.warnings.append(NO_TOOLS_WARNING)
            return [event, self.warning_event(NO_TOOLS_WARNING, state)]
        return [event]

    def warning_event(self, message: str, state: TurnState) -> AgentEvent:
        return AgentEvent(type="claude-system", payload={
            "type": "system", "subtype": "warning", "message": {"content": [{"type": "text", "text": message}]},
            "session_id": state.session_id})

    def stderr_warning(self, line: str) -> str | None:
        match = _UNRECOGNIZED_MODEL.search(line)
        if match is None:
            return None
        try:
            model = json.loads(match.group(1) or "{}").get("model")
        except ValueError:
            model = None
        return (f"Claude Code does not know the model {model or '(unnamed)'}: it sends the name as given, "
                "and its context size, tools and thinking settings may not fit that model")

    def shipped_model(self, env: Mapping[str, str]) -> str | None:
        return GATEWAY_MODEL if env.get("ANTHROPIC_BASE_URL") else None

    def error_event(self, message: str, state: TurnState) -> AgentEvent:
        return AgentEvent(type="claude-result", payload={
            "type": "result", "subtype": "error_during_execution", "is_error": True, "errors": [message],
            "session_id": state.session_id})

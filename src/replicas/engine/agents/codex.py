"""Codex CLI on its JSONL protocol: `codex exec --json ...`, `codex exec resume ... <thread_id>`.

- With OPENAI_BASE_URL in the environment, a custom provider (`-c model_provider=replicas`, wire API
  `responses`, key from OPENAI_API_KEY) points Codex at that endpoint: the built-in provider would try
  a WebSocket first and never give up (AGENT-CLIS.md).
- CODEX_HOME is `<home>/.codex`, so threads, state and logs stay in the workspace.
- The prompt goes to stdin (`-` as the prompt argument), never on the command line, so Codex gets it
  byte for byte whatever it holds (in plan and goal mode, after the mode's instruction).
- The thinking level is `model_reasoning_effort` (max, ultra and ultracode become xhigh); fast mode is
  `service_tier="fast"`; images are `--image` files.
- Plan mode runs in a read-only sandbox with no approvals and a planning instruction; otherwise
  approvals and Codex's own sandbox are bypassed (the workspace is the sandbox).
- Goal mode asks the agent to record the request as its goal (Codex's goal tools) and work until done.
- The model, when no one names one, is `GATEWAY_MODEL` at a custom OPENAI_BASE_URL. Codex's own default
  (gpt-6.1-sol in 0.169.0) drives a code-mode `exec` tool there, and a default whose metadata the
  provider lacks is offered no tools at all (`tools: []`); `GATEWAY_MODEL` is in the pinned Codex's model
  catalog and offers `exec_command` and `apply_patch`. At OpenAI itself Codex chooses (precedence: base.py).

Codex's `exec --json` items are mapped to the contract's Codex events (spec §4.2), the shapes of Codex's
own session files: `event_msg` (user_message, agent_reasoning, error, warning) and `response_item` (message,
function_call / function_call_output for commands and plan updates, custom_tool_call /
custom_tool_call_output for patches, MCP tools and web searches).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from replicas.engine.agents.base import AgentDriver, AgentEvent, Invocation, TurnRequest, TurnState
from replicas.engine.agents.images import image_sources, prompt_with_image_urls, write_images

PROVIDER_ID = "replicas"
# In @openai/codex 0.169.0's bundled catalog (model metadata, so no "metadata not found" warning); drives
# `exec_command` and `apply_patch` through a Responses endpoint. `gpt-5` also works but is not in the catalog.
GATEWAY_MODEL = "gpt-5.5"
REASONING_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh",
                    "ultra": "xhigh", "ultracode": "xhigh"}
PLAN_INSTRUCTION = (
    "You are in plan mode: investigate and propose a plan, but do not modify any file, commit, or run "
    "commands with side effects. End with the plan.\n\n")
GOAL_INSTRUCTION = (
    "Goal mode: record the request below as your goal with the goal tools, then keep working until the "
    "goal is complete.\n\n")


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def codex_reasoning_effort(thinking_level: str | None) -> str | None:
    return REASONING_EFFORT.get(thinking_level) if thinking_level else None


def codex_provider_overrides(env: dict[str, str], *, max_retries: int | None = None,
                             stream_idle_timeout: float | None = None) -> list[str]:
    """`-c` overrides for a custom Responses provider at OPENAI_BASE_URL (none without it)."""
    base_url = env.get("OPENAI_BASE_URL")
    if not base_url:
        return []
    fields = [f"name={_toml_string('Replicas')}", f"base_url={_toml_string(base_url.rstrip('/'))}",
              'wire_api="responses"', 'env_key="OPENAI_API_KEY"']
    if max_retries is not None:
        fields += [f"request_max_retries={max_retries}", f"stream_max_retries={max_retries}"]
    if stream_idle_timeout is not None:
        fields.append(f"stream_idle_timeout_ms={int(stream_idle_timeout * 1000)}")
    return ["-c", f"model_provider={PROVIDER_ID}", "-c", f"model_providers.{PROVIDER_ID}={{{','.join(fields)}}}"]


def build_codex_prompt(request: TurnRequest) -> str:
    """The user's message as Codex gets it: the prompt, then the URLs of URL images (Codex takes image
    files only). Plan and goal mode put their instruction before it: `developer_instructions` would
    keep the text apart, but Codex sends them only when a thread starts (a resumed turn would lose
    them, and a thread started in plan mode would keep them), and `exec` has no other per-turn channel."""
    prompt = prompt_with_image_urls(request.prompt, request.images)
    if request.goal_mode:
        prompt = GOAL_INSTRUCTION + prompt
    if request.plan_mode:
        prompt = PLAN_INSTRUCTION + prompt
    return prompt


def build_codex_argv(request: TurnRequest, binary: str, image_paths: list[Path] | None = None, *,
                     max_retries: int | None = None, stream_idle_timeout: float | None = None) -> list[str]:
    """The command line for one turn: the thread id after `--`, then `-`, which makes Codex read the
    prompt from stdin (`build_codex_stdin`); the prompt itself is never on the command line."""
    argv = [binary, "exec"]
    if request.resume_session_id:
        argv.append("resume")
    argv += ["--json", "--skip-git-repo-check"]
    argv += codex_provider_overrides(request.environment, max_retries=max_retries,
                                     stream_idle_timeout=stream_idle_timeout)
    if request.plan_mode:
        argv += ["-c", 'sandbox_mode="read-only"', "-c", 'approval_policy="never"']
    else:
        argv.append("--dangerously-bypass-approvals-and-sandbox")
    if request.model:
        argv += ["--model", request.model]
    if effort := codex_reasoning_effort(request.thinking_level):
        argv += ["-c", f"model_reasoning_effort={_toml_string(effort)}"]
    if request.fast_mode:
        argv += ["-c", 'service_tier="fast"']
    if request.goal_mode:
        argv += ["--enable", "goals"]
    argv += [f"--image={path}" for path in image_paths or []]
    argv.append("--")
    if request.resume_session_id:
        argv.append(request.resume_session_id)
    argv.append("-")
    return argv


def build_codex_stdin(request: TurnRequest) -> bytes:
    """The prompt as UTF-8: with `-`, `codex exec` takes stdin up to EOF as the user's message, as is."""
    return build_codex_prompt(request).encode()


def build_codex_env(request: TurnRequest) -> dict[str, str]:
    env = request.environment
    env["CODEX_HOME"] = str(request.home_dir / ".codex")
    return env


def _call(call_id: str, name: str, arguments: Any) -> AgentEvent:
    return AgentEvent("response_item", {"type": "function_call", "call_id": call_id, "name": name,
                                        "arguments": json.dumps(arguments)})


def _custom_call(call_id: str, name: str, tool_input: str, status: str) -> AgentEvent:
    return AgentEvent("response_item", {"type": "custom_tool_call", "call_id": call_id, "name": name,
                                        "input": tool_input, "status": status})


def _custom_output(call_id: str, output: Any, failed: bool) -> AgentEvent:
    body = {"output": output, "metadata": {"exit_code": 1 if failed else 0}}
    return AgentEvent("response_item", {"type": "custom_tool_call_output", "call_id": call_id,
                                        "output": json.dumps(body)})


def translate_codex_item(item: dict[str, Any], started: bool) -> list[AgentEvent]:
    """Contract events for one `item.started` (started=True) or `item.completed` item."""
    kind, item_id = item.get("type"), item.get("id", "")
    if kind == "command_execution":
        call = _call(item_id, "exec_command", {"cmd": item.get("command", "")})
        if started:
            return [call]
        output = f"Process exited with code {item.get('exit_code')}\nOutput:\n{item.get('aggregated_output', '')}"
        result = AgentEvent("response_item", {"type": "function_call_output", "call_id": item_id,
                                              "output": output})
        return [result] if item.get("_announced") else [call, result]
    if started:
        return []
    if kind == "agent_message":
        return [AgentEvent("response_item", {"type": "message", "role": "assistant",
                                             "content": [{"type": "output_text", "text": item.get("text", "")}]})]
    if kind == "reasoning":
        return [AgentEvent("event_msg", {"type": "agent_reasoning", "text": item.get("text", "")})]
    if kind == "todo_list":
        plan = [{"step": entry.get("text", ""), "status": "completed" if entry.get("completed") else "pending"}
                for entry in item.get("items", [])]
        return [_call(item_id, "update_plan", {"plan": plan})]
    failed = item.get("status") == "failed"
    status = "failed" if failed else "completed"
    if kind == "file_change":
        changes = "\n".join(f"{change.get('kind', 'update')} {change.get('path', '')}"
                            for change in item.get("changes", []))
        return [_custom_call(item_id, "apply_patch", changes, status), _custom_output(item_id, changes, failed)]
    if kind == "mcp_tool_call":
        name = f"{item.get('server', 'mcp')}.{item.get('tool', '')}"
        result = item.get("error") or item.get("result")
        return [_custom_call(item_id, name, json.dumps(item.get("arguments")), status),
                _custom_output(item_id, result, failed or bool(item.get("error")))]
    if kind == "web_search":
        return [_custom_call(item_id, "web_search", item.get("query", ""), status)]
    if kind == "error":  # Codex's warnings (unknown model metadata, ...): the turn goes on
        return [codex_warning_event(item.get("message") or "Codex reported a problem")]
    return []


class CodexTranslator:
    """Turns `codex exec --json` lines into contract events, remembering which commands it announced."""

    def __init__(self) -> None:
        self.announced: set[str] = set()

    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        kind = line.get("type")
        if kind == "thread.started":
            state.session_id = line.get("thread_id") or state.session_id
        elif kind in ("item.started", "item.completed"):
            item = dict(line.get("item") or {})
            started = kind == "item.started"
            if not started and item.get("id") in self.announced:
                item["_announced"] = True
            events = translate_codex_item(item, started)
            if not started and item.get("type") == "error":
                state.warnings.append(item.get("message") or "Codex reported a problem")
            if started and events:
                self.announced.add(item.get("id"))
            return events
        elif kind == "turn.completed":
            state.finished = True
            state.usage = line.get("usage")
        elif kind == "turn.failed":
            state.error = (line.get("error") or {}).get("message") or "Codex turn failed"
            state.error_emitted = True
            return [codex_error_event(state.error)]
        elif kind == "error":
            state.extra["last_error"] = line.get("message")  # "Reconnecting... n/5" and the like
        return []


def codex_error_event(message: str) -> AgentEvent:
    return AgentEvent("event_msg", {"type": "error", "message": message})


def codex_warning_event(message: str) -> AgentEvent:
    """Codex's own shape for a warning in its session files (`EventMsg::Warning`); the contract's
    `event_msg` types (user_message, agent_reasoning) have none, as for `error`."""
    return AgentEvent("event_msg", {"type": "warning", "message": message})


class CodexDriver(AgentDriver):
    """Codex CLI (`codex`), one `codex exec` process per turn.

    `max_retries` and `stream_idle_timeout` (seconds) bound the custom provider's retries and its wait
    for a silent stream; None keeps Codex's defaults (5 reconnects, about 25 s against a failing model)."""

    provider = "codex"
    binary_name = "codex"

    def __init__(self, binary=None, *, max_retries: int | None = None,
                 stream_idle_timeout: float | None = None, **kwargs):
        super().__init__(binary, **kwargs)
        self.max_retries = max_retries
        self.stream_idle_timeout = stream_idle_timeout

    async def prepare(self, request: TurnRequest, binary: str) -> Invocation:
        env = build_codex_env(request)
        image_dir = request.home_dir / ".replicas" / "images"
        image_paths = await asyncio.to_thread(write_images, request.images, image_dir)
        await asyncio.to_thread(Path(env["CODEX_HOME"]).mkdir, parents=True, exist_ok=True)
        argv = build_codex_argv(request, binary, image_paths, max_retries=self.max_retries,
                                stream_idle_timeout=self.stream_idle_timeout)
        return Invocation(argv=argv, env=env, cwd=request.cwd, stdin=build_codex_stdin(request))

    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        translator = state.extra.setdefault("translator", CodexTranslator())
        return translator.translate(line, state)

    def user_message_event(self, request: TurnRequest) -> AgentEvent:
        """`event_msg` user_message, as in Codex's session files: the user's text (without the plan or goal
        instruction put in front of it), and the images as URLs (`data:` for uploaded ones)."""
        payload: dict[str, Any] = {"type": "user_message", "message": request.prompt}
        if request.images:
            payload["images"] = image_sources(request.images)
        return AgentEvent("event_msg", payload)

    def error_event(self, message: str, state: TurnState) -> AgentEvent:
        return codex_error_event(message)

    def warning_event(self, message: str, state: TurnState) -> AgentEvent:
        return codex_warning_event(message)

    def shipped_model(self, env: Mapping[str, str]) -> str | None:
        return GATEWAY_MODEL if env.get("OPENAI_BASE_URL") else None

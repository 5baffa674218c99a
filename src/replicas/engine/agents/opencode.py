"""opencode on its JSON event stream: `opencode run --format json --auto [--session <id>]`, prompt on stdin.

- The prompt goes to stdin, never on the command line: `opencode run` joins its message arguments with
  spaces and wraps each one that holds a space in double quotes (escaping the quotes inside), so a
  prompt passed as an argument reaches the model changed (`"Work\nRUN: ..."`). With no message
  argument, it takes stdin (when stdin is not a terminal) as the message text, unchanged.
- Configuration comes inline (OPENCODE_CONFIG_CONTENT, the same JSON as an `opencode.json`): the
  Anthropic provider at ANTHROPIC_BASE_URL (OpenAI at OPENAI_BASE_URL), keys read from the environment
  with opencode's `{env:...}` substitution so they never land in a file. XDG directories live in the
  workspace home, so sessions and caches are per workspace.
- Plan mode is opencode's `plan` agent, with edits denied and the shell limited to read-only commands
  (with `--auto`, anything not denied would be approved).
- The thinking level is `--variant` (xhigh, ultra and ultracode become max); images are `--file`s.
- The model, when no one names one, follows the endpoint (`GATEWAY_MODELS`): `anthropic/...` at a custom
  ANTHROPIC_BASE_URL, else `openai/...` at a custom OPENAI_BASE_URL (the providers configured above, in
  the order opencode itself prefers them); with neither, opencode chooses. Both ids are in the pinned
  opencode's bundled catalog. Its events say nothing of the tools it offers; an unknown model ends the
  turn with an `opencode-error`.
- The turn opens with `opencode-message.updated` holding the user's message (`info.role: "user"`, `parts`).
- Lines map to `opencode-part-text`, `opencode-part-reasoning`, `opencode-part-tool`, `opencode-error`
  and `opencode-<type>` for the rest, with the line as payload; a finished turn ends with
  `opencode-session.idle`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from replicas.engine.agents.base import AgentDriver, AgentEvent, Invocation, TurnRequest, TurnState
from replicas.engine.agents.images import image_sources, prompt_with_image_urls, write_images

VARIANT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "max", "max": "max",
           "ultra": "max", "ultracode": "max"}
EVENT_TYPES = {"text": "opencode-part-text", "reasoning": "opencode-part-reasoning",
               "tool_use": "opencode-part-tool", "error": "opencode-error"}
READ_ONLY_COMMANDS = ["ls*", "cat *", "head *", "tail *", "wc *", "pwd", "rg *", "grep *", "find *",
                      "tree*", "git status*", "git diff*", "git log*", "git show*", "git branch*"]
PLAN_PERMISSIONS = {"edit": "deny", "webfetch": "allow",
                    "bash": {"*": "deny", **{pattern: "allow" for pattern in READ_ONLY_COMMANDS}}}
OPENAI_MODEL_PREFIXES = ("gpt-", "o1", "o3", "o4", "codex")
# Both in opencode-ai 1.18.33's bundled catalog: its own choice for Anthropic, and for OpenAI the model Codex
# uses at a gateway, so that a gateway serves one OpenAI model for both agents.
GATEWAY_MODELS = {"ANTHROPIC_BASE_URL": "anthropic/claude-sonnet-4-6", "OPENAI_BASE_URL": "openai/gpt-5.5"}


def opencode_model(model: str | None) -> str | None:
    """`provider/model` as opencode names models; a bare name is taken as Anthropic's or OpenAI's."""
    if not model or "/" in model:
        return model
    return f"{'openai' if model.startswith(OPENAI_MODEL_PREFIXES) else 'anthropic'}/{model}"


def opencode_variant(thinking_level: str | None) -> str | None:
    return VARIANT.get(thinking_level) if thinking_level else None


def build_opencode_config(request: TurnRequest) -> dict[str, Any]:
    env = request.environment
    config: dict[str, Any] = {"$schema": "https://opencode.ai/config.json", "autoupdate": False,
                              "share": "disabled"}
    providers: dict[str, Any] = {}
    if base_url := env.get("ANTHROPIC_BASE_URL"):
        base_url = base_url.rstrip("/")
        options = {"baseURL": base_url if base_url.endswith("/v1") else f"{base_url}/v1"}
        if env.get("ANTHROPIC_API_KEY"):
            options["apiKey"] = "{env:ANTHROPIC_API_KEY}"
        providers["anthropic"] = {"options": options}
    if base_url := env.get("OPENAI_BASE_URL"):
        options = {"baseURL": base_url.rstrip("/")}
        if env.get("OPENAI_API_KEY"):
            options["apiKey"] = "{env:OPENAI_API_KEY}"
        providers["openai"] = {"options": options}
    if providers:
        config["provider"] = providers
    if request.plan_mode:
        config["agent"] = {"plan": {"permission": PLAN_PERMISSIONS}}
    return config


def build_opencode_env(request: TurnRequest) -> dict[str, str]:
    env = request.environment
    home = request.home_dir
    env.update({
        "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_STATE_HOME": str(home / ".local" / "state"),
        "OPENCODE_CONFIG_CONTENT": json.dumps(build_opencode_config(request)),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
    })
    if env.get("ANTHROPIC_BASE_URL") or env.get("OPENAI_BASE_URL"):
        # A local or proxied endpoint: the bundled model catalog will do, no fetch from models.dev.
        env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
    return env


def build_opencode_argv(request: TurnRequest, binary: str, image_paths: list[Path] | None = None) -> list[str]:
    argv = [binary, "run", "--format", "json", "--auto"]
    if request.plan_mode:
        argv += ["--agent", "plan"]
    if request.resume_session_id:
        argv += ["--session", request.resume_session_id]
    if model := opencode_model(request.model):
        argv += ["--model", model]
    if variant := opencode_variant(request.thinking_level):
        argv += ["--variant", variant]
    for path in image_paths or []:
        argv += ["--file", str(path)]
    return argv  # no message argument: opencode reads it from stdin (`build_opencode_stdin`)


def build_opencode_stdin(request: TurnRequest) -> bytes:
    """The message text as UTF-8, plus the URLs of URL images (opencode attaches files only)."""
    return prompt_with_image_urls(request.prompt, request.images).encode()


def wrap_opencode_line(line: dict[str, Any]) -> AgentEvent:
    kind = str(line.get("type", "event"))
    return AgentEvent(EVENT_TYPES.get(kind, f"opencode-{kind}"), dict(line))


def _mime(image: Mapping[str, Any]) -> str:
    return image.get("source", {}).get("media_type") or "image/*"


def opencode_error_message(line: dict[str, Any]) -> str:
    error = line.get("error") or {}
    data = error.get("data") or {}
    return str(data.get("message") or error.get("name") or error.get("_tag") or "opencode reported an error")


class OpencodeDriver(AgentDriver):
    """opencode (`opencode`), one `opencode run` process per turn."""

    provider = "opencode"
    binary_name = "opencode"

    def shipped_model(self, env: Mapping[str, str]) -> str | None:
        return next((model for variable, model in GATEWAY_MODELS.items() if env.get(variable)), None)

    async def prepare(self, request: TurnRequest, binary: str) -> Invocation:
        image_dir = request.home_dir / ".replicas" / "images"
        image_paths = await asyncio.to_thread(write_images, request.images, image_dir)
        return Invocation(argv=build_opencode_argv(request, binary, image_paths),
                          env=build_opencode_env(request), cwd=request.cwd, stdin=build_opencode_stdin(request))

    def user_message_event(self, request: TurnRequest) -> AgentEvent:
        """`opencode-message.updated` with the user's message as opencode stores one: its `info` (role user)
        and its `parts` (the text, then each image as a file part)."""
        session_id = request.resume_session_id
        parts: list[dict[str, Any]] = [{"type": "text", "text": request.prompt}]
        parts += [{"type": "file", "mime": _mime(image), "url": url}
                  for image, url in zip(request.images, image_sources(request.images), strict=True)]
        return AgentEvent("opencode-message.updated", {
            "type": "message.updated", "sessionID": session_id,
            "info": {"role": "user", "sessionID": session_id}, "parts": parts})

    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        state.session_id = line.get("sessionID") or state.session_id
        if line.get("type") == "error":
            state.error = opencode_error_message(line)
            state.error_emitted = True
        return [wrap_opencode_line(line)]

    def turn_finished(self, state: TurnState, returncode: int | None) -> bool:
        return returncode == 0  # opencode prints no end-of-turn line; a clean exit is the end

    def closing_events(self, state: TurnState) -> list[AgentEvent]:
        return [AgentEvent("opencode-session.idle", {"type": "session.idle", "sessionID": state.session_id})]

    def error_event(self, message: str, state: TurnState) -> AgentEvent:
        return AgentEvent("opencode-error", {"type": "error", "sessionID": state.session_id,
                                             "error": {"name": "ReplicasError", "data": {"message": message}}})

"""What a person reads of an agent's events: each AgentEvent (a history event, or the `event` of a
`chat.turn.delta`) becomes a few `Line`s. Pure functions, the same for `replicas read` and the live view.

Each agent speaks its own shapes (spec §4.2): Claude Code's `claude-*` (content blocks), Codex's `event_msg`
and `response_item`, opencode's `opencode-*` (parts), cursor-agent's `cursor-*`. Tool calls and their
results are folded to one line each; what is not worth showing (session set-up, usage) gives no line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Kinds of line: what the person said, what the agent said or thought, a tool it called, what came back.
USER, ASSISTANT, THINKING, TOOL, RESULT, ERROR, NOTE = "user", "assistant", "thinking", "tool", "result", "error", \
    "note"
WIDTH = 100


@dataclass(frozen=True)
class Line:
    kind: str
    text: str


def one_line(text: str, width: int = WIDTH) -> str:
    """The first line of `text`, cut to `width` characters, saying how much more there was."""
    lines = text.strip().splitlines() or [""]
    first = lines[0].strip()
    if len(first) > width:
        first = first[:width - 1] + "…"
    more = len(lines) - 1
    return f"{first} (+{more} lines)" if more else first


def tool_summary(name: str, arguments: Any) -> str:
    """`Bash(ls -la)`: the tool and the one argument that says what it does, else its compact JSON."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"{name}({one_line(arguments, 80)})"
    if isinstance(arguments, dict):
        for key in ("command", "cmd", "file_path", "filePath", "path", "pattern", "url", "query", "description"):
            value = arguments.get(key)
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            if isinstance(value, str) and value:
                return f"{name}({one_line(value, 80)})"
        if not arguments:
            return f"{name}()"
    return f"{name}({one_line(json.dumps(arguments, separators=(',', ':')), 80)})"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(block.get("text") if isinstance(block, dict) and "text" in block
                                   else block.get("content") if isinstance(block, dict) else block)
                         for block in content if block is not None)
    return "" if content is None else str(content)


def _result(text: str, failed: bool) -> Line:
    summary = one_line(text) or "(no output)"
    return Line(ERROR if failed else RESULT, f"error: {summary}" if failed else summary)


def _claude(kind: str, payload: dict[str, Any]) -> list[Line]:
    message = payload.get("message") if isinstance(payload.get("message"), dict) else {}
    content = message.get("content")
    if kind == "claude-result":
        if payload.get("is_error") or payload.get("subtype", "success") != "success":
            return [Line(ERROR, "; ".join(payload.get("errors") or []) or "the turn failed")]
        return []
    if kind == "claude-system":
        return [Line(NOTE, _text_of(content))] if payload.get("subtype") == "warning" else []
    if isinstance(content, str):
        return [Line(USER if kind == "claude-user" else ASSISTANT, content)]
    lines = []
    for block in content or []:
        block_type = block.get("type")
        if block_type == "text" and block.get("text"):
            lines.append(Line(USER if kind == "claude-user" else ASSISTANT, block["text"]))
        elif block_type == "thinking" and block.get("thinking"):
            lines.append(Line(THINKING, block["thinking"]))
        elif block_type == "tool_use":
            lines.append(Line(TOOL, tool_summary(block.get("name", "tool"), block.get("input"))))
        elif block_type == "tool_result":
            lines.append(_result(_text_of(block.get("content")), bool(block.get("is_error"))))
    return lines


def _codex(kind: str, payload: dict[str, Any]) -> list[Line]:
    item = payload.get("type")
    if kind == "event_msg":
        texts = {"user_message": (USER, "message"), "agent_message": (ASSISTANT, "message"),
                 "agent_reasoning": (THINKING, "text"), "error": (ERROR, "message"), "warning": (NOTE, "message")}
        if item in texts:
            line_kind, key = texts[item]
            return [Line(line_kind, str(payload.get(key) or ""))] if payload.get(key) else []
        return []
    if item == "message" and payload.get("role") == "assistant":
        return [Line(ASSISTANT, _text_of(payload.get("content")))]
    if item in ("function_call", "custom_tool_call"):
        name = payload.get("name", "tool")
        return [Line(TOOL, tool_summary(name, payload.get("arguments", payload.get("input"))))]
    if item == "function_call_output":
        output = str(payload.get("output") or "")
        failed = output.startswith("Process exited with code ") and not output.startswith(
            "Process exited with code 0")
        body = output.split("Output:\n", 1)[-1] if "Output:\n" in output else output
        return [_result(body, failed)]
    if item == "custom_tool_call_output":
        try:
            output = json.loads(payload.get("output") or "{}")
        except ValueError:
            return [_result(str(payload.get("output")), False)]
        failed = (output.get("metadata") or {}).get("exit_code", 0) != 0
        return [_result(_text_of(output.get("output")), failed)]
    return []


def _opencode(kind: str, payload: dict[str, Any]) -> list[Line]:
    part = payload.get("part") if isinstance(payload.get("part"), dict) else {}
    if kind == "opencode-message.updated" and (payload.get("info") or {}).get("role") == "user":
        return [Line(USER, "\n".join(p.get("text", "") for p in payload.get("parts") or []
                                      if p.get("type") == "text"))]
    if kind == "opencode-part-text" and part.get("text"):
        return [Line(ASSISTANT, part["text"])]
    if kind == "opencode-part-reasoning" and part.get("text"):
        return [Line(THINKING, part["text"])]
    if kind == "opencode-part-tool":
        state = part.get("state") or {}
        lines = [Line(TOOL, tool_summary(part.get("tool", "tool"), state.get("input")))]
        if state.get("status") in ("completed", "error"):
            lines.append(_result(str(state.get("output") or state.get("error") or ""), state["status"] == "error"))
        return lines
    if kind == "opencode-error":
        error = payload.get("error")
        message = (error.get("data") or {}).get("message") if isinstance(error, dict) else error
        return [Line(ERROR, str(message or payload.get("message") or "opencode failed"))]
    return []


def _cursor(kind: str, payload: dict[str, Any]) -> list[Line]:
    if kind == "cursor-assistant":
        return [Line(ASSISTANT, _text_of((payload.get("message") or {}).get("content")))]
    if kind == "cursor-tool_call" and payload.get("subtype") == "started":
        call = payload.get("tool_call") or {}
        name = next(iter(call), "tool")
        return [Line(TOOL, tool_summary(name.removesuffix("ToolCall"), (call.get(name) or {}).get("args")))]
    if kind == "cursor-error":
        return [Line(ERROR, str(payload.get("message") or payload.get("result") or "cursor-agent failed"))]
    return []


def lines_of(event: dict[str, Any]) -> list[Line]:
    """The lines one AgentEvent shows (none for what a person need not see)."""
    kind = str(event.get("type") or "")
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    if kind.startswith("claude-"):
        found = _claude(kind, payload)
    elif kind in ("event_msg", "response_item"):
        found = _codex(kind, payload)
    elif kind.startswith("opencode-"):
        found = _opencode(kind, payload)
    elif kind.startswith("cursor-"):
        found = _cursor(kind, payload)
    else:
        found = []
    return [line for line in found if line.text.strip()]

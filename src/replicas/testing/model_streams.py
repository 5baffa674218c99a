"""Render scripted steps as the wire format of each model API (pure functions, no I/O).

- Anthropic Messages: content blocks, the streaming SSE events (message_start, content_block_start /
  delta / stop, message_delta, message_stop) and the non-streaming body.
- OpenAI Responses: output items (message, function_call, reasoning), the streaming events
  (response.created, response.output_item.added / done, response.completed) and the non-streaming body.

Tools are named after what the agent offered in its request, so one script drives several CLIs:
`ShellCall` becomes `Bash` (Claude Code), `bash` (opencode) or `exec_command` (Codex).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from replicas.testing.script import ContentStep, ShellCall, Text, Thinking, ToolCall, WriteFile


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def estimate_tokens(body: Any) -> int:
    return max(1, len(json.dumps(body, default=str)) // 4)


def offered_tools(body: dict) -> dict[str, dict]:
    """The request's tools by lower-cased name: the `tools` field, and for Codex's code mode the
    `additional_tools` input items, namespaces flattened."""
    tools: dict[str, dict] = {}

    def add(entries: list) -> None:
        for tool in entries or []:
            if not isinstance(tool, dict):
                continue
            if tool.get("type") == "namespace":
                add(tool.get("tools") or [])
                continue
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if name:
                tools.setdefault(name.lower(), tool)

    add(body.get("tools") or [])
    items = body.get("input")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            add(item.get("tools") or [])
    return tools


def _tool_properties(tool: dict) -> dict:
    schema = tool.get("input_schema") or tool.get("parameters") or {}
    return schema.get("properties") or {}


# --- Anthropic Messages ------------------------------------------------------------------------------


def anthropic_tool_use(step: ContentStep, body: dict) -> tuple[str, dict]:
    """The (name, input) of the tool_use block a tool step becomes for this request."""
    tools = offered_tools(body)
    if isinstance(step, ToolCall):
        offered = tools.get(step.tool.lower())
        return (offered["name"] if offered else step.tool), dict(step.input)
    if isinstance(step, WriteFile) and "write" in tools:
        write = tools["write"]
        path_key = "filePath" if "filePath" in _tool_properties(write) else "file_path"
        return write["name"], {path_key: step.path, "content": step.content}
    command = step.cmd if isinstance(step, ShellCall) else step.as_shell()
    bash = tools.get("bash")
    return (bash["name"] if bash else "Bash"), {"command": command, "description": "Run a shell command"}


def anthropic_blocks(steps: list[ContentStep], body: dict) -> list[dict]:
    blocks: list[dict] = []
    for step in steps:
        if isinstance(step, Text):
            blocks.append({"type": "text", "text": step.text})
        elif isinstance(step, Thinking):
            blocks.append({"type": "thinking", "thinking": step.text, "signature": "scripted-signature"})
        else:
            name, tool_input = anthropic_tool_use(step, body)
            blocks.append({"type": "tool_use", "id": _id("toolu"), "name": name, "input": tool_input})
    return blocks


def _stop_reason(blocks: list[dict]) -> str:
    return "tool_use" if blocks and blocks[-1]["type"] == "tool_use" else "end_turn"


def anthropic_message(blocks: list[dict], model: str, input_tokens: int) -> dict:
    """The non-streaming Messages response body."""
    return {
        "id": _id("msg"), "type": "message", "role": "assistant", "model": model, "content": blocks,
        "stop_reason": _stop_reason(blocks), "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": estimate_tokens(blocks),
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def anthropic_events(blocks: list[dict], model: str, input_tokens: int) -> Iterator[str]:
    """The streaming Messages response, one SSE event string at a time."""
    message = anthropic_message([], model, input_tokens)
    message["stop_reason"] = None
    message["usage"]["output_tokens"] = 1
    yield sse("message_start", {"type": "message_start", "message": message})
    yield sse("ping", {"type": "ping"})
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start, deltas = {"type": "text", "text": ""}, [{"type": "text_delta", "text": block["text"]}]
        elif block["type"] == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]},
                      {"type": "signature_delta", "signature": block["signature"]}]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        yield sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        for delta in deltas:
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield sse("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": _stop_reason(blocks), "stop_sequence": None},
                                "usage": {"output_tokens": estimate_tokens(blocks)}})
    yield sse("message_stop", {"type": "message_stop"})


def anthropic_error(status: int, message: str) -> dict:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
            529: "overloaded_error"}.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# --- OpenAI Responses --------------------------------------------------------------------------------


def openai_function_call(step: ContentStep, body: dict) -> tuple[str, dict | str]:
    """The (name, arguments) of the call a tool step becomes for this request; arguments are a string
    for a custom tool (a `custom_tool_call` item), an object for a function."""
    tools = offered_tools(body)
    if isinstance(step, ToolCall):
        offered = tools.get(step.tool.lower())
        return (offered["name"] if offered else step.tool), dict(step.input)
    command = step.cmd if isinstance(step, ShellCall) else step.as_shell()
    if "exec_command" not in tools and tools.get("exec", {}).get("type") == "custom":
        # Codex's code mode offers one JavaScript tool that reaches the others through `tools.*`.
        script = f"const result = await tools.exec_command({{cmd: {json.dumps(command)}}});\ntext(result);"
        return "exec", script
    if "exec_command" in tools or "shell" not in tools:
        return "exec_command", {"cmd": command}
    return "shell", {"command": ["bash", "-lc", command]}


def openai_items(steps: list[ContentStep], body: dict) -> list[dict]:
    items: list[dict] = []
    for step in steps:
        if isinstance(step, Text):
            items.append({"id": _id("msg"), "type": "message", "status": "completed", "role": "assistant",
                          "content": [{"type": "output_text", "text": step.text, "annotations": []}]})
        elif isinstance(step, Thinking):
            items.append({"id": _id("rs"), "type": "reasoning",
                          "summary": [{"type": "summary_text", "text": step.text}]})
        else:
            name, arguments = openai_function_call(step, body)
            if isinstance(arguments, str):
                items.append({"id": _id("ctc"), "type": "custom_tool_call", "status": "completed",
                              "call_id": _id("call"), "name": name, "input": arguments})
            else:
                items.append({"id": _id("fc"), "type": "function_call", "status": "completed",
                              "call_id": _id("call"), "name": name, "arguments": json.dumps(arguments)})
    return items


def openai_response(items: list[dict], model: str, input_tokens: int, status: str = "completed") -> dict:
    output_tokens = estimate_tokens(items) if items else 0
    return {
        "id": _id("resp"), "object": "response", "created_at": int(time.time()), "status": status,
        "model": model, "output": items,
        "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": input_tokens + output_tokens},
    }


def _in_progress(item: dict) -> dict:
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    if item["type"] == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    if item["type"] == "custom_tool_call":
        return {**item, "status": "in_progress", "input": ""}
    return {**item, "summary": []}


def openai_events(items: list[dict], model: str, input_tokens: int) -> Iterator[str]:
    """The streaming Responses answer, one SSE event string at a time."""
    response = openai_response([], model, input_tokens, status="in_progress")
    sequence = iter(range(1_000_000))
    yield sse("response.created", {"type": "response.created", "sequence_number": next(sequence),
                                   "response": response})
    for index, item in enumerate(items):
        yield sse("response.output_item.added", {"type": "response.output_item.added",
                                                 "sequence_number": next(sequence), "output_index": index,
                                                 "item": _in_progress(item)})
        if item["type"] == "message":
            text = item["content"][0]["text"]
            yield sse("response.output_text.delta", {"type": "response.output_text.delta",
                                                     "sequence_number": next(sequence), "item_id": item["id"],
                                                     "output_index": index, "content_index": 0,
                                                     "delta": text})
            yield sse("response.output_text.done", {"type": "response.output_text.done",
                                                    "sequence_number": next(sequence), "item_id": item["id"],
                                                    "output_index": index, "content_index": 0, "text": text})
        elif item["type"] == "function_call":
            yield sse("response.function_call_arguments.done",
                      {"type": "response.function_call_arguments.done", "sequence_number": next(sequence),
                       "item_id": item["id"], "output_index": index, "arguments": item["arguments"]})
        yield sse("response.output_item.done", {"type": "response.output_item.done",
                                                "sequence_number": next(sequence), "output_index": index,
                                                "item": item})
    done = openai_response(items, model, input_tokens)
    yield sse("response.completed", {"type": "response.completed", "sequence_number": next(sequence),
                                     "response": done})


def openai_error(status: int, message: str) -> dict:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}

"""The scripted model server alone, driven with httpx the way the agent CLIs drive it."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from replicas.testing import Fail, Hang, ScriptedModelServer, ShellCall, Text, Thinking, ToolCall, WriteFile
from replicas.testing.script import group_responses

CLAUDE_TOOLS = [{"name": "Bash", "input_schema": {"properties": {"command": {}}}},
                {"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}}]
OPENCODE_TOOLS = [{"name": "bash", "input_schema": {"properties": {"command": {}}}},
                  {"name": "write", "input_schema": {"properties": {"filePath": {}, "content": {}}}}]
CODEX_TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}}]


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def anthropic_body(prompt: str = "make a file", tools=CLAUDE_TOOLS, history: list | None = None, **extra) -> dict:
    messages = history or [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    return {"model": "claude-sonnet-4-5", "stream": True, "max_tokens": 1000, "tools": tools,
            "messages": messages, **extra}


def tool_result(history: list, response_blocks: list, output: str = "ok") -> list:
    tool_use = next(block for block in response_blocks if block["type"] == "tool_use")
    return history + [{"role": "assistant", "content": response_blocks},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                                    "content": output}]}]


def blocks_of(events: list[tuple[str, dict]]) -> list[dict]:
    """Reassemble the content blocks of a streamed Messages response."""
    blocks: dict[int, dict] = {}
    for name, data in events:
        if name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                block["input"] = json.loads(delta["partial_json"])
    return [blocks[index] for index in sorted(blocks)]


@pytest.fixture
async def model():
    async with ScriptedModelServer() as server:
        yield server


@pytest.fixture
async def http(model):
    async with httpx.AsyncClient(base_url=model.base_url, timeout=10) as client:
        yield client


def test_steps_group_into_responses_that_end_at_tool_calls():
    responses = group_responses([Thinking("hmm"), Text("writing"), WriteFile("/a", "x"), Fail(), Text("done")])
    assert responses == [[Thinking("hmm"), Text("writing"), WriteFile("/a", "x")], Fail(), [Text("done")]]
    assert group_responses([ShellCall("ls")]) == [[ShellCall("ls")], [Text("Done.")]]


async def test_anthropic_stream_plays_a_tool_call_then_the_final_text(model, http):
    model.add_turn(Thinking("plan"), ShellCall("echo hi"), Text("done"))
    body = anthropic_body()
    response = await http.post("/v1/messages?beta=true", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    blocks = blocks_of(events)
    assert blocks[0]["type"] == "thinking" and blocks[0]["thinking"] == "plan"
    assert blocks[1]["name"] == "Bash" and blocks[1]["input"]["command"] == "echo hi"

    response = await http.post("/v1/messages", json=anthropic_body(history=tool_result(body["messages"], blocks)))
    events = sse_events(response.text)
    assert blocks_of(events) == [{"type": "text", "text": "done"}]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert [request.kind for request in model.requests] == ["prompt", "continuation"]
    assert model.exhausted == []


async def test_tool_names_and_inputs_follow_what_the_agent_offered(model, http):
    model.add_turn(WriteFile("/tmp/x.txt", "hi"), Text("done"))
    response = await http.post("/v1/messages", json=anthropic_body(tools=OPENCODE_TOOLS, stream=False))
    block = response.json()["content"][0]
    assert block["name"] == "write" and block["input"] == {"filePath": "/tmp/x.txt", "content": "hi"}
    model.add_turn(WriteFile("/tmp/y.txt", "yo"))
    response = await http.post("/v1/messages", json=anthropic_body("second", stream=False))
    assert response.json()["content"][0]["input"] == {"file_path": "/tmp/y.txt", "content": "yo"}


async def test_non_streaming_messages_and_count_tokens(model, http):
    model.add_turn(Text("hello"))
    response = await http.post("/v1/messages", json=anthropic_body(stream=False))
    assert response.json()["content"] == [{"type": "text", "text": "hello"}]
    assert response.json()["stop_reason"] == "end_turn"
    response = await http.post("/v1/messages/count_tokens", json={"model": "m", "messages": [{"role": "user",
                                                                                              "content": "hi"}]})
    assert response.json()["input_tokens"] > 0


async def test_side_requests_get_an_answer_without_moving_the_script(model, http):
    model.add_turn(Text("the real answer"))
    title = await http.post("/v1/messages", json={"model": "claude-haiku-4-5", "stream": False, "max_tokens": 50,
                                                  "messages": [{"role": "user", "content": "title?"}]})
    assert title.json()["content"][0]["text"]
    response = await http.post("/v1/messages", json=anthropic_body(stream=False))
    assert response.json()["content"][0]["text"] == "the real answer"
    assert [request.kind for request in model.requests] == ["side", "prompt"]
    assert model.side_requests()[0].model == "claude-haiku-4-5"


async def test_a_retried_request_gets_the_same_step_again(model, http):
    model.add_turn(ShellCall("ls"), Text("done"))
    first = await http.post("/v1/messages", json=anthropic_body(stream=False))
    again = await http.post("/v1/messages", json=anthropic_body(stream=False))
    assert first.json()["content"][0]["input"] == again.json()["content"][0]["input"]
    assert [request.turn for request in model.requests] == [0, 0]


async def test_a_limited_failure_gives_way_to_the_next_response(model, http):
    model.add_turn(Fail(status=529, message="overloaded", times=2), Text("made it"))
    statuses = [(await http.post("/v1/messages", json=anthropic_body(stream=False))) for _ in range(3)]
    assert [response.status_code for response in statuses] == [529, 529, 200]
    assert statuses[0].json()["error"]["type"] == "overloaded_error"
    assert statuses[2].json()["content"][0]["text"] == "made it"


async def test_an_endless_failure_lasts_until_the_next_prompt(model, http):
    model.add_turn(Fail(status=500))
    model.add_turn(Text("recovered"))
    for _ in range(3):
        assert (await http.post("/v1/messages", json=anthropic_body("one", stream=False))).status_code == 500
    history = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    response = await http.post("/v1/messages", json=anthropic_body(history=history, stream=False))
    assert response.json()["content"][0]["text"] == "recovered"


async def test_a_hang_answers_nothing_until_its_time_is_up(model, http):
    model.add_turn(Hang(seconds=0.5))
    started = time.monotonic()
    response = await http.post("/v1/messages", json=anthropic_body(stream=False))
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 504


async def test_stopping_the_server_releases_a_hanging_request():
    server = ScriptedModelServer([[Hang()]]).start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        pending = asyncio.create_task(client.post("/v1/messages", json=anthropic_body(stream=False)))
        while not server.requests:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        with pytest.raises(httpx.HTTPError):
            (await pending).raise_for_status()
    assert time.monotonic() - started < 5


async def test_recorded_requests_show_model_system_prompt_images_and_history(model, http):
    model.add_turn(Text("I see it"))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    history = [{"role": "user", "content": [{"type": "text", "text": "what is this"}, image]}]
    await http.post("/v1/messages", json=anthropic_body(history=history, stream=False,
                                                        system=[{"type": "text", "text": "You are Claude."}],
                                                        thinking={"type": "enabled", "budget_tokens": 1024}))
    request = model.model_requests()[0]
    assert request.model == "claude-sonnet-4-5"
    assert request.system_text == "You are Claude."
    assert request.images() == [image]
    assert request.body["thinking"]["budget_tokens"] == 1024
    assert "what is this" in request.conversation_text()
    assert request.tool_names == ["Bash", "Write"]


async def test_openai_responses_stream_a_function_call_then_a_message(model, http):
    model.add_turn(ShellCall("touch a.txt"), Text("created"))
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "make a.txt"}]}
    body = {"model": "gpt-5", "stream": True, "tools": CODEX_TOOLS, "input": [user],
            "reasoning": {"effort": "high"}}
    events = sse_events((await http.post("/v1/responses", json=body)).text)
    names = [name for name, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    call = next(data["item"] for name, data in events if name == "response.output_item.done")
    assert call["type"] == "function_call" and call["name"] == "exec_command"
    assert json.loads(call["arguments"]) == {"cmd": "touch a.txt"}
    assert events[-1][1]["response"]["usage"]["total_tokens"] > 0

    body["input"] = [user, call, {"type": "function_call_output", "call_id": call["call_id"], "output": ""}]
    events = sse_events((await http.post("/v1/responses", json=body)).text)
    message = next(data["item"] for name, data in events if name == "response.output_item.done")
    assert message["type"] == "message" and message["content"][0]["text"] == "created"
    assert model.requests[0].body["reasoning"]["effort"] == "high"


async def test_codex_code_mode_gets_a_javascript_exec_call(model, http):
    model.add_turn(ShellCall("echo hi"))
    additional = {"type": "additional_tools", "role": "developer", "tools": [
        {"type": "namespace", "name": "functions", "tools": [{"type": "custom", "name": "exec"}]}]}
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}
    body = {"model": "gpt-6", "stream": False, "input": [additional, user]}
    item = (await http.post("/v1/responses", json=body)).json()["output"][0]
    assert item["type"] == "custom_tool_call" and item["name"] == "exec"
    assert 'tools.exec_command({cmd: "echo hi"})' in item["input"]
    assert model.requests[0].kind == "prompt"


async def test_models_list_and_unknown_paths(model, http):
    listing = (await http.get("/v1/models")).json()
    assert {entry["id"] for entry in listing["data"]} >= {"claude-sonnet-4-5", "gpt-5"}
    assert (await http.get("/api/hello")).status_code == 404


async def test_a_script_that_runs_out_says_so(model, http):
    response = await http.post("/v1/messages", json=anthropic_body(stream=False))
    assert "no more turns" in response.json()["content"][0]["text"]
    assert len(model.exhausted) == 1


def test_the_server_works_as_a_plain_context_manager():
    with ScriptedModelServer([[ToolCall("Read", {"file_path": "/etc/hostname"})]]) as server:
        response = httpx.post(f"{server.base_url}/v1/messages", json=anthropic_body(stream=False))
        assert response.json()["content"][0]["name"] == "Read"  # not offered: the name is kept as given

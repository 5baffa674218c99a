"""Command lines, environments and event wrapping of the agent drivers: pure functions, no CLI needed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from replicas.engine.agents import driver_class
from replicas.engine.agents.base import TurnRequest, TurnState
from replicas.engine.agents.claude import build_claude_argv, build_claude_env, build_claude_stdin, wrap_claude_line
from replicas.engine.agents.codex import (
    CodexTranslator,
    build_codex_argv,
    build_codex_env,
    build_codex_stdin,
    codex_provider_overrides,
    codex_reasoning_effort,
)
from replicas.engine.agents.cursor import (
    MAX_ARGUMENT_BYTES,
    CursorDriver,
    build_cursor_argv,
    check_cursor_prompt,
    wrap_cursor_line,
)
from replicas.engine.agents.images import write_images
from replicas.engine.agents.install import (
    PACKAGES,
    binary_path,
    check,
    find_binary,
    npm_install_argv,
    tools_dir,
)
from replicas.engine.agents.opencode import (
    build_opencode_argv,
    build_opencode_config,
    build_opencode_env,
    build_opencode_stdin,
    opencode_model,
    wrap_opencode_line,
)
from tests.contract import validate_schema

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
URL_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
ENV = {"PATH": "/usr/bin", "HOME": "/home/ws", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9000",
       "ANTHROPIC_API_KEY": "sk-ant", "OPENAI_BASE_URL": "http://127.0.0.1:9000/v1", "OPENAI_API_KEY": "sk-oai"}
# Prompts that a shell, an argument parser or a careless join would change (the real CLIs get them in
# tests/agents/test_prompt_fidelity.py).
PROMPT_CASES = {
    "quotes": """Say "hi" and 'bye', then "it's" """,
    "backslashes": "C:\\temp\\new and \\n is no newline, nor \\\" or \\\\",
    "dollars": "echo $HOME ${PATH} $((6*7)) $(whoami) $1",
    "backticks": "run `ls -la` or ```sh\necho `date`\n```",
    "newlines": "Work\nRUN: echo X-$((6*7))",
    "crlf": "line one\r\nline two\r\n\r\nend",
    "trailing newline": "ends with a newline\n",
    "leading --help": "--help",
    "leading -x": "-x foo",
    "non-ascii": "héllo — 日本語 🚀",
    "100 KB": "".join(f"line {n:05d}: the quick brown fox jumps over the lazy dog $x `y` \"z\"\n"
                      for n in range(1600)),
}


def request(**fields) -> TurnRequest:
    return TurnRequest(**{"prompt": "fix the bug", "cwd": Path("/home/ws/workspaces/repo"), "env": ENV, **fields})


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# --- Claude Code ----------------------------------------------------------------------------------


def test_claude_first_turn_streams_json_and_skips_permissions():
    argv = build_claude_argv(request(), "claude")
    assert argv[:5] == ["claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert "--dangerously-skip-permissions" in argv and "--resume" not in argv
    assert after(argv, "--input-format") == "stream-json" and "fix the bug" not in argv
    message = json.loads(build_claude_stdin(request()))
    assert message["message"] == {"role": "user", "content": [{"type": "text", "text": "fix the bug"}]}


def test_claude_follow_up_resumes_and_maps_model_effort_plan_and_fast_mode():
    argv = build_claude_argv(request(resume_session_id="sess-1", model="claude-opus-4-6", plan_mode=True,
                                     thinking_level="max", fast_mode=True), "claude")
    assert after(argv, "--resume") == "sess-1"
    assert after(argv, "--permission-mode") == "plan" and "--dangerously-skip-permissions" not in argv
    assert after(argv, "--model") == "claude-opus-4-6"
    assert after(argv, "--effort") == "max"
    assert json.loads(after(argv, "--settings")) == {"fastMode": True}


@pytest.mark.parametrize(("level", "effort"), [("low", "low"), ("medium", "medium"), ("high", "high"),
                                               ("xhigh", "xhigh"), ("max", "max"), ("ultracode", "max")])
def test_claude_thinking_levels_become_effort(level, effort):
    assert after(build_claude_argv(request(thinking_level=level), "claude"), "--effort") == effort


def test_claude_images_go_on_stdin_as_a_stream_json_user_message():
    turn = request(images=[IMAGE, URL_IMAGE])
    argv = build_claude_argv(turn, "claude")
    assert after(argv, "--input-format") == "stream-json" and "fix the bug" not in argv
    message = json.loads(build_claude_stdin(turn))
    assert message["type"] == "user"
    content = message["message"]["content"]
    assert content[0] == {"type": "text", "text": "fix the bug"}
    assert [block["source"] for block in content[1:]] == [IMAGE["source"], URL_IMAGE["source"]]


def test_claude_env_quiets_the_cli_and_allows_skipping_permissions_as_root():
    env = build_claude_env(request(), is_root=True, max_retries=1, api_timeout=5)
    assert env["IS_SANDBOX"] == "1" and env["CLAUDE_CODE_MAX_RETRIES"] == "1" and env["API_TIMEOUT_MS"] == "5000"
    assert env["DISABLE_AUTOUPDATER"] == "1" and env["ANTHROPIC_API_KEY"] == "sk-ant"
    assert "IS_SANDBOX" not in build_claude_env(request(), is_root=False)


def test_claude_lines_become_contract_events():
    assistant = {"type": "assistant", "session_id": "s", "parent_tool_use_id": None, "message": {"content": [
        {"type": "thinking", "thinking": "let me see", "signature": "x"},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}}
    event = wrap_claude_line(assistant)
    assert event.type == "claude-assistant"
    assert event.payload["message"]["content"][0]["text"] == "let me see"
    validate_schema(event.to_dict(), "AgentEvent")
    for line in ({"type": "system", "subtype": "init", "session_id": "s"},
                 {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
                                                           "content": "a.txt"}]}},
                 {"type": "result", "subtype": "success", "is_error": False, "result": "done"}):
        validate_schema(wrap_claude_line(line).to_dict(), "AgentEvent")
    assert wrap_claude_line({"type": "stream_event", "event": {}}) is None


def test_a_claude_api_error_result_is_marked_as_failed():
    event = wrap_claude_line({"type": "result", "subtype": "success", "is_error": True,
                              "result": "API Error: 500"})
    assert event.payload["subtype"] == "error_during_execution"
    assert event.payload["errors"] == ["API Error: 500"]
    validate_schema(event.to_dict(), "AgentEvent")
    state = TurnState()
    driver_class("claude")().translate({"type": "result", "subtype": "success", "is_error": True,
                                        "result": "API Error: 500", "session_id": "s1"}, state)
    assert state.error == "API Error: 500" and state.error_emitted and state.session_id == "s1"


# --- Codex ----------------------------------------------------------------------------------------


def test_codex_first_turn_uses_a_custom_provider_and_bypasses_its_sandbox():
    argv = build_codex_argv(request(), "codex")
    assert argv[:4] == ["codex", "exec", "--json", "--skip-git-repo-check"]
    assert "model_provider=replicas" in argv
    provider = next(value for value in argv if value.startswith("model_providers.replicas="))
    assert 'base_url="http://127.0.0.1:9000/v1"' in provider and 'wire_api="responses"' in provider
    assert 'env_key="OPENAI_API_KEY"' in provider and "sk-oai" not in " ".join(argv)
    assert "--dangerously-bypass-approvals-and-sandbox" in argv
    assert argv[-2:] == ["--", "-"] and build_codex_stdin(request()) == b"fix the bug"


def test_codex_follow_up_resumes_the_thread():
    argv = build_codex_argv(request(resume_session_id="thread-1", model="gpt-5"), "codex")
    assert argv[:3] == ["codex", "exec", "resume"]
    assert argv[-3:] == ["--", "thread-1", "-"]
    assert after(argv, "--model") == "gpt-5"


def test_codex_without_a_base_url_keeps_its_own_provider():
    assert codex_provider_overrides({"OPENAI_API_KEY": "k"}) == []
    overrides = codex_provider_overrides(ENV, max_retries=0, stream_idle_timeout=2.5)
    assert "request_max_retries=0" in overrides[-1] and "stream_idle_timeout_ms=2500" in overrides[-1]


def test_codex_plan_mode_is_read_only_with_a_planning_instruction():
    turn = request(plan_mode=True)
    argv = build_codex_argv(turn, "codex")
    assert 'sandbox_mode="read-only"' in argv and 'approval_policy="never"' in argv
    assert "--dangerously-bypass-approvals-and-sandbox" not in argv
    stdin = build_codex_stdin(turn).decode()
    assert stdin.startswith("You are in plan mode") and stdin.endswith("\n\nfix the bug")


@pytest.mark.parametrize(("level", "effort"), [("low", "low"), ("medium", "medium"), ("high", "high"),
                                               ("xhigh", "xhigh"), ("max", "xhigh"), ("ultra", "xhigh")])
def test_codex_thinking_levels_become_reasoning_effort(level, effort):
    assert codex_reasoning_effort(level) == effort
    assert f'model_reasoning_effort="{effort}"' in build_codex_argv(request(thinking_level=level), "codex")


def test_codex_fast_goal_and_images():
    turn = request(fast_mode=True, goal_mode=True, images=[IMAGE, URL_IMAGE])
    argv = build_codex_argv(turn, "codex", [Path("/home/ws/.replicas/images/a.png")])
    assert 'service_tier="fast"' in argv and after(argv, "--enable") == "goals"
    assert "--image=/home/ws/.replicas/images/a.png" in argv and argv[-2:] == ["--", "-"]
    stdin = build_codex_stdin(turn).decode()
    assert stdin.startswith("Goal mode") and "\n\nfix the bug\n\nAttached images:" in stdin
    assert stdin.endswith("- https://example.com/cat.png")


def test_codex_home_is_inside_the_workspace_home():
    assert build_codex_env(request())["CODEX_HOME"] == "/home/ws/.codex"
    assert build_codex_env(request(home=Path("/data/ws1")))["CODEX_HOME"] == "/data/ws1/.codex"


def test_codex_items_become_session_file_events():
    translator, state = CodexTranslator(), TurnState()
    lines = [
        {"type": "thread.started", "thread_id": "thread-9"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "item_0", "type": "error", "message": "no model metadata"}},
        {"type": "item.completed", "item": {"id": "item_1", "type": "reasoning", "text": "thinking"}},
        {"type": "item.started", "item": {"id": "item_2", "type": "command_execution", "command": "ls",
                                          "status": "in_progress"}},
        {"type": "item.completed", "item": {"id": "item_2", "type": "command_execution", "command": "ls",
                                            "aggregated_output": "a.txt\n", "exit_code": 0}},
        {"type": "item.completed", "item": {"id": "item_3", "type": "file_change", "status": "completed",
                                            "changes": [{"path": "a.txt", "kind": "update"}]}},
        {"type": "item.completed", "item": {"id": "item_4", "type": "todo_list",
                                            "items": [{"text": "fix", "completed": True}]}},
        {"type": "item.completed", "item": {"id": "item_5", "type": "agent_message", "text": "done"}},
        {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 2}},
    ]
    events = [event for line in lines for event in translator.translate(line, state)]
    assert [(event.type, event.payload["type"]) for event in events] == [
        ("event_msg", "warning"), ("event_msg", "agent_reasoning"), ("response_item", "function_call"),
        ("response_item", "function_call_output"), ("response_item", "custom_tool_call"),
        ("response_item", "custom_tool_call_output"), ("response_item", "function_call"),
        ("response_item", "message")]
    assert events[0].payload["message"] == "no model metadata" and state.warnings == ["no model metadata"]
    assert json.loads(events[2].payload["arguments"]) == {"cmd": "ls"}
    assert "a.txt" in events[3].payload["output"]
    assert state.session_id == "thread-9" and state.finished and state.usage["input_tokens"] == 10
    for event in events[1:]:  # the warning is Codex's own event_msg shape: the contract's has no warning type
        validate_schema(event.to_dict(), "AgentEvent")


def test_a_failed_codex_turn_reports_its_error():
    translator, state = CodexTranslator(), TurnState()
    translator.translate({"type": "error", "message": "Reconnecting... 1/5"}, state)
    assert state.error is None
    (event,) = translator.translate({"type": "turn.failed", "error": {"message": "high demand"}}, state)
    assert event.type == "event_msg" and event.payload == {"type": "error", "message": "high demand"}
    assert state.error == "high demand" and state.error_emitted


# --- opencode -------------------------------------------------------------------------------------


def test_opencode_argv_runs_json_and_resumes_the_session():
    argv = build_opencode_argv(request(resume_session_id="ses_1", model="claude-sonnet-4-5",
                                       thinking_level="xhigh"), "opencode", [Path("/tmp/a.png")])
    assert argv[:5] == ["opencode", "run", "--format", "json", "--auto"]
    assert after(argv, "--session") == "ses_1"
    assert after(argv, "--model") == "anthropic/claude-sonnet-4-5"
    assert after(argv, "--variant") == "max"
    assert after(argv, "--file") == "/tmp/a.png"
    assert "--" not in argv and "fix the bug" not in argv  # no message argument: stdin is the message
    assert build_opencode_stdin(request()) == b"fix the bug"
    with_url = build_opencode_stdin(request(images=[URL_IMAGE])).decode()
    assert with_url.startswith("fix the bug\n\nAttached images:") and "https://example.com/cat.png" in with_url
    assert opencode_model("gpt-5") == "openai/gpt-5" and opencode_model("openrouter/x") == "openrouter/x"


def test_opencode_config_points_providers_at_the_base_urls_without_writing_keys():
    config = build_opencode_config(request())
    anthropic = config["provider"]["anthropic"]["options"]
    assert anthropic == {"baseURL": "http://127.0.0.1:9000/v1", "apiKey": "{env:ANTHROPIC_API_KEY}"}
    assert config["provider"]["openai"]["options"]["baseURL"] == "http://127.0.0.1:9000/v1"
    assert "sk-ant" not in json.dumps(config) and config["autoupdate"] is False
    assert "provider" not in build_opencode_config(request(env={"HOME": "/h"}))


def test_opencode_plan_mode_denies_edits_and_writing_commands():
    argv = build_opencode_argv(request(plan_mode=True), "opencode")
    assert after(argv, "--agent") == "plan"
    permission = build_opencode_config(request(plan_mode=True))["agent"]["plan"]["permission"]
    assert permission["edit"] == "deny" and permission["bash"]["*"] == "deny"
    assert permission["bash"]["git diff*"] == "allow"


def test_opencode_env_keeps_its_state_in_the_workspace_home():
    env = build_opencode_env(request())
    assert env["XDG_DATA_HOME"] == "/home/ws/.local/share" and env["XDG_CONFIG_HOME"] == "/home/ws/.config"
    assert env["XDG_CACHE_HOME"] == "/home/ws/.cache" and env["XDG_STATE_HOME"] == "/home/ws/.local/state"
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"]) == build_opencode_config(request())
    assert env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"


def test_opencode_lines_become_contract_events():
    assert wrap_opencode_line({"type": "text", "part": {"text": "hi"}}).type == "opencode-part-text"
    assert wrap_opencode_line({"type": "tool_use", "part": {}}).type == "opencode-part-tool"
    assert wrap_opencode_line({"type": "reasoning", "part": {}}).type == "opencode-part-reasoning"
    assert wrap_opencode_line({"type": "step_finish", "part": {}}).type == "opencode-step_finish"
    event = wrap_opencode_line({"type": "error", "sessionID": "s", "error": {"name": "APIError"}})
    assert event.type == "opencode-error"
    validate_schema(event.to_dict(), "AgentEvent")
    state = TurnState()
    driver_class("opencode")().translate({"type": "error", "sessionID": "ses_2",
                                          "error": {"name": "APIError", "data": {"message": "boom"}}}, state)
    assert state.error == "boom" and state.session_id == "ses_2"


# --- cursor ---------------------------------------------------------------------------------------


def test_cursor_argv_and_lines():
    argv = build_cursor_argv(request(resume_session_id="c1", model="gpt-5"), "cursor-agent")
    assert argv[:4] == ["cursor-agent", "-p", "--output-format", "stream-json"] and "--force" in argv
    assert after(argv, "--resume") == "c1" and argv[-2:] == ["--", "fix the bug"]
    assert "--mode=plan" in build_cursor_argv(request(plan_mode=True), "cursor-agent")
    assert wrap_cursor_line({"type": "assistant", "message": {}}).type == "cursor-assistant"
    assert wrap_cursor_line({"type": "tool_call", "subtype": "started"}).type == "cursor-tool_call"
    assert wrap_cursor_line({"type": "result", "subtype": "success"}).type == "cursor-status"
    assert wrap_cursor_line({"type": "result", "subtype": "error", "is_error": True}).type == "cursor-error"
    assert wrap_cursor_line({"type": "user"}) is None
    validate_schema(wrap_cursor_line({"type": "thinking", "text": "x"}).to_dict(), "AgentEvent")


async def test_cursor_refuses_a_prompt_too_long_for_one_argument(tmp_path):
    check_cursor_prompt("x" * MAX_ARGUMENT_BYTES)
    with pytest.raises(OSError, match="cursor-agent takes it as one command-line argument"):
        check_cursor_prompt("é" * (MAX_ARGUMENT_BYTES // 2 + 1))
    with pytest.raises(OSError, match="NUL"):
        check_cursor_prompt("a\0b")
    fake = tmp_path / "cursor-agent"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    turn = CursorDriver(fake).run_turn(request(prompt="x" * 200_000, cwd=tmp_path,
                                               env={"PATH": "/usr/bin", "HOME": str(tmp_path)}))
    events = [event async for event in turn]
    assert [event.type for event in events] == ["cursor-error"]
    assert turn.error.startswith("cannot start cursor-agent: [Errno 7] the prompt is 200000 bytes")


async def test_cursor_without_the_cli_ends_the_turn_with_a_clear_error(tmp_path):
    turn = CursorDriver().run_turn(request(cwd=tmp_path, env={"PATH": str(tmp_path), "HOME": str(tmp_path)}))
    events = [event async for event in turn]
    assert [event.type for event in events] == ["cursor-error"]
    assert events[0].payload["message"] == "cursor-agent is not installed"
    assert turn.error == "cursor-agent is not installed"
    validate_schema(events[0].to_dict(), "AgentEvent")


# --- images and installation ----------------------------------------------------------------------


def test_base64_images_are_written_as_files(tmp_path):
    paths = write_images([IMAGE, URL_IMAGE, {"type": "image", "source": {"type": "base64", "data": "%%"}}],
                         tmp_path / "images")
    assert len(paths) == 1 and paths[0].suffix == ".png"
    assert paths[0].read_bytes() == base64.b64decode(PNG)


def test_tools_dir_defaults_to_the_data_dir_unless_overridden(tmp_path):
    assert tools_dir(tmp_path, environ={}) == tmp_path / "tools"
    assert tools_dir(tmp_path, environ={"REPLICAS_TOOLS_DIR": "/opt/tools"}) == Path("/opt/tools")


def test_npm_installs_each_pinned_package_into_its_own_prefix(tmp_path):
    assert PACKAGES["claude"].version == "2.1.330" and PACKAGES["codex"].version == "0.169.0"
    assert PACKAGES["opencode"].version == "1.18.33"
    argv = npm_install_argv(tmp_path, PACKAGES["codex"])
    assert argv[:4] == ["npm", "install", "--prefix", str(tmp_path / "codex")]
    assert argv[-1] == "@openai/codex@0.169.0"
    assert binary_path(tmp_path, "claude") == tmp_path / "claude" / "node_modules" / ".bin" / "claude"


async def test_check_reports_what_is_missing(tmp_path):
    statuses = {status.agent: status for status in await check(tmp_path)}
    assert set(statuses) == {"claude", "codex", "opencode", "cursor"}
    assert not statuses["claude"].ok and "not installed" in statuses["claude"].missing[0]
    assert statuses["codex"].pinned == "0.169.0" and statuses["codex"].path is None
    assert find_binary("codex", tmp_path, path=str(tmp_path)) is None


# --- every driver passes the prompt unchanged ------------------------------------------------------


@pytest.mark.parametrize("prompt", PROMPT_CASES.values(), ids=PROMPT_CASES.keys())
def test_claude_codex_and_opencode_take_the_prompt_on_stdin_byte_for_byte(prompt):
    for resume in (None, "session-1"):
        turn = request(prompt=prompt, resume_session_id=resume)
        claude = build_claude_argv(turn, "claude")
        codex = build_codex_argv(turn, "codex")
        opencode = build_opencode_argv(turn, "opencode")
        for argv in (claude, codex, opencode):
            assert not any(prompt in value for value in argv)
        stdin = build_claude_stdin(turn)
        assert stdin.endswith(b"\n") and stdin.count(b"\n") == 1  # one JSON line, whatever the prompt holds
        assert json.loads(stdin)["message"]["content"] == [{"type": "text", "text": prompt}]
        assert build_codex_stdin(turn) == prompt.encode()
        assert codex[-1] == "-"
        assert build_opencode_stdin(turn) == prompt.encode()


@pytest.mark.parametrize("prompt", PROMPT_CASES.values(), ids=PROMPT_CASES.keys())
def test_cursor_takes_the_prompt_as_its_one_argument_after_the_options(prompt):
    argv = build_cursor_argv(request(prompt=prompt, resume_session_id="c1"), "cursor-agent")
    assert argv[-2:] == ["--", prompt] and argv.count(prompt) == 1
    check_cursor_prompt(prompt)  # 100 KB still fits in one argument

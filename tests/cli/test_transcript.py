"""What `replicas read` and the live view print for each agent's events. The events are made by the engine's
own drivers from lines in each CLI's protocol, so the shapes are the ones a server sends; Claude Code's are
also covered end to end (tests/cli/test_client_replicas.py)."""

from __future__ import annotations

from replicas.cli.transcript import (
    ASSISTANT,
    ERROR,
    RESULT,
    THINKING,
    TOOL,
    USER,
    Line,
    lines_of,
    one_line,
    tool_summary,
)
from replicas.engine.agents.claude import wrap_claude_line
from replicas.engine.agents.codex import codex_error_event, translate_codex_item
from replicas.engine.agents.opencode import wrap_opencode_line


def shown(events) -> list[Line]:
    return [line for event in events for line in lines_of(event.to_dict())]


def test_claude_code_text_tools_results_and_failures():
    events = [wrap_claude_line(line) for line in (
        {"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "Fix the bug"}]}},
        {"type": "assistant", "message": {"content": [
            {"type": "thinking", "thinking": "Look first."},
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "pytest -q", "timeout": 5}}]}},
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "1 failed\nE assert 1 == 2", "is_error": True}]}},
        {"type": "assistant", "message": {"content": [{"type": "text", "text": "Fixed it.\nAll green."}]}},
        {"type": "result", "subtype": "error_during_execution", "is_error": True, "errors": ["API error 500"]},
        {"type": "system", "subtype": "init", "tools": ["Bash"]},
    )]
    assert shown(events) == [
        Line(USER, "Fix the bug"), Line(THINKING, "Look first."), Line(TOOL, "Bash(pytest -q)"),
        Line(ERROR, "error: 1 failed (+1 lines)"), Line(ASSISTANT, "Fixed it.\nAll green."),
        Line(ERROR, "API error 500")]


def test_codex_commands_patches_and_messages():
    events = [
        *translate_codex_item({"type": "command_execution", "id": "c1", "command": "ls", "exit_code": 0,
                               "aggregated_output": "app.py\nREADME.md\n"}, started=False),
        *translate_codex_item({"type": "command_execution", "id": "c2", "command": "false", "exit_code": 1,
                               "aggregated_output": ""}, started=False),
        *translate_codex_item({"type": "file_change", "id": "p1", "status": "completed",
                               "changes": [{"kind": "add", "path": "health.py"}]}, started=False),
        *translate_codex_item({"type": "reasoning", "id": "r1", "text": "Plan it."}, started=False),
        *translate_codex_item({"type": "agent_message", "id": "m1", "text": "Done."}, started=False),
        codex_error_event("Codex turn failed: quota"),
    ]
    assert shown(events) == [
        Line(TOOL, "exec_command(ls)"), Line(RESULT, "app.py (+1 lines)"),
        Line(TOOL, "exec_command(false)"), Line(ERROR, "error: (no output)"),
        Line(TOOL, "apply_patch(add health.py)"), Line(RESULT, "add health.py"),
        Line(THINKING, "Plan it."), Line(ASSISTANT, "Done."), Line(ERROR, "Codex turn failed: quota")]


def test_opencode_parts():
    events = [wrap_opencode_line(line) for line in (
        {"type": "text", "part": {"type": "text", "text": "Looking."}},
        {"type": "tool_use", "part": {"tool": "bash", "state": {"status": "completed",
                                                                "input": {"command": "ls"}, "output": "a\nb"}}},
        {"type": "reasoning", "part": {"text": "hmm"}},
        {"type": "step_finish", "part": {}},
    )]
    assert shown(events) == [Line(ASSISTANT, "Looking."), Line(TOOL, "bash(ls)"), Line(RESULT, "a (+1 lines)"),
                             Line(THINKING, "hmm")]


def test_long_and_empty_things_stay_on_one_line():
    assert one_line("x" * 150, width=10) == "xxxxxxxxx…"
    assert tool_summary("Write", {"file_path": "/a/b.py", "content": "..."}) == "Write(/a/b.py)"
    assert tool_summary("Custom", {"n": 1}) == 'Custom({"n":1})'
    assert tool_summary("Nothing", {}) == "Nothing()"
    assert lines_of({"type": "claude-assistant", "payload": {"message": {"content": [{"type": "text",
                                                                                      "text": "  "}]}}}) == []
    assert lines_of({"type": "something-else", "payload": {}}) == []

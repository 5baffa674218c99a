"""Each agent's model when the request names none, and the CLIs' warnings as events in the turn.

The precedence (the request's model, then REPLICAS_DEFAULT_MODEL_<AGENT> in the turn's environment, then
the driver's shipped default, which applies at a custom endpoint only) is checked on the drivers' own
resolution; the real CLIs behind the scripted model show what reaches the wire and what they warn about.
"""

from __future__ import annotations

import pytest

from replicas.engine.agents import ClaudeDriver, CodexDriver, CursorDriver, OpencodeDriver, TurnRequest
from replicas.engine.agents.base import TurnState, default_model_variable
from replicas.engine.agents.claude import NO_TOOLS_WARNING
from replicas.testing import ShellCall, Text
from tests.agents.test_real_clis import (  # noqa: F401 - fixtures
    agent_tools,
    assert_contract,
    make_driver,
    model,
    run,
    workspace,
)

ANTHROPIC = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9/", "ANTHROPIC_API_KEY": "k"}
OPENAI = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "k"}


def resolved(driver, env: dict[str, str], asked: str | None = None) -> str | None:
    return driver.resolve_model(TurnRequest(prompt="hi", cwd=".", env={"PATH": "/usr/bin", **env}, model=asked))


def test_the_variables_are_named_after_the_agents():
    assert [default_model_variable(agent) for agent in ("claude", "codex", "opencode", "cursor")] == [
        "REPLICAS_DEFAULT_MODEL_CLAUDE", "REPLICAS_DEFAULT_MODEL_CODEX", "REPLICAS_DEFAULT_MODEL_OPENCODE",
        "REPLICAS_DEFAULT_MODEL_CURSOR"]


@pytest.mark.parametrize(("driver", "endpoint", "shipped"), [
    (ClaudeDriver(), ANTHROPIC, "claude-opus-5-5"),
    (CodexDriver(), OPENAI, "gpt-5.5"),
    (OpencodeDriver(), ANTHROPIC, "anthropic/claude-sonnet-4-6"),
    (OpencodeDriver(), OPENAI, "openai/gpt-5.5"),
    (OpencodeDriver(), {**OPENAI, **ANTHROPIC}, "anthropic/claude-sonnet-4-6"),
])
def test_request_beats_environment_beats_shipped_default_at_a_custom_endpoint(driver, endpoint, shipped):
    variable = default_model_variable(driver.provider)
    assert resolved(driver, endpoint) == shipped
    assert resolved(driver, {**endpoint, variable: "from-env"}) == "from-env"
    assert resolved(driver, {**endpoint, variable: "from-env"}, asked="asked") == "asked"
    assert resolved(driver, {**endpoint, variable: ""}) == shipped  # an empty variable names nothing


@pytest.mark.parametrize("driver", [ClaudeDriver(), CodexDriver(), OpencodeDriver(), CursorDriver()])
def test_at_the_providers_own_endpoint_the_cli_chooses_unless_told(driver):
    assert resolved(driver, {"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}) is None
    assert resolved(driver, {default_model_variable(driver.provider): "m-1"}) == "m-1"


def test_claude_warns_when_its_init_line_lists_no_tools():
    driver, state = ClaudeDriver(), TurnState()
    init = {"type": "system", "subtype": "init", "session_id": "s-1", "tools": [], "model": "m"}
    events = driver.translate(init, state)
    assert [(e.type, e.payload.get("subtype")) for e in events] == [("claude-system", "init"),
                                                                    ("claude-system", "warning")]
    assert events[1].payload["message"]["content"][0]["text"] == NO_TOOLS_WARNING
    assert state.warnings == [NO_TOOLS_WARNING]
    assert_contract(events)
    assert driver.translate({**init, "tools": ["Bash"]}, TurnState())[1:] == []


@pytest.mark.slow
async def test_codex_at_a_custom_base_url_with_no_model_is_offered_its_shell_and_runs_a_command(
        agent_tools, model, workspace):  # noqa: F811
    model.add_turn(ShellCall("echo from-the-$((6*7))-shell"), Text("ran it"))
    result = await run(make_driver("codex", agent_tools), workspace.request("Run the command"))
    assert result.turn.error is None, result.turn.error
    first = model.model_requests()[0]
    assert first.model == "gpt-5.5" and result.turn.model == "gpt-5.5"
    assert "exec_command" in first.tool_names, first.tool_names
    outputs = [e.payload["output"] for e in result.events if e.payload.get("type") == "function_call_output"]
    assert any("from-the-42-shell" in output for output in outputs), outputs
    assert result.turn.warnings == [] and model.exhausted == []


@pytest.mark.slow
async def test_codex_warning_items_become_warning_events(agent_tools, model, workspace):  # noqa: F811
    model.add_turn(Text("ok"))
    result = await run(make_driver("codex", agent_tools), workspace.request("hi", model="gpt-5"))
    assert result.turn.error is None, result.turn.error
    warnings = [e.payload for e in result.events if e.type == "event_msg" and e.payload["type"] == "warning"]
    assert len(warnings) == 1 and "gpt-5" in warnings[0]["message"], result.events
    assert "metadata" in warnings[0]["message"] and result.turn.warnings == [warnings[0]["message"]]


@pytest.mark.slow
async def test_claude_warns_about_a_model_it_does_not_know(agent_tools, model, workspace):  # noqa: F811
    model.add_turn(Text("ok"))
    model.add_turn(Text("ok again"))
    driver = make_driver("claude", agent_tools)
    unknown = await run(driver, workspace.request("hi", model="gateway-special-1"))
    assert unknown.turn.error is None, unknown.turn.error
    warnings = [e for e in unknown.events if e.type == "claude-system" and e.payload["subtype"] == "warning"]
    assert len(warnings) == 1, unknown.types
    assert "gateway-special-1" in warnings[0].payload["message"]["content"][0]["text"]
    assert_contract(unknown.events)
    known = await run(driver, workspace.request("hi"))  # the shipped default, which Claude Code knows
    assert model.model_requests()[-1].model == "claude-opus-5-5"
    assert known.turn.warnings == [] and "claude-system" in known.types

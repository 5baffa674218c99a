"""The real agent CLIs (pinned versions, installed once into a cache) driven through the scripted model.

The CLIs are installed into ~/.cache/replicas-test-tools (REPLICAS_TEST_TOOLS_DIR overrides it) on the
first run and reused afterwards. A CLI that cannot be installed fails the tests with npm's reason.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from replicas.engine.agents import ClaudeDriver, CodexDriver, OpencodeDriver, TurnRequest
from replicas.engine.agents import install as agent_install
from replicas.engine.agents.base import AgentDriver, AgentEvent, AgentTurn
from replicas.testing import Fail, Hang, ScriptedModelServer, ShellCall, Text, WriteFile
from tests.conftest import git
from tests.contract import validate_schema

pytestmark = pytest.mark.slow

TOOLS_CACHE = Path(os.environ.get("REPLICAS_TEST_TOOLS_DIR", "~/.cache/replicas-test-tools")).expanduser()
AGENTS = ["claude", "codex", "opencode"]
# opencode takes 4-6 s to start; a hang is noticed only after its idle timeout.
IDLE_TIMEOUT = {"claude": 6.0, "codex": 6.0, "opencode": 15.0}


@pytest.fixture(scope="session")
def agent_tools() -> Path:
    """The pinned CLIs, installed once into the cache directory (one pytest-xdist worker at a time)."""
    import fcntl

    TOOLS_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(TOOLS_CACHE.parent / "replicas-test-tools.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        statuses = asyncio.run(agent_install.install(TOOLS_CACHE))
    failures = [f"{status.agent}: {'; '.join(status.missing)}" for status in statuses if not status.ok]
    if failures:
        pytest.fail("cannot install the agent CLIs:\n" + "\n".join(failures))
    return TOOLS_CACHE


@pytest.fixture
async def model():
    async with ScriptedModelServer() as server:
        yield server


@dataclass
class Workspace:
    repo: Path
    home: Path
    env: dict[str, str]

    def request(self, prompt: str, **fields) -> TurnRequest:
        return TurnRequest(prompt=prompt, cwd=self.repo, env=self.env, home=self.home, **fields)


@pytest.fixture
def workspace(tmp_path, make_git_repo, model) -> Workspace:
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
           **model.anthropic_env(), **model.openai_env()}
    return Workspace(repo=make_git_repo("repo"), home=home, env=env)


def make_driver(agent: str, tools: Path, **options) -> AgentDriver:
    binary = agent_install.find_binary(agent, tools)
    options.setdefault("idle_timeout", 120.0)
    options.setdefault("kill_grace", 2.0)
    if agent == "claude":
        return ClaudeDriver(binary, max_retries=1, **options)
    if agent == "codex":
        return CodexDriver(binary, max_retries=1, **options)
    return OpencodeDriver(binary, **options)


@dataclass
class TurnResult:
    events: list[AgentEvent]
    turn: AgentTurn
    first_event_s: float | None  # message sent -> first event from the CLI itself
    elapsed_s: float

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]


async def run(driver: AgentDriver, request: TurnRequest) -> TurnResult:
    started, first, events = time.monotonic(), None, []
    async with driver.run_turn(request) as turn:
        async for event in turn:
            events.append(event)
            if first is None:
                first = time.monotonic() - started
    return TurnResult(events, turn, first, time.monotonic() - started)


def assert_contract(events: list[AgentEvent]) -> None:
    for event in events:
        if event.type == "event_msg" and event.payload.get("type") in ("error", "warning"):
            continue  # Codex's own error and warning shapes: the contract's event_msg enum has neither
        validate_schema(event.to_dict(), "AgentEvent")


def assert_succeeded(agent: str, result: TurnResult) -> None:
    assert result.turn.error is None, result.turn.error
    assert_contract(result.events)
    last = result.events[-1]
    if agent == "claude":
        assert last.type == "claude-result" and last.payload["subtype"] == "success"
    elif agent == "codex":
        assert last.type == "response_item" and last.payload["type"] == "message"
    else:
        assert last.type == "opencode-session.idle"


def final_text(agent: str, result: TurnResult) -> str:
    for event in reversed(result.events):
        payload = event.payload
        if agent == "claude" and event.type == "claude-assistant":
            return "".join(block.get("text", "") for block in payload["message"]["content"])
        if agent == "codex" and event.type == "response_item" and payload["type"] == "message":
            return payload["content"][0]["text"]
        if agent == "opencode" and event.type == "opencode-part-text":
            return payload["part"]["text"]
    return ""


def png_bytes() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


PNG_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(png_bytes()).decode()}}


@pytest.mark.parametrize("agent", AGENTS)
async def test_agent_creates_and_edits_a_file(agent, agent_tools, model, workspace):
    target = workspace.repo / "notes.txt"
    model.add_turn(WriteFile(str(target), "hello\n"), ShellCall(f"echo world >> {target}"), Text("done"))
    result = await run(make_driver(agent, agent_tools), workspace.request("Create notes.txt, then extend it"))
    assert_succeeded(agent, result)
    assert target.read_text() == "hello\nworld\n"
    assert final_text(agent, result) == "done"
    assert result.turn.session_id
    assert model.exhausted == []


@pytest.mark.parametrize("agent", AGENTS)
async def test_follow_up_resumes_the_same_session(agent, agent_tools, model, workspace):
    driver = make_driver(agent, agent_tools)
    model.add_turn(WriteFile(str(workspace.repo / "a.txt"), "one\n"), Text("first done"))
    model.add_turn(ShellCall("cat a.txt"), Text("second done"))
    first = await run(driver, workspace.request("first prompt: write a.txt"))
    assert_succeeded(agent, first)
    second = await run(driver, workspace.request("second prompt: read it back",
                                                 resume_session_id=first.turn.session_id))
    assert_succeeded(agent, second)
    assert second.turn.session_id == first.turn.session_id
    assert final_text(agent, second) == "second done"
    follow_up = [request for request in model.model_requests() if request.turn == 1]
    assert follow_up and "first prompt: write a.txt" in follow_up[0].conversation_text()
    assert "first done" in follow_up[0].conversation_text()


@pytest.mark.parametrize("agent", AGENTS)
async def test_plan_mode_makes_no_edits(agent, agent_tools, model, workspace):
    written, echoed = workspace.repo / "planned.txt", workspace.repo / "echoed.txt"
    model.add_turn(WriteFile(str(written), "x\n"), ShellCall(f"echo y > {echoed}"), Text("Here is the plan."))
    result = await run(make_driver(agent, agent_tools), workspace.request("Plan the change", plan_mode=True))
    assert result.turn.error is None, result.turn.error
    assert_contract(result.events)
    assert not written.exists() and not echoed.exists()
    assert git(workspace.repo, "status", "--porcelain") == ""


@pytest.mark.parametrize(("agent", "failure"), [("claude", "http-500"), ("claude", "hang"),
                                                ("codex", "http-500"), ("codex", "hang"),
                                                ("opencode", "hang")])
async def test_a_failing_model_ends_the_turn_with_an_error_then_the_next_turn_works(
        agent, failure, agent_tools, model, workspace):
    driver = make_driver(agent, agent_tools, idle_timeout=IDLE_TIMEOUT[agent])
    model.add_turn(Fail(status=500, message="scripted outage") if failure == "http-500" else Hang())
    model.add_turn(WriteFile(str(workspace.repo / "after.txt"), "ok\n"), Text("recovered"))
    failed = await run(driver, workspace.request("this one fails"))
    assert failed.turn.error, failed.types
    assert failed.elapsed_s < IDLE_TIMEOUT[agent] + 20
    error = failed.events[-1]
    assert error.type in ("claude-result", "event_msg", "opencode-error")
    assert_contract(failed.events)

    recovered = await run(driver, workspace.request("try again", resume_session_id=failed.turn.session_id))
    assert_succeeded(agent, recovered)
    assert final_text(agent, recovered) == "recovered"
    assert (workspace.repo / "after.txt").read_text() == "ok\n"


async def test_claude_sends_effort_images_and_model(agent_tools, model, workspace):
    driver = make_driver("claude", agent_tools)
    model.add_turn(Text("a red square"))
    model.add_turn(Text("ok"))
    first = await run(driver, workspace.request("What is in the picture?", thinking_level="low",
                                                images=[PNG_IMAGE]))
    assert_succeeded("claude", first)
    request = model.model_requests()[0]
    assert request.body["output_config"]["effort"] == "low"
    assert request.images()[0]["source"]["data"] == PNG_IMAGE["source"]["data"]
    assert "What is in the picture?" in request.conversation_text()
    second = await run(driver, workspace.request("And now?", model="claude-sonnet-4-5", thinking_level="max",
                                                 resume_session_id=first.turn.session_id))
    assert_succeeded("claude", second)
    request = model.model_requests()[-1]
    assert request.model == "claude-sonnet-4-5"
    assert request.body["thinking"]["budget_tokens"] > 30000


async def test_codex_sends_reasoning_effort_fast_mode_images_and_model(agent_tools, model, workspace):
    driver = make_driver("codex", agent_tools)
    model.add_turn(Text("a red square"))
    model.add_turn(Text("ok"))
    first = await run(driver, workspace.request("What is in the picture?", thinking_level="max", fast_mode=True,
                                                images=[PNG_IMAGE]))
    assert_succeeded("codex", first)
    user_message = driver.user_message_event(workspace.request("What is in the picture?", images=[PNG_IMAGE]))
    assert user_message.payload == {"type": "user_message", "message": "What is in the picture?",
                                    "images": [f"data:image/png;base64,{PNG_IMAGE['source']['data']}"]}
    request = model.model_requests()[0]
    assert request.body["reasoning"]["effort"] == "xhigh"
    assert request.body["service_tier"] == "priority"  # Codex's name for fast mode on the wire
    assert len(request.images()) == 1
    second = await run(driver, workspace.request("And now?", model="gpt-5",
                                                 resume_session_id=first.turn.session_id))
    assert_succeeded("codex", second)
    assert model.model_requests()[-1].model == "gpt-5"


async def test_opencode_sends_model_and_thinking_variant(agent_tools, model, workspace):
    model.add_turn(Text("ok"))
    result = await run(make_driver("opencode", agent_tools),
                       workspace.request("Think hard", model="claude-sonnet-4-5", thinking_level="max"))
    assert_succeeded("opencode", result)
    request = model.model_requests()[0]
    assert request.model == "claude-sonnet-4-5"
    assert request.body["thinking"]["budget_tokens"] > 30000
    assert model.side_requests(), "opencode asks a small model for a title"


async def test_interrupting_claude_stops_its_running_command(agent_tools, model, workspace):
    marker = "31.4159"
    model.add_turn(ShellCall(f"sleep {marker} && touch {workspace.repo / 'late.txt'}"), Text("done"))
    turn = make_driver("claude", agent_tools).run_turn(workspace.request("Run the slow command"))
    started = None
    async for event in turn:
        if event.type == "claude-assistant" and started is None:
            await asyncio.sleep(1)  # let the Bash tool start the command
            started = time.monotonic()
            await turn.interrupt()
    assert started is not None and time.monotonic() - started < 10
    assert turn.interrupted and turn.error == "interrupted"
    running = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_text():
                running.append(proc.name)
        except OSError:
            continue
    assert running == []

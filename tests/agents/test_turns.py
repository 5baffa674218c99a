"""How a turn runs, ends, fails and is interrupted, with a fake CLI (a Python script) in place of an agent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from replicas.engine.agents.base import AgentDriver, AgentEvent, Invocation, TurnRequest, TurnState


class FakeDriver(AgentDriver):
    """Runs `script` with Python; each JSON line `{"type": T}` becomes the event `fake-T`."""

    provider = "fake"
    binary_name = "fake"

    def __init__(self, script: str, **kwargs):
        super().__init__(sys.executable, **kwargs)
        self.script = textwrap.dedent(script)

    async def prepare(self, request: TurnRequest, binary: str) -> Invocation:
        return Invocation(argv=[binary, "-c", self.script], env=request.environment, cwd=request.cwd)

    def translate(self, line: dict[str, Any], state: TurnState) -> list[AgentEvent]:
        state.session_id = line.get("session") or state.session_id
        if line.get("type") == "end":
            state.finished = True
        return [AgentEvent(f"fake-{line['type']}", line)]

    def error_event(self, message: str, state: TurnState) -> AgentEvent:
        return AgentEvent("fake-error", {"message": message})

    def closing_events(self, state: TurnState) -> list[AgentEvent]:
        return [AgentEvent("fake-closed", {})]


def request(tmp_path: Path) -> TurnRequest:
    return TurnRequest(prompt="hi", cwd=tmp_path, env=dict(os.environ))


async def collect(turn) -> list[AgentEvent]:
    return [event async for event in turn]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_lines_become_events_and_the_session_id_is_kept(tmp_path):
    driver = FakeDriver("""
        import json
        print(json.dumps({"type": "init", "session": "s-1"}))
        print("a line that is not JSON")
        print(json.dumps({"type": "end"}))
    """)
    turn = driver.run_turn(request(tmp_path))
    events = await collect(turn)
    assert [event.type for event in events] == ["fake-init", "fake-end", "fake-closed"]
    assert turn.session_id == "s-1" and turn.error is None and not turn.interrupted


async def test_a_cli_that_goes_silent_is_stopped_after_the_idle_timeout(tmp_path):
    driver = FakeDriver("""
        import json, time
        print(json.dumps({"type": "init"}), flush=True)
        time.sleep(60)
    """, idle_timeout=1, kill_grace=1)
    started = time.monotonic()
    turn = driver.run_turn(request(tmp_path))
    events = await collect(turn)
    assert time.monotonic() - started < 10
    assert [event.type for event in events] == ["fake-init", "fake-error"]
    assert "no output for 1 s" in turn.error


async def test_a_crash_ends_the_turn_with_an_error_event(tmp_path):
    driver = FakeDriver("""
        import json, sys
        print(json.dumps({"type": "init"}), flush=True)
        print("boom: out of memory", file=sys.stderr)
        sys.exit(3)
    """)
    turn = driver.run_turn(request(tmp_path))
    events = await collect(turn)
    assert events[-1].type == "fake-error"
    assert turn.error == "fake exited with code 3: boom: out of memory"


async def test_a_cli_that_exits_without_finishing_its_turn_is_an_error(tmp_path):
    turn = FakeDriver("print('{\"type\": \"init\"}')").run_turn(request(tmp_path))
    events = await collect(turn)
    assert events[-1].type == "fake-error" and "without finishing" in turn.error


async def test_a_binary_that_cannot_start_is_an_error_event(tmp_path):
    driver = FakeDriver("")
    driver.binary = str(tmp_path / "missing-cli")
    turn = driver.run_turn(request(tmp_path))
    events = await collect(turn)
    assert [event.type for event in events] == ["fake-error"] and "cannot start fake" in turn.error


async def test_interrupt_kills_the_whole_process_group(tmp_path):
    driver = FakeDriver("""
        import json, subprocess, time
        child = subprocess.Popen(["sleep", "60"])
        print(json.dumps({"type": "child", "pid": child.pid}), flush=True)
        time.sleep(60)
    """, kill_grace=1)
    turn = driver.run_turn(request(tmp_path))
    events = []
    started = time.monotonic()
    async for event in turn:
        events.append(event)
        await turn.interrupt()
    assert time.monotonic() - started < 10
    assert [event.type for event in events] == ["fake-child"]
    assert turn.interrupted and turn.error == "interrupted"
    child = events[0].payload["pid"]
    for _ in range(50):
        if not alive(child):
            break
        await asyncio.sleep(0.1)
    assert not alive(child)


async def test_cancelling_the_reader_kills_the_cli(tmp_path):
    driver = FakeDriver("""
        import json, os, time
        print(json.dumps({"type": "init", "pid": os.getpid()}), flush=True)
        time.sleep(60)
    """, kill_grace=1)
    turn = driver.run_turn(request(tmp_path))
    seen: list[AgentEvent] = []

    async def read():
        async for event in turn:
            seen.append(event)

    task = asyncio.create_task(read())
    while not seen:
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    pid = seen[0].payload["pid"]
    for _ in range(50):
        if not alive(pid):
            break
        await asyncio.sleep(0.1)
    assert not alive(pid)


async def test_a_process_left_behind_holding_stdout_does_not_stall_the_turn(tmp_path):
    driver = FakeDriver("""
        import json, subprocess
        child = subprocess.Popen(["sleep", "30"])  # inherits stdout and stderr, like a server left running
        print(json.dumps({"type": "end", "pid": child.pid}), flush=True)
    """, idle_timeout=20)
    started = time.monotonic()
    turn = driver.run_turn(request(tmp_path))
    events = await collect(turn)
    os.kill(events[0].payload["pid"], signal.SIGKILL)
    assert time.monotonic() - started < 8
    assert [event.type for event in events] == ["fake-end", "fake-closed"] and turn.error is None

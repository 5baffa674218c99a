"""What the scripted model says: steps, turns, and the cursor that picks the next answer.

A script is a list of turns; a turn is a list of steps. Steps are grouped into model responses: text and
thinking accumulate, a tool step (`ToolCall`, `ShellCall`, `WriteFile`) ends a response (the agent runs
the tool and comes back with its result), and `Fail` / `Hang` are responses of their own. A turn whose
last response ends with a tool call gets a closing `Text("Done.")`.

    turns = [
        [WriteFile("/repo/hello.txt", "hi\\n"), Text("done")],     # turn 1: a tool call, then "done"
        [Fail(status=500)],                                       # turn 2: every request fails
        [ShellCall("cat hello.txt"), Text("it says hi")],          # turn 3
    ]

The cursor is driven by the requests themselves, so retries replay the same answer: a request whose
conversation ends with a new user prompt starts the next turn; one that ends with a tool result that has
not been seen moves to the next response of the current turn; anything already seen is a retry.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Text:
    """Assistant text."""

    text: str


@dataclass(frozen=True)
class Thinking:
    """A thinking block (Anthropic) or a reasoning item with a summary (OpenAI)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A call of the named tool with this input. The name matches the offered tools case-insensitively."""

    tool: str
    input: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ShellCall:
    """Run a shell command: Claude Code's `Bash`, opencode's `bash`, Codex's `exec_command`."""

    cmd: str


@dataclass(frozen=True)
class WriteFile:
    """Create a file: Claude Code's `Write`, opencode's `write`, a shell `printf` for Codex.
    Give an absolute path: Claude Code's Write tool rejects relative ones."""

    path: str
    content: str

    def as_shell(self) -> str:
        return f"printf %s {shlex.quote(self.content)} > {shlex.quote(self.path)}"


@dataclass(frozen=True)
class Fail:
    """Answer with an HTTP error instead of a response. `times=None` fails every request at this point
    of the script (retries included); `times=n` fails n requests, then plays the next response."""

    status: int = 500
    message: str = "scripted failure"
    times: int | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer (until `seconds` pass or the server stops; then drop it)."""

    seconds: float | None = None
    times: int | None = None


Step = Text | Thinking | ToolCall | ShellCall | WriteFile | Fail | Hang
ContentStep = Text | Thinking | ToolCall | ShellCall | WriteFile
TOOL_STEPS = (ToolCall, ShellCall, WriteFile)


def group_responses(turn: list[Step]) -> list[list[ContentStep] | Fail | Hang]:
    """Split a turn's steps into model responses (see the module docstring)."""
    responses: list[list[ContentStep] | Fail | Hang] = []
    current: list[ContentStep] = []
    for step in turn:
        if isinstance(step, Fail | Hang):
            if current:
                responses.append(current)
                current = []
            responses.append(step)
            continue
        current.append(step)
        if isinstance(step, TOOL_STEPS):
            responses.append(current)
            current = []
    if current:
        responses.append(current)
    last = responses[-1] if responses else None
    if last is None or (isinstance(last, list) and isinstance(last[-1], TOOL_STEPS)):
        responses.append([Text("Done.")])
    return responses


@dataclass
class Answer:
    """What to send for one request: content steps, or a failure, or a hang."""

    turn: int
    steps: list[ContentStep] | None = None
    fail: Fail | None = None
    hang: Hang | None = None
    exhausted: bool = False


class ScriptCursor:
    """Tracks where the conversation is in the script; see the module docstring. Not thread-safe: the
    server calls it from its own event loop only."""

    def __init__(self, turns: list[list[Step]] | None = None):
        self.turns: list[list[list[ContentStep] | Fail | Hang]] = []
        self.turn = -1
        self.position = 0
        self._prompt_keys: set[str] = set()
        self._result_keys: set[str] = set()
        self._served: dict[tuple[int, int], int] = {}  # failures/hangs served per position
        for turn in turns or []:
            self.add_turn(turn)

    def add_turn(self, steps: list[Step]) -> None:
        self.turns.append(group_responses(list(steps)))

    def answer(self, kind: str, key: str) -> Answer:
        """Advance for a request of `kind` ("prompt" or "continuation") identified by `key` (the prompt's
        text or the tool result's id), then say what to answer."""
        if kind == "prompt" and key not in self._prompt_keys:
            self._prompt_keys.add(key)
            self.turn += 1
            self.position = 0
        elif kind == "continuation" and key not in self._result_keys:
            self._result_keys.add(key)
            self.position += 1
        return self._current()

    def _current(self) -> Answer:
        if self.turn < 0 or self.turn >= len(self.turns):
            return Answer(turn=self.turn, steps=[Text("(scripted model: the script has no more turns)")],
                          exhausted=True)
        responses = self.turns[self.turn]
        while self.position < len(responses):
            response = responses[self.position]
            if isinstance(response, list):
                return Answer(turn=self.turn, steps=response)
            served = self._served.get((self.turn, self.position), 0)
            if response.times is None or served < response.times:
                self._served[(self.turn, self.position)] = served + 1
                if isinstance(response, Fail):
                    return Answer(turn=self.turn, fail=response)
                return Answer(turn=self.turn, hang=response)
            self.position += 1  # this failure is used up: play what follows it
        return Answer(turn=self.turn, steps=[Text("(scripted model: this turn has no more responses)")],
                      exhausted=True)

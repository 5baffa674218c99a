"""Test helpers that start real things: a scripted model endpoint for the real agent CLIs.

    from replicas.testing import ScriptedModelServer, Text, WriteFile

    with ScriptedModelServer([[WriteFile("/repo/a.txt", "hi\\n"), Text("done")]]) as model:
        ...  # point Claude Code at model.anthropic_env(), Codex at model.openai_env()
"""

from replicas.testing.script import Fail, Hang, ShellCall, Step, Text, Thinking, ToolCall, WriteFile
from replicas.testing.scripted_model import RecordedRequest, ScriptedModelServer

__all__ = [
    "Fail",
    "Hang",
    "RecordedRequest",
    "ScriptedModelServer",
    "ShellCall",
    "Step",
    "Text",
    "Thinking",
    "ToolCall",
    "WriteFile",
]

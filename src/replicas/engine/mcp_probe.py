"""Checks that an MCP server answers: connect with the official SDK's client, negotiate the protocol (the
initialize handshake, or discovery with newer servers), list the tools, and say what came back.

The control plane checks an environment's stdio server by running this module inside a throwaway sandbox of
the environment, as a workspace would start the server (services/mcp_checks.py)::

    python -m replicas.engine.mcp_probe <<'EOF'
    {"command": "uvx", "args": ["my-server"], "env": {"TOKEN": "..."}, "timeout": 20}
    EOF

The server inherits the sandbox's environment (the environment's variables) plus its own `env`; its stderr
goes to this process's, which the caller streams. The outcome is the last line of stdout, `RESULT_MARKER`
followed by JSON (`{"ok": true, "server": ..., "protocol_version": ..., "tools": [...]}` or `{"ok": false,
"error": ...}`); the exit code is 0 either way, so that a broken server reads as a result, not a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

RESULT_MARKER = "REPLICAS_MCP_PROBE_RESULT "
DEFAULT_TIMEOUT_SECONDS = 20.0


def describe_failure(exc: BaseException) -> str:
    """One line for a failed check: the innermost cause of an exception group (anyio wraps the transport's
    errors in them), with its type when its message says nothing."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_failure(inner) for inner in exc.exceptions)
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


async def probe(connect: Callable[[], Any], timeout: float) -> dict:
    """Connect with `connect()` (an `mcp.Client`, not entered) within `timeout` seconds and describe the server."""
    try:
        async with asyncio.timeout(timeout):
            async with connect() as client:
                info = client.server_info
                tools = [tool.name for tool in (await client.list_tools()).tools] \
                    if client.server_capabilities.tools is not None else []
                return {"ok": True, "protocol_version": client.protocol_version, "tools": tools,
                        "server": {"name": info.name, "version": info.version} if info is not None else None}
    except Exception as exc:  # noqa: BLE001 - every failure is the check's answer
        return {"ok": False, "error": describe_failure(exc)}


def stdio_client(config: dict) -> Any:
    """An `mcp.Client` that starts the stdio server of `config` with this process's environment plus its own."""
    from mcp import Client, StdioServerParameters

    server = StdioServerParameters(command=config["command"], args=list(config.get("args") or []),
                                   env={**os.environ, **(config.get("env") or {})})
    return Client(server)


def main() -> None:
    config = json.loads(sys.stdin.read())
    timeout = float(config.get("timeout") or DEFAULT_TIMEOUT_SECONDS)
    outcome = asyncio.run(probe(lambda: stdio_client(config), timeout))
    sys.stderr.flush()
    print(RESULT_MARKER + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
